"""The README's first job for each dialect, run as written (base URL and page swapped for the test stack's)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(section: str) -> str:
    text = README.read_text()
    assert f"## {section}" in text, f"the README has no '{section}' section"
    return text.split(f"## {section}", 1)[1].split("```sh", 1)[1].split("```", 1)[0]


def _run(block: str, stack, key: str, pages: dict[str, str]) -> list:
    """Run the block with bash; the JSON documents it printed, in order (curl -s ends them with no newline)."""
    script = block.replace("http://127.0.0.1:8000", stack.base)
    for public, local in pages.items():
        script = script.replace(public, local)
    r = subprocess.run(["bash", "-c", f"set -eo pipefail\nKEY={key}\n{script}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"exit {r.returncode}\n{script}\n{r.stdout}\n{r.stderr}"
    docs, text, at = [], r.stdout, 0
    decoder = json.JSONDecoder()
    while (at := len(text) - len(text[at:].lstrip())) < len(text):
        doc, end = decoder.raw_decode(text, at)
        docs.append(doc)
        at = end
    return docs


def _until(fetch, done, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, value
        time.sleep(0.5)


@pytest.fixture()
def key(stack) -> str:
    from tests.test_native_api import new_key

    return new_key(stack)


def test_the_scrape_first_job_runs_as_written(stack, key):
    """The example's selectors (`article`, `h3`, `.price`, `a.next`) on a page that has that markup: every book
    of every page is read, page by page, following the next links."""
    from tests.sites_scrape import BOOKS, CatalogSite

    with CatalogSite() as books:
        out = _run(_block("Scrape-jobs clients"), stack, key, {"https://books.example/page-1.html": books.url("/books/page-1.html")})
        job = out[-1]
        assert job["status"] == "pending" and job["id"].startswith("job_"), out
        with httpx.Client(base_url=f"{stack.base}/scrape/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            ended = _until(lambda: http.get(f"/jobs/{job['id']}").json(), lambda j: j["status"] not in ("pending", "running"))
            assert ended["status"] == "completed", ended
            assert [t["status"] for t in ended["target_status"]] == ["completed"]
            r = http.get(f"/jobs/{job['id']}/results", params={"per_page": 100})
            assert r.status_code == 200
            items = r.json()["items"]
        assert [(i["page"], i["data"]["title"], i["data"]["price"]) for i in items] == [
            (n, title, price) for n, page in BOOKS.items() for title, price in page]
        assert [h for h in books.hits if h.startswith("/books/")] == [f"/books/page-{n}.html" for n in BOOKS]


def test_the_fastlane_first_job_runs_as_written(stack, site, key):
    out = _run(_block("fastlane clients"), stack, key, {"https://example.com": site.url("/")})
    enqueued = out[-1]
    assert enqueued["taskId"] == "my-task" and enqueued["jobUrl"], out
    with httpx.Client(auth=("", key), timeout=30) as http:
        job = _until(lambda: http.get(enqueued["jobUrl"]).json()["job"],
                     lambda j: j["executions"] and j["executions"][0]["status"] in ("done", "failed", "timedout", "expired"))
        assert job["executions"][0]["status"] == "done", job
        stdout = http.get(enqueued["jobUrl"] + "stdout")
        assert "Hello Sojourn" in stdout.text and stdout.headers["Fastlane-Exit-Code"] == "0"


def test_the_task_engine_first_job_runs_as_written(stack, site):
    from tests.test_native_api import new_key

    client = f"readme-{int(time.time() * 1000)}"
    key = new_key(stack, principal=client)
    out = _run(_block("Task Engine clients").replace("demo-client", client), stack, key, {"https://example.com": site.url("/")})
    accepted = out[-1]
    assert accepted["result"] == "accepted" and isinstance(accepted["id"], int), out
    headers = {"client": client, "api-key": key}
    with httpx.Client(base_url=f"{stack.base}/taskengine", headers=headers, timeout=30) as http:
        job = _until(lambda: http.get(f"/jobs/{accepted['id']}").json(), lambda j: j.get("queue_state") in ("completed", "broken"))
        assert job["queue_state"] == "completed" and job["failed"] is False, job
        logs = _until(lambda: http.get(f"/logs/{accepted['id']}").json(),
                      lambda entries: any(e["message"] == "job has completed successfully" for e in entries), timeout=20)
    assert logs[0]["progname"] == "api" and '"job_created"' in logs[0]["message"] and '"screenshot"' in logs[0]["message"]
    assert all(e["job_id"] == accepted["id"] for e in logs)
    assert {e["progname"] for e in logs} >= {"api", "worker"}
    assert logs[-1]["message"] == "job has completed successfully"
