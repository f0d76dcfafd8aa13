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


def _facade_schema(settings) -> None:
    """The facade database at this Sojourn's schema before a process starts serving: migrated here if it may
    (SOJOURN_DATABASE_MIGRATE_ON_START), else one line naming the command to run, and exit 2."""
    from sojourn.store.db import engine_for
    from sojourn.store.schema import SchemaNotReady

    try:
        engine_for(settings.database_location)
    except SchemaNotReady as exc:
        print(f"sojourn: {exc}", file=sys.stderr)
        raise typer.Exit(2)


def _upgrade_facade_schema(settings) -> str:
    """Bring the facade database to this Sojourn's schema (one process at a time); says what it did."""
    from sojourn.store import schema
    from sojourn.store.db import new_engine

    engine = new_engine(settings.database_location)
    try:
        before, after = schema.upgrade(engine)
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    return f"facade database {where}: schema {after}" + ("" if before == after else f" (was {before or 'none'})")


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

        _upgrade_facade_schema(settings)
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
    _facade_schema(_settings())
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
    _facade_schema(settings)
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
    _facade_schema(settings)

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


db_app = typer.Typer(help="The facade database's schema: run `sojourn db upgrade` once per release, before the API processes.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the facade database to this Sojourn's schema (safe to run again, and from several hosts)."""
    print(_upgrade_facade_schema(_settings()))


@db_app.command("current")
def db_current() -> None:
    """Print the facade database's schema revision and the one this Sojourn needs; exit 1 when they differ."""
    from sojourn.store import schema
    from sojourn.store.db import new_engine

    engine = new_engine(_settings().database_location)
    try:
        with engine.connect() as conn:
            now = schema.current(conn)
    finally:
        engine.dispose()
    print(f"schema {now or 'none'} (this Sojourn needs {schema.head()})")
    if now != schema.head():
        raise typer.Exit(1)


@db_app.command("revision", hidden=True)
def db_revision(message: str) -> None:
    """(Development) Write the next migration from the difference between the models and the database (at head)."""
    from sojourn.store import schema
    from sojourn.store.db import new_engine

    engine = new_engine(_settings().database_location)
    try:
        print(schema.new_revision(engine, message))
    finally:
        engine.dispose()


def _client():
    """The native API's client for the shell: SOJOURN_URL and SOJOURN_API_KEY, else this machine's stack (`sojourn up`)
    and its admin key."""
    from sojourn.client import Sojourn
    from sojourn.services.principals import known_admin_key

    settings = _settings()
    url = os.environ.get("SOJOURN_URL") or f"http://{settings.api_host}:{settings.api_port}"
    key = os.environ.get("SOJOURN_API_KEY") or known_admin_key(settings)
    if not key:
        print("sojourn: no API key: set SOJOURN_API_KEY (or start the stack here with `sojourn up`)", file=sys.stderr)
        raise typer.Exit(2)
    return Sojourn(url, key)


def _jsonable(value: object) -> object:
    """``json.dumps``'s fallback: the client's answers (pydantic models) as the API sent them."""
    to_dict = getattr(value, "to_dict", None)
    if to_dict is None:
        raise TypeError(f"{type(value).__name__} is not JSON")
    return to_dict()


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, default=_jsonable))


def _api_errors(fn):
    """One line for an error answer (its code and message), exit 1."""
    import functools

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        from sojourn.client import SojournError

        try:
            return fn(*a, **kw)
        except SojournError as exc:
            print(f"sojourn: {exc.code}: {exc.message}", file=sys.stderr)
            raise typer.Exit(1)
    return wrapper


keys_app = typer.Typer(help="API keys (admin key): create, list, revoke.")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
@_api_errors
def keys_create(name: str, principal: Optional[str] = typer.Option(None, help="who owns what the key creates (default: a new principal)"),
                scope: Optional[list[str]] = typer.Option(None, help="jobs:read, jobs:write, admin (repeat; default read and write)")) -> None:
    """Create a key; it is printed once (keep it), with its id and principal."""
    with _client() as sj:
        _print_json(sj.create_key(name, principal=principal, scopes=scope))


@keys_app.command("list")
@_api_errors
def keys_list() -> None:
    with _client() as sj:
        _print_json(sj.keys())


