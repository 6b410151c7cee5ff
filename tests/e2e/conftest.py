"""Browser tests: the combined server (gateway + admin API + dashboard on one port) and headless Chromium.

The frontend is built once per session (``api.web.build_frontend``) and reused across sessions while the
UI sources and the port are unchanged: the port of the last build is reused when it is free, so a second
run skips the build. The server runs as a subprocess in its own directory with its own config and database,
in front of the real llama-server. Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright;
``playwright install`` is never used.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from api.web import STAMP_PATH, build_frontend
from tests.servers import ROOT, GatewayProcess, free_port

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "test-artifacts/screenshots"
WIDTHS = {"desktop": 1280, "phone": 390}


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no obstacle
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _e2e_port() -> int:
    """SWITCHYARD_E2E_PORT, else the port of the existing build when it is free (no rebuild), else any free port."""
    if os.environ.get("SWITCHYARD_E2E_PORT"):
        return int(os.environ["SWITCHYARD_E2E_PORT"])
    try:
        built_for = json.loads(STAMP_PATH.read_text())["api_url"]
        port = int(built_for.rsplit(":", 1)[1])
        if _port_is_free(port):
            return port
    except (OSError, ValueError, KeyError, IndexError):
        pass
    return free_port()


class DashboardServer(GatewayProcess):
    """`switchyard serve`: the gateway, the admin API and the dashboard on one port."""

    def __init__(self, workdir: Path, config_text: str, port: int):
        super().__init__(
            workdir, config_text,
            env={"PYTHONPATH": str(ROOT), "SWITCHYARD_LOG_LEVEL": "info", "SWITCHYARD_DASHBOARD": "true"},
        )  # fmt: skip
        self.port = port

    def start(self, timeout: float = 60.0, *, dashboard: bool = True, build: bool = True) -> DashboardServer:
        """Start and wait until the dashboard answers (or, with `dashboard=False`, until /health does).

        `build=False` runs `python -m api.web serve`, which serves whatever build exists and never builds one
        (`switchyard serve` builds the frontend for its port first).
        """
        self._log = self.log_path.open("ab")
        module = "api.cli" if build else "api.web"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "serve", "--config", str(self.config_path), "--port", str(self.port)],
            cwd=self.workdir,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            if self._answers(dashboard):
                return self
            time.sleep(0.2)
        raise RuntimeError(f"server did not come up:\n{self.log()}")

    def _answers(self, dashboard: bool) -> bool:
        try:
            if not dashboard:
                return httpx.get(self.base_url + "/health", timeout=2).status_code == 200
            page = httpx.get(self.base_url + "/", timeout=2)
            return page.status_code == 200 and "text/html" in page.headers.get("content-type", "")
        except httpx.HTTPError:
            return False


@pytest.fixture(scope="session")
def frontend_port() -> int:
    port = _e2e_port()
    build_frontend(port)
    return port


def server_config(llama_bin: str, tiny_gguf: Path) -> str:
    return textwrap.dedent(f"""
        startPort: {free_port()}
        healthCheckTimeout: 30
        models:
          tiny:
            cmd: {llama_bin} -m {tiny_gguf} --host 127.0.0.1 --port ${{PORT}} -c 2048
            name: Tiny test model
            description: random weights, for tests
          spare:
            cmd: {llama_bin} -m {tiny_gguf} --host 127.0.0.1 --port ${{PORT}} -c 2048
            name: Spare test model
    """)


@pytest.fixture(scope="session")
def server(frontend_port, llama_bin, tiny_gguf, tmp_path_factory) -> Iterator[DashboardServer]:
    workdir = tmp_path_factory.mktemp("dashboard")
    server = DashboardServer(workdir, server_config(llama_bin, tiny_gguf), frontend_port).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium (never `playwright install`)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@dataclass
class BrowserPage:
    """A Playwright page plus everything it reported that a person would call a problem."""

    page: object
    base_url: str
    problems: list[str] = field(default_factory=list)

    def open(self, path: str) -> None:
        self.page.goto(self.base_url + path)  # type: ignore[attr-defined]

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        return path


def open_page(browser, base_url: str, width: int) -> tuple[object, BrowserPage]:
    context = browser.new_context(viewport={"width": width, "height": 900 if width > 600 else 844})
    page = context.new_page()
    watched = BrowserPage(page, base_url)
    page.on("console", lambda m: m.type == "error" and watched.problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: watched.problems.append(f"page error: {e}"))
    page.on(
        "response",
        lambda r: r.status >= 400 and r.url.startswith(base_url) and watched.problems.append(f"{r.status} {r.url}"),
    )
    return context, watched


@pytest.fixture(params=list(WIDTHS), ids=list(WIDTHS))
def width(request) -> int:
    return WIDTHS[request.param]


@pytest.fixture
def browser_page(browser, server, width) -> Iterator[BrowserPage]:
    context, watched = open_page(browser, server.base_url, width)
    yield watched
    context.close()  # type: ignore[attr-defined]


@pytest.fixture
def desktop_page(browser, server) -> Iterator[BrowserPage]:
    context, watched = open_page(browser, server.base_url, WIDTHS["desktop"])
    yield watched
    context.close()  # type: ignore[attr-defined]
