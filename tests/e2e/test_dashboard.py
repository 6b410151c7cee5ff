"""The dashboard in a real browser, against the real server and the real llama-server.

Every page in the navigation must load without console errors at 1280 px and 390 px (a screenshot of each
is saved under test-artifacts/screenshots/), and requests made with the OpenAI SDK must show up on the
dashboard and the request log while the pages stay open — no reload.
"""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import openai
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import BrowserPage
from tests.servers import free_port, wait_until
from ui_reflex.layout import NAVIGATION
from ui_reflex.pages.requests import PAGE_SIZE

FOLLOWING = "[data-live='live'], [data-live='polling']"  # a live page that got past "connecting"
# For each page: its heading and selectors that all appear once the page has its data (on_load has run).
PAGES = {
    "/": ("Dashboard", [FOLLOWING]),
    "/models": ("Models", [FOLLOWING, "[data-model='tiny']"]),
    "/requests": ("Requests", [FOLLOWING]),
    "/endpoints": ("Endpoints", ["[data-snippet='curl']:has-text('/v1/chat/completions')"]),
}
LIVE_TIMEOUT_MS = 15_000  # polling fallback refreshes every 5 s; the event stream is much faster


def chat(server, model: str = "tiny") -> None:
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=4)


def newest_request_id(server, after: int | None = None) -> int:
    """The id of the newest logged request, waiting until it is newer than `after` (the log is written async)."""
    newest: list[int] = []

    def written() -> bool:
        items = httpx.get(server.base_url + "/api/requests", params={"limit": 1}, timeout=5).json()["items"]
        newest[:] = [items[0]["id"]] if items else []
        return bool(newest) and (after is None or newest[0] > after)

    wait_until(written, timeout=10, message="a new request log row")
    return newest[0]


def wait_until_ready(view: BrowserPage, route: str) -> None:
    title, ready = PAGES[route]
    page = view.page
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
    for selector in ready:
        expect(page.locator(selector).first).to_be_visible()


def has_event_stream(server) -> bool:
    with httpx.stream("GET", server.base_url + "/api/events", timeout=5) as response:
        return response.status_code == 200


def test_every_navigation_entry_is_a_tested_page():
    assert [item.route for item in NAVIGATION] == list(PAGES)


@pytest.mark.parametrize("route", list(PAGES))
def test_page_loads_without_console_errors(browser_page: BrowserPage, server, width: int, route: str):
    chat(server)  # something to show in the tables
    browser_page.open(route)
    wait_until_ready(browser_page, route)
    page = browser_page.page
    if width >= 1000:
        expect(page.locator("[data-nav='requests']").first).to_be_visible()  # the sidebar
    else:
        expect(page.locator("#nav-menu")).to_be_visible()  # the phone's menu button
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{route} is {overflow}px wider than a {width}px screen"
    name = (route.strip("/") or "dashboard").replace("/", "-")
    browser_page.screenshot(f"{name}-{width}")
    assert browser_page.problems == []


def test_phone_menu_navigates(browser, server):
    from tests.e2e.conftest import open_page

    context, view = open_page(browser, server.base_url, 390)
    try:
        view.open("/")
        wait_until_ready(view, "/")
        view.page.locator("#nav-menu").click()
        view.page.get_by_role("dialog").locator("[data-nav='endpoints']").click()
        wait_until_ready(view, "/endpoints")
        assert view.page.url == server.base_url + "/endpoints"
        assert view.problems == []
    finally:
        context.close()


def test_new_request_appears_on_dashboard_and_request_log_without_reload(browser, server):
    from tests.e2e.conftest import open_page

    chat(server)
    before = newest_request_id(server)
    contexts, views = [], []
    for route in ("/", "/requests"):
        context, view = open_page(browser, server.base_url, 1280)
        contexts.append(context)
        view.open(route)
        wait_until_ready(view, route)
        expect(view.page.locator(f"[data-request-id='{before}']")).to_be_visible()
        view.page.evaluate("window.__not_reloaded = true")
        views.append(view)
    following = "live" if has_event_stream(server) else "polling"  # polling: a server without /api/events
    for view in views:
        expect(view.page.locator(f"[data-live='{following}']")).to_be_visible()
    try:
        chat(server)
        new_id = newest_request_id(server, after=before)
        for view in views:
            row = view.page.locator(f"[data-request-id='{new_id}']")
            expect(row).to_be_visible(timeout=LIVE_TIMEOUT_MS)
            expect(row).to_contain_text("tiny")
            assert view.page.evaluate("window.__not_reloaded === true"), "the page was reloaded"
            assert view.problems == []
    finally:
        for context in contexts:
            context.close()


def test_request_detail_drawer_shows_the_row(desktop_page: BrowserPage, server):
    chat(server)
    request_id = newest_request_id(server)
    desktop_page.open("/requests")
    wait_until_ready(desktop_page, "/requests")
    desktop_page.page.locator(f"[data-request-id='{request_id}']").click()
    detail = desktop_page.page.locator("#request-detail")
    expect(detail).to_be_visible()
    expect(detail).to_contain_text(f"Request {request_id}")
    expect(detail).to_contain_text("/v1/chat/completions")
    expect(detail).to_contain_text("Completion tokens")
    desktop_page.screenshot("requests-detail-1280")
    assert desktop_page.problems == []


