"""Projects and their targets, in the facade database; each belongs to the principal that made it."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from sojourn.services.principals import Principal
from sojourn.services.scrape.conventions import iso, invalid, loads, new_id, not_found, sees
from sojourn.settings import Settings
from sojourn.store.clock import utcnow
from sojourn.store.db import session
from sojourn.store.scrape import ScrapeJob, ScrapeProject, ScrapeResult, ScrapeSchedule, ScrapeTarget

PROJECT_DEFAULTS: dict[str, Any] = {"max_results_per_target": 100, "rate_limit_delay": 1.0, "respect_robots_txt": False}
EXTRACT_KEYS = ("item_selector", "fields", "next_page", "max_pages", "wait_for", "dedupe_keys", "screenshot")


def check_url(url: str, field: str = "url") -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid(field, f"'{url}' is not an http(s) URL", code="INVALID_URL")
    return url.strip()


class Catalog:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db_url = settings.database_location

    def project_config(self, row: ScrapeProject) -> dict[str, Any]:
        return {**PROJECT_DEFAULTS, "daily_job_limit": self.settings.scrape_daily_job_limit, **loads(row.config, {})}

    # ------------------------------------------------------------------ projects
    def render_project(self, row: ScrapeProject, counts: dict[str, int] | None = None) -> dict[str, Any]:
        out = {
            "id": row.id, "name": row.name, "description": row.description, "config": self.project_config(row),
            "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
        }
        if counts is not None:
            out.update(counts)
        return out

    def project(self, project_id: str, principal: Principal) -> ScrapeProject:
        with session(self.db_url) as db:
            row = db.get(ScrapeProject, project_id) if len(project_id) <= 40 else None
        if row is None or not sees(principal, row.owner):
            raise not_found("Project", project_id)
        return row

    def counts(self, project_id: str) -> dict[str, int]:
        with session(self.db_url) as db:
            targets = db.exec(select(func.count()).select_from(ScrapeTarget).where(ScrapeTarget.project_id == project_id)).one()
            results = db.exec(select(func.count()).select_from(ScrapeResult).where(ScrapeResult.project_id == project_id)).one()
        return {"targets_count": int(targets), "results_count": int(results)}

    def list_projects(self, principal: Principal, page: int, per_page: int) -> tuple[list[ScrapeProject], int]:
        with session(self.db_url) as db:
            q = select(ScrapeProject)
            c = select(func.count()).select_from(ScrapeProject)
            if not principal.is_admin:
                q, c = q.where(ScrapeProject.owner == principal.name), c.where(ScrapeProject.owner == principal.name)
            total = db.exec(c).one()
            rows = db.exec(q.order_by(ScrapeProject.created_at.desc(), ScrapeProject.id).offset((page - 1) * per_page).limit(per_page)).all()
        return list(rows), int(total)

    def create_project(self, principal: Principal, name: str, description: str | None, config: dict[str, Any]) -> ScrapeProject:
        row = ScrapeProject(id=new_id("proj"), owner=principal.name, name=name, description=description, config=json.dumps(config))
        with session(self.db_url) as db:
            db.add(row)
            db.commit()
        return row

    def update_project(self, project_id: str, principal: Principal, changes: dict[str, Any]) -> ScrapeProject:
        row = self.project(project_id, principal)
        with session(self.db_url) as db:
            row = db.get(ScrapeProject, project_id)
            assert row is not None
            if "name" in changes:
                row.name = changes["name"]
            if "description" in changes:
                row.description = changes["description"]
            if changes.get("config") is not None:
                row.config = json.dumps({**loads(row.config, {}), **changes["config"]})
            row.updated_at = utcnow()
            db.add(row)
            db.commit()
        return row

    def delete_project(self, project_id: str, principal: Principal) -> None:
        self.project(project_id, principal)
        with session(self.db_url) as db:
            for model in (ScrapeResult, ScrapeTarget, ScrapeJob, ScrapeSchedule):
                db.exec(delete(model).where(model.project_id == project_id))  # type: ignore[call-overload]
            db.exec(delete(ScrapeProject).where(ScrapeProject.id == project_id))  # type: ignore[call-overload]
            db.commit()

    # ------------------------------------------------------------------ targets
    @staticmethod
    def extract_of(row: ScrapeTarget) -> dict[str, Any]:
        return loads(row.extract, {})

    def render_target(self, row: ScrapeTarget) -> dict[str, Any]:
        ex = self.extract_of(row)
        return {
            "id": row.id, "project_id": row.project_id, "url": row.url, "name": row.name, "platform": row.platform,
            "status": row.status, **{k: ex.get(k) for k in EXTRACT_KEYS},
            "last_scraped": iso(row.last_scraped), "results_count": row.results_count,
            "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
        }

    def target(self, target_id: str, principal: Principal) -> ScrapeTarget:
        with session(self.db_url) as db:
            row = db.get(ScrapeTarget, target_id) if len(target_id) <= 40 else None
        if row is None or not sees(principal, row.owner):
            raise not_found("Target", target_id)
        return row

    def list_targets(self, project_id: str, principal: Principal, page: int, per_page: int, status: str | None = None) -> tuple[list[ScrapeTarget], int]:
        self.project(project_id, principal)
        with session(self.db_url) as db:
            q = select(ScrapeTarget).where(ScrapeTarget.project_id == project_id)
            c = select(func.count()).select_from(ScrapeTarget).where(ScrapeTarget.project_id == project_id)
            if status:
                q, c = q.where(ScrapeTarget.status == status), c.where(ScrapeTarget.status == status)
            total = db.exec(c).one()
            rows = db.exec(q.order_by(ScrapeTarget.created_at, ScrapeTarget.id).offset((page - 1) * per_page).limit(per_page)).all()
        return list(rows), int(total)

    def targets_of(self, project_id: str, ids: list[str] | None = None) -> list[ScrapeTarget]:
        """The project's targets in creation order: the named ones, or the active ones."""
        with session(self.db_url) as db:
            q = select(ScrapeTarget).where(ScrapeTarget.project_id == project_id)
            q = q.where(ScrapeTarget.id.in_(ids)) if ids is not None else q.where(ScrapeTarget.status == "active")  # type: ignore[attr-defined]
            return list(db.exec(q.order_by(ScrapeTarget.created_at, ScrapeTarget.id)).all())

    def all_targets(self, project_id: str) -> list[ScrapeTarget]:
        with session(self.db_url) as db:
            return list(db.exec(select(ScrapeTarget).where(ScrapeTarget.project_id == project_id).order_by(ScrapeTarget.created_at)).all())

    def _row_for(self, project: ScrapeProject, body: dict[str, Any]) -> ScrapeTarget:
        return ScrapeTarget(
            id=new_id("tgt"), project_id=project.id, owner=project.owner, url=check_url(body["url"]), name=body.get("name"),
            platform=body.get("platform") or "generic", status=body.get("status") or "active",
            extract=json.dumps({k: body.get(k) for k in EXTRACT_KEYS if body.get(k) is not None}),
        )

    def create_targets(self, project_id: str, principal: Principal, bodies: list[dict[str, Any]], *, bulk: bool = False) -> tuple[list[ScrapeTarget], list[dict[str, Any]]]:
        """Create targets; a URL already in the project is DUPLICATE_TARGET (raised, or listed when ``bulk``)."""
        project = self.project(project_id, principal)
        created: list[ScrapeTarget] = []
        errors: list[dict[str, Any]] = []
        with session(self.db_url) as db:
            have = set(db.exec(select(ScrapeTarget.url).where(ScrapeTarget.project_id == project_id)).all())
            for i, body in enumerate(bodies):
                try:
                    row = self._row_for(project, body)
                    if row.url in have:
                        raise _duplicate(row.url, f"targets.{i}.url" if bulk else "url")
                except Exception as exc:
                    from sojourn.services.service_error import ServiceError

                    if not bulk or not isinstance(exc, ServiceError):
                        raise
                    errors.append({"index": i, "url": body.get("url"), "code": exc.code, "detail": exc.message})
                    continue
                have.add(row.url)
                created.append(row)
            db.add_all(created)
            try:
                db.commit()
            except IntegrityError:  # raced with another request adding the same URL
                db.rollback()
                raise _duplicate(bodies[0].get("url", ""), "url") from None
        return created, errors

    def update_target(self, target_id: str, principal: Principal, changes: dict[str, Any]) -> ScrapeTarget:
        self.target(target_id, principal)
        with session(self.db_url) as db:
            row = db.get(ScrapeTarget, target_id)
            assert row is not None
            if "url" in changes and changes["url"] is not None:
                url = check_url(changes["url"])
                clash = db.exec(select(ScrapeTarget.id).where(ScrapeTarget.project_id == row.project_id, ScrapeTarget.url == url,
                                                              ScrapeTarget.id != row.id)).first()
                if clash:
                    raise _duplicate(url, "url")
                row.url = url
            for key in ("name", "platform", "status"):
                if key in changes and changes[key] is not None:
                    setattr(row, key, changes[key])
            ex = self.extract_of(row)
            for key in EXTRACT_KEYS:
                if key in changes:
                    ex[key] = changes[key]
            row.extract = json.dumps({k: v for k, v in ex.items() if v is not None})
            row.updated_at = utcnow()
            db.add(row)
            db.commit()
        return row

    def delete_target(self, target_id: str, principal: Principal) -> None:
        self.target(target_id, principal)
        with session(self.db_url) as db:
            db.exec(delete(ScrapeTarget).where(ScrapeTarget.id == target_id))  # type: ignore[call-overload]
            db.commit()


def _duplicate(url: str, field: str):  # noqa: ANN202
    from sojourn.services.service_error import ServiceError

    return ServiceError(400, "DUPLICATE_TARGET", f"Target with URL '{url}' already exists in this project", {"field": field, "url": url})