@keys_app.command("revoke")
@_api_errors
def keys_revoke(key_id: str) -> None:
    with _client() as sj:
        sj.revoke_key(key_id)
    print(f"revoked {key_id}")


jobs_app = typer.Typer(help="Jobs of the key's principal (all jobs for the admin key): list, get, cancel.")
app.add_typer(jobs_app, name="jobs")


@jobs_app.command("list")
@_api_errors
def jobs_list(status: Optional[str] = typer.Option(None, help="submitted, processing, completed, failed, cancelled (comma-separated)"),
              limit: int = typer.Option(20, help="at most this many, newest first")) -> None:
    import itertools

    with _client() as sj:
        _print_json(list(itertools.islice(sj.list(status=status, page_size=min(limit, 100)), limit)))


@jobs_app.command("get")
@_api_errors
def jobs_get(job_id: str, wait: float = typer.Option(0, help="wait up to this many seconds for it to end")) -> None:
    with _client() as sj:
        try:
            _print_json(sj.wait(job_id, wait) if wait else sj.get(job_id))
        except TimeoutError:
            _print_json(sj.get(job_id))


@jobs_app.command("cancel")
@_api_errors
def jobs_cancel(job_id: str) -> None:
    with _client() as sj:
        _print_json(sj.cancel(job_id))


@jobs_app.command("logs")
@_api_errors
def jobs_logs(job_id: str) -> None:
    """A job's log lines, one per line: time, level, message."""
    with _client() as sj:
        for entry in sj.logs(job_id):
            print(f"{entry.get('timestamp', '')} {entry.get('level', '')} {entry.get('message', '')}".strip())


scrape_app = typer.Typer(help="The scrape-jobs API's projects from the shell.")
app.add_typer(scrape_app, name="scrape")


@scrape_app.command("export")
@_api_errors
def scrape_export(project_id: str = typer.Argument(..., help="the project (prj_…)"),
                  format: str = typer.Option("csv", "--format", help="csv, jsonl or json"),
                  job: Optional[str] = typer.Option(None, help="only this scrape job's results (job_…)")) -> None:
    """Every result of a project (or of one of its jobs), streamed to stdout: `sojourn scrape export prj_… > results.csv`."""
    if format not in ("csv", "jsonl", "json"):
        print(f"sojourn: --format: expected csv, jsonl or json, got {format!r}", file=sys.stderr)
        raise typer.Exit(2)
    with _client() as sj:
        for chunk in sj.export_results(project_id, job_id=job, format=format):
            sys.stdout.buffer.write(chunk)
    sys.stdout.flush()


@app.command("run")
@_api_errors
def run_file(path: Path = typer.Argument(..., help="a JSON Lines file: one job per line, as POST /api/v1/jobs takes it ({type, input, options})"),
             out: Optional[Path] = typer.Option(None, help="write each ended job to OUT/<line>/ (job.json and its captures); a line "
                                                           "completed there already is skipped, so running it again resumes"),
             max_concurrent: Optional[int] = typer.Option(None, help="at most this many of them run at once"),
             timeout: float = typer.Option(3600, help="give up waiting after this many seconds")) -> None:
    """Run a file of jobs as one batch: each ended job is printed as a JSON line as it ends (with its line number),
    progress and a summary go to stderr; exit 0 when every job completed, 1 otherwise. Ctrl-C cancels the jobs not
    ended yet."""
    from sojourn.batch_files import already_done, read_jobs, save_job

    try:
        lines = read_jobs(path)
    except ValueError as exc:
        print(f"sojourn: {exc}", file=sys.stderr)
        raise typer.Exit(2)
    skipped = already_done(out, [n for n, _ in lines]) if out else set()
    todo = [(n, job) for n, job in lines if n not in skipped]
    if skipped:
        print(f"{len(skipped)} of {len(lines)} lines completed in {out} already: skipped", file=sys.stderr)
    if not todo:
        raise typer.Exit(0)
    with _client() as sj:
        batch = sj.create_batch([job for _, job in todo], max_concurrent=max_concurrent)
        line_of = dict(zip(batch["jobIds"], [n for n, _ in todo]))
        print(f"batch {batch['batchId']}: {len(line_of)} jobs", file=sys.stderr)
        ended: dict[int, dict] = {}
        with _BatchProgress(len(line_of)) as progress:
            try:
                for job in sj.wait_batch(batch["batchId"], timeout=timeout):
                    n = line_of[job["id"]]
                    if out:
                        job = save_job(sj, sj.get(job["id"]), out / str(n))
                    ended[n] = job
                    print(json.dumps({"line": n, **job}, default=_jsonable), flush=True)
                    progress.ended(job["status"])
            except TimeoutError as exc:
                print(f"sojourn: {exc}", file=sys.stderr)
                raise typer.Exit(1)
            except KeyboardInterrupt:
                left = [j for j, n in line_of.items() if n not in ended]
                for job_id in left:
                    try:
                        sj.cancel(job_id)
                    except Exception:  # noqa: BLE001 - ended meanwhile, or the API is gone: say what was asked
                        pass
                print(f"sojourn: interrupted: cancelled the {len(left)} jobs not ended", file=sys.stderr)
                raise typer.Exit(130)
    failed = sum(j["status"] != "completed" for j in ended.values())
    _summary(ended, out)
    print(f"{len(ended)}/{len(line_of)} ended ({failed} not completed)", file=sys.stderr)
    raise typer.Exit(1 if failed else 0)