def test_status_and_model_filters(desktop_page: BrowserPage, server):
    with pytest.raises(openai.NotFoundError):
        chat(server, model="no-such-model")
    failed_id = newest_request_id(server)
    chat(server)
    ok_id = newest_request_id(server, after=failed_id)
    page = desktop_page.page
    desktop_page.open("/requests")
    wait_until_ready(desktop_page, "/requests")
    expect(page.locator(f"[data-request-id='{failed_id}']")).to_be_visible()

    page.locator("#filter-status").click()
    page.get_by_role("option", name="Errors").click()
    expect(page.locator(f"[data-request-id='{ok_id}']")).to_have_count(0)
    expect(page.locator(f"[data-request-id='{failed_id}']")).to_be_visible()
    for badge in page.locator("[data-request-id] .rt-Badge").all_inner_texts():
        assert int(badge) >= 400

    page.locator("#filter-status").click()
    page.get_by_role("option", name="All statuses").click()
    page.locator("#filter-model").click()
    page.get_by_role("option", name="tiny").click()
    expect(page.locator(f"[data-request-id='{ok_id}']")).to_be_visible()
    expect(page.locator(f"[data-request-id='{failed_id}']")).to_have_count(0)
    assert desktop_page.problems == []


def test_request_log_pages_through_older_requests(desktop_page: BrowserPage, server):
    with httpx.Client(base_url=server.base_url, timeout=5) as http:
        for _ in range(PAGE_SIZE + 5):  # unknown-model requests are logged and cost nothing upstream
            http.post("/v1/chat/completions", json={"model": "no-such-model", "messages": []})
    newest_request_id(server)
    page = desktop_page.page
    desktop_page.open("/requests")
    wait_until_ready(desktop_page, "/requests")
    rows = page.locator("[data-request-id]")
    expect(rows).to_have_count(PAGE_SIZE)
    first_page = [int(i) for i in rows.evaluate_all("rows => rows.map(r => r.dataset.requestId)")]

    page.locator("#page-older").click()
    expect(page.get_by_text("Page 2")).to_be_visible()
    expect(page.locator(f"[data-request-id='{first_page[0]}']")).to_have_count(0)
    second_page = [int(i) for i in rows.evaluate_all("rows => rows.map(r => r.dataset.requestId)")]
    assert second_page and max(second_page) < min(first_page)

    page.locator("#page-newer").click()
    expect(page.get_by_text("Page 1")).to_be_visible()
    expect(page.locator(f"[data-request-id='{first_page[0]}']")).to_be_visible()
    assert desktop_page.problems == []


def test_models_page_loads_and_unloads_a_model(desktop_page: BrowserPage, server):
    page = desktop_page.page
    desktop_page.open("/models")
    wait_until_ready(desktop_page, "/models")
    card = page.locator("[data-model='spare']")
    expect(card).to_contain_text("Spare test model")
    expect(card.locator("[data-state='unloaded']")).to_be_visible()  # no other test uses this model

    card.locator("[data-action='load']").click()
    expect(card.locator("[data-state='ready']")).to_be_visible(timeout=30_000)

    card.locator("[data-action='unload']").click()
    alert = page.get_by_role("alert")
    expect(card.locator("[data-state='unloaded']").or_(alert).first).to_be_visible(timeout=30_000)
    if alert.count():  # a server without the unload endpoint: the page says so instead of failing silently
        expect(alert).to_contain_text("cannot unload models yet")
        assert httpx.post(server.base_url + "/api/models/unload/spare", timeout=5).status_code == 404
    desktop_page.screenshot("models-after-actions-1280")
    assert desktop_page.problems == []


def test_endpoint_snippets_name_this_server_and_the_python_one_works(desktop_page: BrowserPage, server):
    desktop_page.open("/endpoints")
    wait_until_ready(desktop_page, "/endpoints")
    page = desktop_page.page
    expect(page.locator("#base-url")).to_have_text(server.base_url + "/v1")
    page.locator("#snippet-model").click()
    page.get_by_role("option", name="tiny").click()
    expect(page.locator("[data-snippet='python']")).to_contain_text('model="tiny"')
    python = page.locator("[data-snippet='python'] code").inner_text()
    assert f'base_url="{server.base_url}/v1"' in python and 'model="tiny"' in python
    for key in ("curl", "typescript", "claude_code", "opencode", "open_webui", "continue", "home_assistant"):
        expect(page.locator(f"[data-snippet='{key}']")).to_contain_text(server.base_url)
    run = subprocess.run(
        [sys.executable, "-c", python],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SWITCHYARD_API_KEY": "unused"},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip()
    assert desktop_page.problems == []


def test_without_a_build_for_its_port_the_server_still_serves_the_api(frontend_port, llama_bin, tiny_gguf, tmp_path):
    from tests.e2e.conftest import DashboardServer, server_config

    other = DashboardServer(tmp_path, server_config(llama_bin, tiny_gguf), free_port())
    other.start(dashboard=False, build=False)
    try:
        assert httpx.get(other.base_url + "/v1/models", timeout=5).json()["data"]
        assert httpx.get(other.base_url + "/api/requests", timeout=5).status_code == 200
        assert httpx.get(other.base_url + "/", timeout=5).status_code == 404
        assert "dashboard not served (the frontend was built for" in other.log()
    finally:
        other.stop()
