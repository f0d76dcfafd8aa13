"""What the dialect answers: fastlane's error body, its URLs as the client reached them, and the bodies several
routes share (enqueue replies, job metadata, plain-text logs, the live-log page)."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.requests import HTTPConnection

from sojourn.services.fastlane.commands import redact_envs
from sojourn.store.fastlane import FastlaneExecution, FastlaneJob

VERSION = "2.2.4"
JOINER = "\n-=-\n"


def error(status: int, error: str, operation: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "operation": operation}, status_code=status, headers=headers)


def base(request: HTTPConnection) -> str:
    """This dialect's base URL as the client reached it (its host, the mount prefix)."""
    url = request.url
    return f"{url.scheme}://{url.netloc}{request.scope.get('root_path', '')}".rstrip("/")


def task_url(request: HTTPConnection, task_id: str) -> str:
    return f"{base(request)}/tasks/{task_id}/"


def job_url(request: HTTPConnection, task_id: str, job_id: str) -> str:
    return f"{base(request)}/tasks/{task_id}/jobs/{job_id}/"


def ex_url(request: HTTPConnection, ex: FastlaneExecution) -> str:
    return f"{base(request)}/tasks/{ex.task_id}/jobs/{ex.job_id}/executions/{ex.id}/"


def enqueue_reply(request: HTTPConnection, task_id: str, job: FastlaneJob, ex: FastlaneExecution | None, scheduled: bool) -> dict[str, Any]:
    shown = ex if ex is not None and not scheduled else None
    return {
        "taskId": task_id, "jobId": job.id,
        "executionId": shown.id if shown else None, "executionUrl": ex_url(request, shown) if shown else None,
        "queueJobId": ex.ledger_job_id if ex is not None else None,
        "jobUrl": job_url(request, task_id, job.id), "taskUrl": task_url(request, task_id),
    }


def job_metadata(job: FastlaneJob, last: FastlaneExecution | None) -> dict[str, Any]:
    p = json.loads(job.payload or "{}")
    meta = {
        "retries": p.get("retries", 0), "retry_count": job.retry_count, "notify": p.get("notify") or {},
        "webhooks": p.get("webhooks") or {}, "expiration": p.get("expiration"), "timeout": p.get("timeout"),
        "envs": redact_envs(p.get("envs") or {}), "enqueued_id": last.ledger_job_id if last else None,
        "custom": p.get("custom") or {}, "cron": job.cron,
    }
    for k in ("startAt", "startIn", "additionalDNSEntries"):
        if p.get(k):
            meta[k] = p[k]
    return meta


def text_reply(ex: FastlaneExecution, kind: str) -> Response:
    log, err = (ex.log or "", ex.error or "") if ex.final else ("", "")
    body = {"stdout": log, "stderr": err, "logs": f"{log}{JOINER}{err}"}[kind]
    return PlainTextResponse(body, headers={"Fastlane-Exit-Code": str(ex.exit_code)})


def stream_page(ws_path: str) -> HTMLResponse:
    return HTMLResponse(STREAM_PAGE.replace("__WS_PATH__", json.dumps(ws_path)))


STREAM_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>fastlane log</title>
<style>body{background:#111;color:#ddd;font:13px monospace}pre{white-space:pre-wrap}</style></head>
<body><pre id="log">connecting…</pre>
<script>
const path = __WS_PATH__;
const log = document.getElementById("log");
function connect() {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + path);
  let text = "";
  ws.onmessage = (e) => { text += e.data; log.textContent = text; };
  ws.onclose = (e) => { if (e.reason !== "wsdone") setTimeout(connect, 5000); };
}
connect();
</script></body></html>
"""
