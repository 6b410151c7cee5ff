"""One process, one port: the gateway, the admin API and the Reflex dashboard behind one ASGI callable.

```
Granian ── OnePortApp ─┬─ API paths (/v1, /api, /health, /running, …) → SwitchyardApp (gateway or Litestar)
                       └─ everything else                              → Reflex (prebuilt pages, /_event websocket)
```

Why an outer dispatcher and not Reflex's ``rx.App(api_transformer=...)``: in Reflex 0.10.1 whatever the
transformer returns is mounted *inside* Reflex's top-level Starlette app (``reflex/app.py``, ``App.__call__``),
behind its context middleware and a ``CORSMiddleware(allow_credentials=True, allow_origins=["*"])`` that echoes
any ``Origin`` when a cookie is present. The hot path would pay for that stack, and the admin API would answer
credentialed cross-site reads once sign-in cookies exist. So API paths are routed before Reflex sees them;
Reflex only gets the lifespan (where it also runs Litestar's, registered with ``register_lifespan_task``) and
the dashboard's own paths.

The frontend is built ahead of time (``build_frontend``) with ``reflex export --frontend-only`` and served
from ``.web/build/client`` by the same process (``REFLEX_ENV_MODE=prod``, ``__REFLEX_MOUNT_FRONTEND_COMPILED_APP``,
``__REFLEX_SKIP_COMPILE``). The export bakes the websocket URL (``ws://localhost:PORT/_event``) into the bundle;
the browser swaps ``localhost`` for the page's host name but keeps the port, so a build is only valid for the
port it was made for. A stamp file records the port and a hash of the UI sources; a build is reused while both
match. Without a valid build the server still runs, API only.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from api.settings import Settings

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("switchyard.web")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
"""Where ``rxconfig.py`` and ``ui_reflex/`` live; Reflex resolves its project from here."""
WEB_DIR = PROJECT_ROOT / ".web"
STATES_DIR = PROJECT_ROOT / ".states"
TOOLS_DIR = PROJECT_ROOT / ".tools"
STAMP_PATH = WEB_DIR / "switchyard-frontend.json"
BUN_VERSION = "1.4.4"

API_PREFIXES = (
    "/v1",
    "/api",
    "/upstream",
    "/mcp-relays",
    "/metrics",
    "/health",
    "/running",
    "/logs",
    "/sdapi",
    "/rerank",
    "/infill",
    "/completion",
    "/props",
    "/ollama",
)
"""Path prefixes answered by the gateway/admin app; a prefix matches itself and anything below ``prefix/``."""


def routes_to_api(scope: Scope) -> bool:
    """Whether a request belongs to the API rather than the dashboard.

    ``/logs`` itself is shared, like llama-swap does it: a browser (``Accept: text/html``) gets the dashboard's
    Logs page, any other client gets the API's plain-text log (``/logs/`` too: the page's own address once the
    static frontend has added its trailing slash). Everything below ``/logs/`` is API.
    """
    path: str = scope.get("path", "")
    if path == "/logs/":  # the static frontend redirects the page /logs to /logs/
        return not _accepts_html(scope)
    for prefix in API_PREFIXES:
        if path == prefix:
            if prefix == "/logs":
                return not _accepts_html(scope)
            return True
        if path.startswith(prefix) and path[len(prefix)] == "/":
            return True
    return False


def _accepts_html(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            return b"text/html" in value
    return False


class OnePortApp:
    """The ASGI callable Granian runs: API paths to the Switchyard app, the rest (and the lifespan) to Reflex."""

    def __init__(self, api: ASGIApp, dashboard: ASGIApp):
        self.api = api
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" and routes_to_api(scope):
            await self.api(scope, receive, send)
            return
        await self.dashboard(scope, receive, send)


# --------------------------------------------------------------------------- the ASGI factory


def create_web_app() -> ASGIApp:
    """Granian factory (``--factory api.web:create_web_app``): the API plus the dashboard when it is built.

    Falls back to the API alone (``api.app:create_app``) with a warning when no frontend build matches
    the port this process serves on, or when the dashboard fails to load.
    """
    from api.app import create_app

    settings = Settings.from_env()
    api = create_app(settings)
    problem = frontend_problem(settings.port)
    if problem is not None:
        log.warning("dashboard not served (%s); serving the API only", problem)
        return api
    try:
        with _reflex_project():
            from ui_reflex.ui_reflex import app as dashboard

            dashboard.register_lifespan_task(api.litestar.lifespan)
            dashboard_asgi = dashboard()
    except Exception:  # a broken dashboard must not take the gateway down with it
        log.exception("the dashboard failed to start; serving the API only")
        return api
    return OnePortApp(api, dashboard_asgi)


@contextlib.contextmanager
def _reflex_project() -> Iterator[None]:
    """Load the Reflex app from the project root in prod mode with the prebuilt frontend mounted.

    Reflex reads ``rxconfig.py`` from the current directory, so the directory is switched only while the
    app is imported and assembled; afterwards the process keeps the caller's directory (model commands in
    config.yaml may use paths relative to it). Work directories are made absolute for the same reason.
    """
    os.environ.update(
        {
            "REFLEX_ENV_MODE": "prod",
            "__REFLEX_MOUNT_FRONTEND_COMPILED_APP": "true",
            "__REFLEX_SKIP_COMPILE": "true",
            "REFLEX_WEB_WORKDIR": str(WEB_DIR),
            "REFLEX_STATES_WORKDIR": str(STATES_DIR),
        }
    )
    previous = Path.cwd()
    os.chdir(PROJECT_ROOT)
    try:
        yield
    finally:
        os.chdir(previous)


# --------------------------------------------------------------------------- building the frontend


class FrontendBuildError(RuntimeError):
    """The dashboard could not be built; the message says why (and carries the build's last output)."""


@dataclass(frozen=True)
class FrontendBuild:
    api_url: str
    sources: str
    reused: bool
    seconds: float


def frontend_api_url(port: int) -> str:
    """The backend URL baked into the bundle: ``REFLEX_API_URL`` when set (e.g. behind a proxy), else localhost."""
    return os.environ.get("REFLEX_API_URL") or f"http://localhost:{port}"


def sources_digest() -> str:
    """Hash of everything that shapes the compiled frontend: UI sources, rxconfig, Reflex and bun versions."""
    digest = hashlib.sha256()
    files = [PROJECT_ROOT / "rxconfig.py", *sorted((PROJECT_ROOT / "ui_reflex").rglob("*.py"))]
    assets = PROJECT_ROOT / "assets"
    if assets.is_dir():
        files += sorted(p for p in assets.rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
        digest.update(path.read_bytes())
    digest.update(f"reflex={importlib.metadata.version('reflex')} bun={BUN_VERSION}".encode())
    return digest.hexdigest()[:16]


def frontend_problem(port: int) -> str | None:
    """Why the current build cannot be served on `port`, or None when it can."""
    if not (WEB_DIR / "build/client/index.html").is_file():
        return "the frontend is not built"
    try:
        stamp = json.loads(STAMP_PATH.read_text())
    except (OSError, ValueError):
        return "the frontend build has no stamp"
    if stamp.get("api_url") != frontend_api_url(port):
        return f"the frontend was built for {stamp.get('api_url')}, not {frontend_api_url(port)}"
    if stamp.get("sources") != sources_digest():
        return "the dashboard sources changed since the frontend was built"
    return None


def build_frontend(port: int, force: bool = False, *, progress: TextIO | None = None) -> FrontendBuild:
    """Build the dashboard's frontend for `port` once; later calls reuse it while the port and sources match.

    Installs bun from the npm registry into ``.tools`` when no bun is found, then runs
    ``reflex export --frontend-only --no-zip --env prod`` in the project root, streaming its output to
    `progress` (stderr by default). Concurrent builds (two processes) wait for each other on a file lock.
    Raises :class:`FrontendBuildError` on failure.
    """
    out = progress or sys.stderr
    started = time.monotonic()
    TOOLS_DIR.mkdir(exist_ok=True)
    with (TOOLS_DIR / "frontend-build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        api_url, sources = frontend_api_url(port), sources_digest()
        if not force and frontend_problem(port) is None:
            return FrontendBuild(api_url, sources, reused=True, seconds=time.monotonic() - started)
        bun_dir = _ensure_bun(out)
        env = {k: v for k, v in os.environ.items() if not k.startswith("__REFLEX") and k != "REFLEX_ENV_MODE"}
        env.update(
            PATH=f"{bun_dir}{os.pathsep}{env.get('PATH', '')}",
            REFLEX_USE_SYSTEM_BUN="1",
            REFLEX_API_URL=api_url,
            SWITCHYARD_PORT=str(port),
            REFLEX_WEB_WORKDIR=str(WEB_DIR),
            REFLEX_STATES_WORKDIR=str(STATES_DIR),
        )
        print(f"[dashboard] building the frontend for {api_url} (first run takes a minute)", file=out, flush=True)
        STAMP_PATH.unlink(missing_ok=True)
        command = [sys.executable, "-m", "reflex", "export", "--frontend-only", "--no-zip", "--env", "prod"]
        _run_streaming(command, env, out, what="reflex export")
        if not (WEB_DIR / "build/client/index.html").is_file():
            raise FrontendBuildError("reflex export finished but .web/build/client/index.html is missing")
        STAMP_PATH.write_text(json.dumps({"api_url": api_url, "sources": sources, "built_at": time.time()}))
        seconds = time.monotonic() - started
        print(f"[dashboard] frontend built in {seconds:.1f}s", file=out, flush=True)
        return FrontendBuild(api_url, sources, reused=False, seconds=seconds)


def _ensure_bun(out: TextIO) -> Path:
    """The directory holding a bun executable: ``.tools`` (installed here with npm on first use) or PATH."""
    local = TOOLS_DIR / "node_modules/.bin"
    if (local / "bun").is_file():
        return local
    system = shutil.which("bun")
    if system:
        return Path(system).parent
    npm = shutil.which("npm")
    if npm is None:
        raise FrontendBuildError("building the dashboard needs bun: install Node.js (npm) or bun and run again")
    print(f"[dashboard] installing bun {BUN_VERSION} from the npm registry into {TOOLS_DIR}", file=out, flush=True)
    _run_streaming(
        [npm, "install", "--prefix", str(TOOLS_DIR), f"bun@{BUN_VERSION}"],
        dict(os.environ),
        out,
        what="npm install bun",
    )
    if not (local / "bun").is_file():
        raise FrontendBuildError(f"npm installed bun but {local / 'bun'} is missing")
    return local


def _run_streaming(command: list[str], env: dict[str, str], out: TextIO, *, what: str) -> None:
    tail: list[str] = []
    proc = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        print(f"[dashboard] {line.rstrip()}", file=out, flush=True)
        tail = [*tail[-39:], line.rstrip()]
    if proc.wait() != 0:
        joined = "\n".join(tail)
        raise FrontendBuildError(f"{what} failed with exit code {proc.returncode}:\n{joined}")


# --------------------------------------------------------------------------- serving


def serve(settings: Settings, *, dashboard: bool = True) -> None:
    """Run Granian on ``settings.host:port`` with the combined app (or the API alone when `dashboard` is False).

    Call after the database is migrated and ``os.environ`` carries ``settings.as_env()`` (workers read it).
    Whether the dashboard is actually mounted depends on a matching build (see :func:`build_frontend`).
    """
    from granian import Granian
    from granian.constants import Interfaces, Loops

    level = {"warn": "warning"}.get(settings.log_level, settings.log_level)
    server = Granian(
        "api.web:create_web_app" if dashboard else "api.app:create_app",
        factory=True,
        interface=Interfaces.ASGI,
        address=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop=Loops.auto,
        log_level=level,  # type: ignore[arg-type]
        websockets=True,
    )
    ui = "" if not dashboard or frontend_problem(settings.port) else " (dashboard and API)"
    print(f"Switchyard listening on http://{settings.host}:{settings.port}{ui}", flush=True)
    server.serve()


def main(argv: list[str] | None = None) -> int:
    """``python -m api.web build [--port N] [--force]`` and ``python -m api.web serve [--config] [--port]``."""
    parser = argparse.ArgumentParser(prog="python -m api.web", description="Dashboard build and one-port serving.")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the dashboard's frontend for a port (reused when unchanged)")
    build.add_argument("--port", type=int, help="port the server will listen on (SWITCHYARD_PORT)")
    build.add_argument("--force", action="store_true", help="rebuild even when the build is current")
    run = commands.add_parser("serve", help="migrate the database and serve API and dashboard on one port")
    run.add_argument("--config", type=Path)
    run.add_argument("--port", type=int)
    args = parser.parse_args(argv)

    from api.settings import load_dotenv

    load_dotenv()
    if getattr(args, "config", None):
        os.environ["SWITCHYARD_CONFIG"] = str(args.config)
    if args.port:
        os.environ["SWITCHYARD_PORT"] = str(args.port)
    settings = Settings()
    if args.command == "build":
        try:
            result = build_frontend(settings.port, force=args.force)
        except FrontendBuildError as exc:
            print(f"dashboard build failed: {exc}", file=sys.stderr)
            return 1
        print(f"frontend for {result.api_url}: {'reused' if result.reused else 'built'} ({result.seconds:.1f}s)")
        return 0
    from api.db.migrate import upgrade

    upgrade(settings.database_url)
    os.environ.update(settings.as_env())
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
