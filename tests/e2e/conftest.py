"""Browser tests: the combined server (gateway + admin API + dashboard on one port) and headless Chromium.

The frontend is built once per session (``api.web.build_frontend``) and reused across sessions while the
UI sources and the port are unchanged: the port of the last build is reused when it is free, so a second
run skips the build. One server runs for the whole session, as in production: API keys required, the
dashboard behind sign-in. It runs as a subprocess in its own directory with its own config and database, in
front of the real llama-server. Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright;
``playwright install`` is never used.

The first browser to visit creates the admin account through the sign-up form (:func:`account`); every
other page opens signed in with that session's cookies. Tests that need setup through the API (a key for the
OpenAI SDK) use the static admin token, as automation would; the dashboard itself never does.
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
from tests.servers import ADMIN_HEADERS, ROOT, GatewayProcess, free_port

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
FAKE_MEDIA = Path(__file__).with_name("fake_media.py")
WIDTHS = {"desktop": 1280, "phone": 390}
USERNAME = "admin"
PASSWORD = "a long test passphrase"


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
    """`switchyard serve`: the gateway, the admin API and the dashboard on one port, sign-in and keys required."""

    def __init__(self, workdir: Path, config_text: str, port: int):
        super().__init__(
            workdir,
            config_text,
            env={
                "PYTHONPATH": str(ROOT),
                "SWITCHYARD_LOG_LEVEL": "info",
                "SWITCHYARD_DASHBOARD": "true",
                "SWITCHYARD_REQUIRE_AUTH": "true",
                "SWITCHYARD_SECRET_KEY": "e2e-vault-secret-0123456789abcdefghijklmnop",
                # the read-aloud test serves its article from loopback, which production refuses
                "SWITCHYARD_ARTICLE_ALLOW_PRIVATE": "true",
            },
        )
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

    def admin(self, method: str, path: str, **kwargs) -> httpx.Response:
        """An admin API call with the static admin token (test setup, as automation would do it)."""
        return httpx.request(method, self.base_url + path, headers=ADMIN_HEADERS, timeout=30, **kwargs)

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
          media:
            cmd: {sys.executable} {FAKE_MEDIA} --port ${{PORT}}
            name: Images, speech and transcription (a stand-in)
          spare:
            cmd: {llama_bin} -m {tiny_gguf} --host 127.0.0.1 --port ${{PORT}} -c 2048
            name: Spare test model
    """)


@pytest.fixture(scope="package")
def server(frontend_port, llama_bin, tiny_gguf, tmp_path_factory) -> Iterator[DashboardServer]:
    workdir = tmp_path_factory.mktemp("dashboard")
    server = DashboardServer(workdir, server_config(llama_bin, tiny_gguf), frontend_port).start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def api_key(server) -> str:
    """An inference key for the OpenAI SDK in tests (created with the admin token)."""
    response = server.admin("POST", "/api/keys", json={"name": "e2e tests"})
    response.raise_for_status()
    return response.json()["secret"]


# package scope: Playwright's sync API keeps an event loop running in this thread until it stops, which the
# asyncio tests collected after tests/e2e would trip over; the browser and server end with this package
@pytest.fixture(scope="package")
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


@dataclass(frozen=True)
class Account:
    """The admin account the first visit created, and the signed-in browser state to reuse."""

    username: str
    password: str
    storage_state: dict
    first_visit_title: str  # what /login offered on the very first visit
    landed_on: str  # where the browser went after signing up


def open_page(browser, base_url: str, width: int, storage_state: dict | None = None) -> tuple[object, BrowserPage]:
    context = browser.new_context(
        viewport={"width": width, "height": 900 if width > 600 else 844}, storage_state=storage_state
    )
    page = context.new_page()
    watched = BrowserPage(page, base_url)
    page.on("console", lambda m: m.type == "error" and watched.problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: watched.problems.append(f"page error: {e}"))
    page.on(
        "response",
        lambda r: r.status >= 400 and r.url.startswith(base_url) and watched.problems.append(f"{r.status} {r.url}"),
    )
    return context, watched


def sign_in_form(view: BrowserPage, username: str, password: str) -> None:
    page = view.page
    page.locator("#login-username").fill(username)  # type: ignore[attr-defined]
    page.locator("#login-password").fill(password)  # type: ignore[attr-defined]
    page.locator("#login-submit").click()  # type: ignore[attr-defined]


@pytest.fixture(scope="package")
def account(browser, server) -> Account:
    """The first visit: the dashboard sends the browser to /login, which offers to create the admin account."""
    from playwright.sync_api import expect

    assert httpx.get(server.base_url + "/api/auth/status", timeout=5).json()["signup_open"], "an account exists"
    context, view = open_page(browser, server.base_url, WIDTHS["desktop"])
    try:
        view.open("/")
        page = view.page
        page.wait_for_url("**/login**")  # type: ignore[attr-defined]
        title = page.locator("#login-title")  # type: ignore[attr-defined]
        expect(title).to_have_text("Create the admin account")
        first_visit_title = title.inner_text()
        view.screenshot("login-first-visit-1280")
        sign_in_form(view, USERNAME, PASSWORD)
        expect(page.locator("#signed-in-user")).to_have_text(USERNAME)  # type: ignore[attr-defined]
        assert view.problems == []
        return Account(USERNAME, PASSWORD, context.storage_state(), first_visit_title, page.url)  # type: ignore[attr-defined]
    finally:
        context.close()  # type: ignore[attr-defined]


@pytest.fixture(params=list(WIDTHS), ids=list(WIDTHS))
def width(request) -> int:
    return WIDTHS[request.param]


@pytest.fixture
def browser_page(browser, server, account, width) -> Iterator[BrowserPage]:
    context, watched = open_page(browser, server.base_url, width, account.storage_state)
    yield watched
    context.close()  # type: ignore[attr-defined]


@pytest.fixture
def desktop_page(browser, server, account) -> Iterator[BrowserPage]:
    context, watched = open_page(browser, server.base_url, WIDTHS["desktop"], account.storage_state)
    yield watched
    context.close()  # type: ignore[attr-defined]


@pytest.fixture
def signed_in(browser, server, account):
    """A factory of extra signed-in pages (closed at the end of the test)."""
    contexts = []

    def make(width: int = WIDTHS["desktop"]) -> BrowserPage:
        context, view = open_page(browser, server.base_url, width, account.storage_state)
        contexts.append(context)
        return view

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def anonymous(browser, server):
    """A factory of pages in fresh browsers without a session."""
    contexts = []

    def make(width: int = WIDTHS["desktop"], base_url: str | None = None) -> BrowserPage:
        context, view = open_page(browser, base_url or server.base_url, width)
        contexts.append(context)
        return view

    yield make
    for context in contexts:
        context.close()