class _BatchProgress:
    """A live bar on a terminal (done, failed, rate, ETA); a line per ended job elsewhere."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self._bar = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TimeRemainingColumn(), console=Console(stderr=True))
            self._task = self._bar.add_task(self._text(), total=total)

    def _text(self) -> str:
        return f"{self.done - self.failed} completed, {self.failed} not"

    def __enter__(self) -> "_BatchProgress":
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def ended(self, status: str) -> None:
        self.done += 1
        self.failed += status != "completed"
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, description=self._text())
        else:
            print(f"{self.done}/{self.total} ended ({self.failed} not completed)", file=sys.stderr, flush=True)


def _summary(ended: dict[int, dict], out: Optional[Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("line", "job", "status", "error" if not out else "saved in")
    for n in sorted(ended):
        job = ended[n]
        table.add_row(str(n), job["id"], job["status"], str(out / str(n)) if out else ((job.get("error") or {}).get("message") or ""))
    Console(stderr=True, width=160).print(table)


@app.command("status")
@_api_errors
def status_cmd() -> None:
    """The system's status (workers, queue, services) as JSON; exit 0 when healthy, 1 when degraded or unhealthy."""
    with _client() as sj:
        status = sj.status()
    _print_json(status)
    raise typer.Exit(0 if status.get("status") == "healthy" else 1)


@app.command("bootstrap")
def bootstrap_cmd() -> None:
    """Migrate the facade database, and create or update the work pool, its queues and the deployments: what runs
    once per release of a scaled-out deployment."""
    from sojourn.deployments.bootstrap import bootstrap

    settings = _settings()
    print(_upgrade_facade_schema(settings))
    print(asyncio.run(bootstrap(settings)))


@app.command("tourist-issuer-token")
def tourist_issuer_token() -> None:
    """Print a Tourist issuer token: it mints visit tokens at /tourist/api/v1/issue-token, nothing else."""
    from sojourn.services.visit_tokens import issuer_token

    print(issuer_token(_settings()))


@app.command()
@_api_errors
def submit(
    url: str,
    screenshot: bool = typer.Option(True, help="capture a screenshot"),
    out: Optional[Path] = typer.Option(None, help="write the screenshot here"),
    wait: bool = typer.Option(True, help="wait for the job to finish"),
    timeout: float = typer.Option(300, help="give up waiting after this many seconds"),
) -> None:
    """Submit a one-page job through the API (sojourn.client) and print its answer, then the finished job."""
    with _client() as sj:
        accepted = sj.create({"steps": [{"url": url}], "capture": ["screenshot"] if screenshot else []})
        _print_json(accepted)
        if not wait:
            return
        job = sj.wait(accepted["jobId"], timeout=timeout)
        _print_json(job)
        if out and (job.get("result") or {}).get("screenshots"):
            sj.download_screenshot(job["result"]["screenshots"][0], out)
            print(f"screenshot written to {out}")
    if job["status"] != "completed":
        raise typer.Exit(1)  # a script can tell a failed job from a done one


if __name__ == "__main__":
    app()
