"""Results: ingested from the artifact store into ``scrape_results``, then paged, filtered and exported with SQL.

The worker never writes the facade database: each target's items are in the artifact store
(``jobs/<job id>/scrape-<target>-p<page>.jsonl``, listed by ``scrape.json``). The API copies them into
the table when a target ends (its event) and when the job ends (its final event, or the sweep for jobs
that ended while no API ran). Ingesting is idempotent: a target's rows for the job are replaced, and a
result's id is derived from (job, target, page, position).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
from typing import Any, AsyncIterator, Iterator

from sqlalchemy import delete, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from sojourn.blocks.artifact_store import ArtifactStore
from sojourn.services.scrape.conventions import iso, loads
from sojourn.store.clock import utcnow
from sojourn.store.db import session
from sojourn.store.scrape import ScrapeJob, ScrapeResult, ScrapeTarget
from sojourn.tasks.scrape import STATUS_FILE, page_file

BASE_COLUMNS = ["id", "job_id", "target_id", "project_id", "source_url", "page", "position", "created_at"]
EXPORT_BATCH = 500


def result_id(job: str, target: str, page: int, position: int) -> str:
    return "res_" + hashlib.sha256(f"{job}|{target}|{page}|{position}".encode()).hexdigest()[:12]


def render(row: ScrapeResult) -> dict[str, Any]:
    return {
        "id": row.id, "job_id": row.job_id, "target_id": row.target_id, "project_id": row.project_id,
        "source_url": row.source_url, "page": row.page, "position": row.position, "data": loads(row.data, {}),
        "created_at": iso(row.created_at),
    }


class Results:
    def __init__(self, db_url: str, store: ArtifactStore) -> None:
        self.db_url = db_url
        self.store = store
        self._locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ ingest
    async def status_file(self, sojourn_job_id: str) -> dict[str, Any] | None:
        try:
            raw = await self.store.read_bytes(self.store.job_path(sojourn_job_id, STATUS_FILE))
        except (FileNotFoundError, OSError):
            return None
        return loads(raw.decode(), None)

    async def ingest(self, job: ScrapeJob, target_ids: list[str] | None = None, *, unless_final: bool = False) -> dict[str, Any] | None:
        """Copy the stored items of the job's targets (all, or the named ones) into the table; the status file read.
        ``unless_final``: not if the job was finished (all its results ingested) meanwhile."""
        lock = self._locks.setdefault(job.id, asyncio.Lock())
        async with lock:
            if unless_final and await asyncio.to_thread(self._final, job.id):
                return None
            status = await self.status_file(job.job_id)
            if status is None:
                return None
            for tid, t in (status.get("targets") or {}).items():
                if target_ids is not None and tid not in target_ids:
                    continue
                rows: list[ScrapeResult] = []
                for page in range(1, int(t.get("pages") or 0) + 1):
                    try:
                        raw = await self.store.read_bytes(self.store.job_path(job.job_id, page_file(tid, page)))
                    except (FileNotFoundError, OSError):
                        continue
                    for line in raw.decode().splitlines():
                        if not line.strip():
                            continue
                        item = json.loads(line)
                        rows.append(ScrapeResult(
                            id=result_id(job.id, tid, item["page"], item["position"]), owner=job.owner, project_id=job.project_id,
                            target_id=tid, job_id=job.id, source_url=item["source_url"], page=item["page"],
                            position=item["position"], data=json.dumps(item["data"]),
                        ))
                ended = t.get("status") in ("completed", "failed", "cancelled", "skipped")
                try:
                    await asyncio.to_thread(self._replace, job, tid, rows, ended)
                except IntegrityError:  # another process ingested the same rows (same ids) at the same moment: again, after it
                    await asyncio.to_thread(self._replace, job, tid, rows, ended)
            return status

    def _final(self, job_id: str) -> bool:
        with session(self.db_url) as db:
            found = db.get(ScrapeJob, job_id)
        return found is None or found.final is not None

    def _replace(self, job: ScrapeJob, target_id: str, rows: list[ScrapeResult], ended: bool) -> None:
        with session(self.db_url) as db:
            if db.get(ScrapeJob, job.id) is None:
                return  # its project was deleted while it ran: keep nothing
            db.exec(delete(ScrapeResult).where(ScrapeResult.job_id == job.id, ScrapeResult.target_id == target_id))  # type: ignore[call-overload]
            db.add_all(rows)
            db.flush()
            target = db.get(ScrapeTarget, target_id)
            if target is not None:
                target.results_count = int(db.exec(select(func.count()).select_from(ScrapeResult).where(ScrapeResult.target_id == target_id)).one())
                if ended:
                    target.last_scraped = utcnow()
                db.add(target)
            db.commit()

    # ------------------------------------------------------------------ read
    @staticmethod
    def _filtered(q: Any, *, project_id: str | None = None, job_id: str | None = None, target_id: str | None = None) -> Any:
        if project_id:
            q = q.where(ScrapeResult.project_id == project_id)
        if job_id:
            q = q.where(ScrapeResult.job_id == job_id)
        if target_id:
            q = q.where(ScrapeResult.target_id == target_id)
        return q

    def page(self, *, project_id: str | None = None, job_id: str | None = None, target_id: str | None = None,
             page: int = 1, per_page: int = 20, newest_first: bool = False) -> tuple[list[dict[str, Any]], int]:
        with session(self.db_url) as db:
            kw = {"project_id": project_id, "job_id": job_id, "target_id": target_id}
            total = db.exec(self._filtered(select(func.count()).select_from(ScrapeResult), **kw)).one()
            order = ScrapeResult.seq.desc() if newest_first else ScrapeResult.seq  # type: ignore[union-attr]
            rows = db.exec(self._filtered(select(ScrapeResult), **kw).order_by(order).offset((page - 1) * per_page).limit(per_page)).all()
        return [render(r) for r in rows], int(total)

    def one(self, result_id: str) -> ScrapeResult | None:
        with session(self.db_url) as db:
            return db.exec(select(ScrapeResult).where(ScrapeResult.id == result_id)).first() if len(result_id) <= 40 else None

    def delete(self, result_id: str) -> None:
        """One result goes; its target's ``results_count`` follows."""
        with session(self.db_url) as db:
            row = db.exec(select(ScrapeResult).where(ScrapeResult.id == result_id)).first()
            if row is None:
                return
            db.delete(row)
            db.flush()
            target = db.get(ScrapeTarget, row.target_id)
            if target is not None:
                target.results_count = int(db.exec(select(func.count()).select_from(ScrapeResult).where(ScrapeResult.target_id == row.target_id)).one())
                db.add(target)
            db.commit()

    def count(self, *, job_id: str) -> int:
        with session(self.db_url) as db:
            return int(db.exec(select(func.count()).select_from(ScrapeResult).where(ScrapeResult.job_id == job_id)).one())

    def _batches(self, kw: dict[str, Any]) -> Iterator[list[ScrapeResult]]:
        """Keyset pages of EXPORT_BATCH rows: memory stays flat however many results there are."""
        after = 0
        while True:
            with session(self.db_url) as db:
                q = self._filtered(select(ScrapeResult), **kw).where(ScrapeResult.seq > after).order_by(ScrapeResult.seq).limit(EXPORT_BATCH)
                rows = list(db.exec(q).all())
            if not rows:
                return
            yield rows
            after = rows[-1].seq or after
            if len(rows) < EXPORT_BATCH:
                return

    async def export(self, fmt: str, columns: list[str], **kw: Any) -> AsyncIterator[bytes]:
        """The results as json, jsonl or csv, produced a batch at a time."""
        batches = self._batches(kw)
        first = True
        if fmt == "json":
            yield b"["
        elif fmt == "csv":
            yield _csv_line(BASE_COLUMNS + columns)
        while True:
            rows = await asyncio.to_thread(next, batches, None)
            if rows is None:
                break
            out = io.StringIO()
            for row in rows:
                item = render(row)
                if fmt == "json":
                    out.write(("" if first else ",") + json.dumps(item))
                elif fmt == "jsonl":
                    out.write(json.dumps(item) + "\n")
                else:
                    data = item.pop("data")
                    values = [item[c] for c in BASE_COLUMNS] + [_cell(data.get(c)) for c in columns]
                    out.write(_csv_line(values).decode())
                first = False
            yield out.getvalue().encode()
        if fmt == "json":
            yield b"]"


def _cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def _csv_line(values: list[Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerow(["" if v is None else v for v in values])
    return buf.getvalue().encode()
