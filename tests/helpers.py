"""Small helpers the tests share: run a job, read what it stored, inspect media."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sojourn.blocks.artifact_store import ArtifactStore, Manifest
from sojourn.job_errors import parse_error
from sojourn.flows import browse


# An action that waits until the popup /popup opened has loaded its page: its alert() holds the load until Sojourn
# has read and answered it, so the alert is in the job's messages by then. (The popup starts as about:blank, which
# is 'complete' at once: the path tells the two apart.)
POPUP_LOADED = ("page.waitForFunction(\"window.popup && window.popup.location.pathname === '/alert-on-load'"
                " && window.popup.document.readyState === 'complete'\")")


async def run_job(spec: dict[str, Any]) -> Manifest:
    """Run the browse flow; the job must complete."""
    result = await browse(spec)
    return Manifest.model_validate(result)


async def run_failing_job(spec: dict[str, Any]) -> tuple[Any, dict[str, Any], Manifest | None]:
    """Run the browse flow expecting failure: (state, {code, message}, stored manifest)."""
    state = await browse(spec, return_state=True)
    assert state.is_failed(), f"expected the job to fail, it ended {state.type}"
    err = parse_error(state.message)
    assert err, f"no error code in {state.message!r}"
    job_id = str(state.state_details.flow_run_id)
    manifest = await ArtifactStore.from_settings().read_manifest(job_id)
    return state, err, manifest


async def artifact_bytes(manifest: Manifest, kind: str) -> bytes:
    rec = manifest.artifact(kind)
    assert rec is not None, f"no {kind} in {[a.kind for a in manifest.artifacts]}"
    return await ArtifactStore.from_settings().read_bytes(rec.path)


def png_image(data: bytes):
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.format == "PNG"
    return img


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    assert data.startswith(b"%PDF")
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(p.extract_text() for p in reader.pages)


def media_duration(data: bytes, tmp_path) -> float:
    path = tmp_path / "video.webm"
    path.write_bytes(data)
    ffprobe = shutil.which("ffprobe")
    assert ffprobe, "ffprobe is needed to check videos"
    out = subprocess.run(
        [ffprobe, "-v", "error", "-count_frames", "-show_entries", "format=duration:stream=nb_read_frames,codec_name",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )
    info = json.loads(out.stdout)
    duration = float(info.get("format", {}).get("duration") or 0)
    frames = int(info["streams"][0].get("nb_read_frames") or 0)
    assert info["streams"][0]["codec_name"] in ("vp8", "vp9")
    return duration if duration > 0 else frames / 25.0


def until(what: str, probe, timeout: float = 60, every: float = 0.5):
    """``probe()`` once it answers something truthy (that answer), polled every ``every`` s (never faster than 0.25 s:
    reads cost the API CPU the browser needs) for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s (last: {value!r})"
        time.sleep(max(every, 0.25))


class Receiver:
    """A local webhook endpoint that records deliveries and fails the first `fail_first` of them."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[dict, bytes]] = []
        self.fail_first = fail_first
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # noqa: ANN002
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.calls += 1
                status = 500 if outer.calls <= outer.fail_first else 200
                if status == 200:
                    outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(self.received) >= n, f"{len(self.received)} deliveries of {n} after {timeout} s ({self.calls} calls)"
