"""`sojourn up | worker | api | services | bootstrap | submit`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, help="Sojourn: self-hosted browser jobs on Prefect.")


def _settings():
    from sojourn.settings import get_settings

    return get_settings()


def _log_sojourn() -> None:
    """Sojourn's own log lines (cancellations, dispatch, the reaper) at SOJOURN_LOG_LEVEL (INFO by default),
    through the handlers Prefect sets up, so they read like the rest of the process's log."""
    import logging

    logging.getLogger("sojourn").setLevel(os.environ.get("SOJOURN_LOG_LEVEL", "INFO").upper())


def _prefect_env(settings, api_url: str | None = None) -> dict[str, str]:
    env = os.environ.copy()
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    url = api_url or settings.prefect_api_url
    if url:
        env["PREFECT_API_URL"] = url
    return env


def _wait_http(url: str, proc: subprocess.Popen | None, timeout: float, what: str) -> None:
    from sojourn.readiness import NotReady, wait_until_up

    try:
        wait_until_up(url, timeout=timeout, proc=proc, what=what)
    except NotReady as exc:
        raise typer.Exit(f"{exc}; see its output above") from None


def _spawn(cmd: list[str], env: dict[str, str], *, log: Path | None = None) -> subprocess.Popen:
    # Own session: a terminal's Ctrl-C reaches only `sojourn up`, which then stops
    # the children in order (a worker's browser driver must not die first). Tied to our life: if
    # `sojourn up` is killed outright, they die too (sojourn/lifeline.py).
    from sojourn.lifeline import SUPERVISOR_ENV, die_with_parent

    out = open(log, "ab") if log is not None else None
    try:
        return subprocess.Popen(cmd, env={**env, SUPERVISOR_ENV: str(os.getpid())}, stdout=out, stderr=subprocess.STDOUT if out else None,
                                start_new_session=True, preexec_fn=die_with_parent)
    finally:
        if out is not None:
            out.close()


@app.command()
def up() -> None:
    """Start everything on this machine: Prefect server, pool and deployments, one worker, the API."""
    from sojourn.deployments.prefect_server import server_command, server_env
    from sojourn.services.principals import ensure_admin_key

    settings = _settings()
    ports = [(settings.api_host, settings.api_port, "the API")]
    if not settings.prefect_api_url:
        ports.append(("127.0.0.1", settings.prefect_port, "the Prefect server"))
    for host, port, what in ports:
        if _port_taken(host, port):
            print(f"sojourn up: port {port} ({what}) is already in use, perhaps by another stack; stop it or set "
                  f"{'SOJOURN_API_PORT' if what == 'the API' else 'SOJOURN_PREFECT_PORT'}", file=sys.stderr)
            raise typer.Exit(2)
    settings.home.mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen] = []
    # Children stop together; the worker may spend its shutdown grace finishing jobs. Past this bound, what is
    # left is killed with its whole process group (a worker's browsers included).
    bound = settings.worker_shutdown_grace + 15
    failed = False

    def stop_all(*_a) -> bool:
        """Stop every child within the bound; True if one had to be killed."""
        # A second Ctrl-C or SIGTERM while stopping must not cut the stop short (the children would be left).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for p in reversed(children):
            if p.poll() is None:
                p.terminate()
        deadline, killed = time.monotonic() + bound, False
        for p in reversed(children):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"sojourn up: {_component(p)} did not stop within {bound:.0f} s; killing it", file=sys.stderr)
                killed = True
            try:
                os.killpg(p.pid, signal.SIGKILL)  # its own session: whatever it started goes with it
            except ProcessLookupError:
                pass
            p.wait()
        return killed

    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop is a Ctrl-C
    try:
        if settings.prefect_api_url:
            api_url = settings.prefect_api_url
            print(f"Using the Prefect server at {api_url}")
        else:
            api_url = f"http://127.0.0.1:{settings.prefect_port}/api"
            env = _prefect_env(settings, api_url)
            server_log = settings.home / "prefect-server.log"
            print(f"Starting the Prefect server (SQLite under {env['PREFECT_HOME']}; its log: {server_log}) ...")
            children.append(_spawn(server_command("--host", "127.0.0.1", "--port", str(settings.prefect_port)), server_env(env), log=server_log))
            _wait_http(f"{api_url}/health", children[-1], 120, "the Prefect server")
        env = _prefect_env(settings, api_url)
        if "SOJOURN_ALLOW_LOOPBACK" not in os.environ:
            # The embedded stack is for one machine: its first job visits the API itself.
            env["SOJOURN_ALLOW_LOOPBACK"] = "true"
            print("Note: jobs may visit this machine (127.0.0.1, localhost): SOJOURN_ALLOW_LOOPBACK=true for `sojourn up`."
                  " Set SOJOURN_ALLOW_LOOPBACK=false to refuse it as a production deployment does.")
        os.environ.update({"PREFECT_API_URL": api_url, "PREFECT_HOME": env["PREFECT_HOME"], "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})

        from sojourn.deployments.bootstrap import bootstrap

        asyncio.run(bootstrap(settings))
        key, created = ensure_admin_key(settings)
        children.append(_spawn([sys.executable, "-m", "sojourn.cli", "worker"], env))
        children.append(_spawn([sys.executable, "-m", "sojourn.cli", "api"], env))
        base = f"http://{settings.api_host}:{settings.api_port}"
        _wait_http(f"{base}/health", children[-1], 60, "the API")
        ui = api_url[: -len("/api")] if api_url.endswith("/api") else api_url
        print()
        print(f"  Sojourn API   {base}   (docs: {base}/api/docs)")
        print(f"  Prefect UI    {ui}")
        print(f"  Admin key     {key}" + ("   (new; stored in " + str(settings.home / 'admin.key') + ")" if created else ""))
        print(f"  Artifacts     {settings.artifacts_location}")
        if settings.tourist_auth:
            print(f"  Tourist       {base}/tourist   (issuer token: sojourn tourist-issuer-token)")
        print()
        print("  First job:")
        print(f"  curl -s -H 'X-API-Key: {key}' -H 'Content-Type: application/json' \\")
        print(f"    -d '{{\"type\":\"browse\",\"input\":{{\"steps\":[{{\"url\":\"{base}/health\"}}],\"capture\":[\"screenshot\"]}}}}' {base}/api/v1/jobs")
        print()
        print("Ctrl-C stops everything.")
        while all(p.poll() is None for p in children):
            time.sleep(0.5)
        gone = next(p for p in children if p.poll() is not None)
        print(f"sojourn up: {_component(gone)} exited with status {gone.returncode}; stopping the rest.", file=sys.stderr)
        failed = True
    except KeyboardInterrupt:
        print("\nStopping ...")
    finally:
        failed = stop_all() or failed
    if failed:
        raise typer.Exit(1)


def _interrupt(*_a: object) -> None:
    raise KeyboardInterrupt


def _component(p: subprocess.Popen) -> str:
    args = [str(a) for a in p.args]  # type: ignore[union-attr]
    return "the Prefect server" if "server" in args else f"the {args[-1]}" if args[-1] in ("worker", "api") else " ".join(args)


def _port_taken(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


@app.command("prefect-server", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def prefect_server(ctx: typer.Context) -> None:
    """Run `prefect server start` (arguments passed through) with the settings Sojourn runs it with (see
    sojourn/deployments/prefect_server.py); for hosts of their own, e.g. on PostgreSQL.

    Prefect's own layout past one process: `sojourn prefect-server --no-services` for each API replica (behind a
    balancer) and one `sojourn prefect-server services` for the background services (the scheduler, the event
    persister ...). On PostgreSQL with SOJOURN_REDIS_URL set they share Redis messaging, and the database is
    migrated once, under a lock, before a replica or the services start."""
    import subprocess

    from sojourn.deployments.prefect_server import PREPARED, prepare_command, server_command, services_command, server_env

    args = list(ctx.args)
    env = server_env()
    services_only = args[:1] == ["services"]
    cmd = services_command() + args[1:] if services_only else server_command(*args)
    if (services_only or "--no-services" in args) and env.get("PREFECT_API_DATABASE_CONNECTION_URL", "").startswith("postgresql"):
        subprocess.run(prepare_command(), env=env, check=True)
        env.update(PREPARED)
    os.execve(cmd[0], cmd, env)


@app.command()
def worker(
    name: Optional[str] = typer.Option(None, help="worker name shown in the Prefect UI (default: host, pid, random)"),
    limit: Optional[int] = typer.Option(None, help="jobs this worker runs at once"),
) -> None:
    """Run a sojourn worker: polls the work pool, runs jobs in-process with a warm browser."""
    from sojourn.lifeline import watch_parent
    from sojourn.worker.inprocess import run_worker

    _log_sojourn()
    watch_parent()
    run_worker(_settings(), name=name, limit=limit)


@app.command()
def api(host: Optional[str] = None, port: Optional[int] = None,
        services: bool = typer.Option(True, "--services/--no-services", help="also run the background services (default); "
                                      "--no-services leaves them to `sojourn services`")) -> None:
    """Serve the REST API (all dialects)."""
    import uvicorn

    from sojourn.api.app import create_app
    from sojourn.lifeline import watch_parent

    settings = _settings()
    _log_sojourn()
    watch_parent()
    # Idle keep-alive connections stay open 75 s (uvicorn's default is 5 s): a client reusing one just as
    # the server closed it got a connection error (seen once in 3,500 requests in bench part g).
    uvicorn.run(create_app(settings, services=services), host=host or settings.api_host, port=port or settings.api_port, log_level="warning", access_log=False,
                timeout_keep_alive=75)


@app.command("services")
def services_cmd() -> None:
    """Run the background services (sweeps, cron firing, deliveries, the reaper ...) without serving HTTP, for API
    processes started with --no-services. Several may run: a cluster-wide service runs in one at a time."""
    from sojourn.api.dialects.native.jobs import renderer
    from sojourn.assembly import running
    from sojourn.lifeline import watch_parent

    settings = _settings()
    _log_sojourn()
    watch_parent()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with running(settings, renderer) as parts:
            here = [s.name for s in parts.runner.services if s.scope in parts.runner.scopes]
            print(f"Sojourn services running: {', '.join(here)} (cluster-wide ones while this process holds their lease)", flush=True)
            await stop.wait()
        print("Sojourn services stopped", flush=True)

    asyncio.run(serve())


@app.command("bootstrap")
def bootstrap_cmd() -> None:
    """Create or update the work pool, its queues and the deployments."""
    from sojourn.deployments.bootstrap import bootstrap

    print(asyncio.run(bootstrap(_settings())))


@app.command("tourist-issuer-token")
def tourist_issuer_token() -> None:
    """Print a Tourist issuer token: it mints visit tokens at /tourist/api/v1/issue-token, nothing else."""
    from sojourn.services.visit_tokens import issuer_token

    print(issuer_token(_settings()))


@app.command()
def submit(
    url: str,
    screenshot: bool = typer.Option(True, help="capture a screenshot"),
    out: Optional[Path] = typer.Option(None, help="write the screenshot here"),
    wait: bool = typer.Option(True, help="wait for the job to finish"),
) -> None:
    """Submit a one-page job through the API and print its status."""
    import httpx

    settings = _settings()
    from sojourn.services.principals import known_admin_key

    key = known_admin_key(settings)  # a client reads the key; only the server (re)writes the admin row
    if key is None:
        print("no admin key: start the stack (`sojourn up`) first, or set SOJOURN_ADMIN_KEY", file=sys.stderr)
        raise typer.Exit(2)
    base = f"http://{settings.api_host}:{settings.api_port}/api/v1"
    headers = {"X-API-Key": key}
    body = {"type": "browse", "input": {"steps": [{"url": url}], "capture": ["screenshot"] if screenshot else []}}
    r = httpx.post(f"{base}/jobs", json=body, headers=headers)
    print(r.text)
    if r.status_code != 202 or not wait:
        raise typer.Exit(0 if r.status_code == 202 else 1)
    job_id = r.json()["jobId"]
    while True:
        job = httpx.get(f"{base}/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.3)
    print(json.dumps(job, indent=2))
    if out and job.get("result", {}).get("screenshots"):
        out.write_bytes(httpx.get(f"{base}/screenshots/{job['result']['screenshots'][0]}", headers=headers).content)
        print(f"screenshot written to {out}")
    if job["status"] != "completed":
        raise typer.Exit(1)  # a script can tell a failed job from a done one


if __name__ == "__main__":
    app()
