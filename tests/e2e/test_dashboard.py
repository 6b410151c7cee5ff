"""The dashboard in a real browser, against the real server and the real llama-server.

Every page in the navigation must load without console errors at 1280 px and 390 px (a screenshot of each
is saved under test-artifacts/screenshots/), and requests made with the OpenAI SDK — with a key created on
the Keys page — must show up on the dashboard and the request log while the pages stay open: no reload.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx
import openai
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import BrowserPage
from tests.servers import ADMIN_HEADERS, free_port, wait_until
from ui_reflex.layout import NAVIGATION
from ui_reflex.pages.requests import PAGE_SIZE

FOLLOWING = "[data-live='live'], [data-live='polling']"  # a live page that got past "connecting"
# For each page: its heading and selectors that all appear once the page has its data (on_load has run).
PAGES = {
    "/": ("Dashboard", [FOLLOWING, "[data-stat='requests']", "[data-timeline='tiny']"]),
    "/models": ("Models", [FOLLOWING, "[data-model='tiny']"]),
    "/requests": ("Requests", [FOLLOWING, "[data-chart='histogram']"]),
    "/logs": ("Logs", ["[data-live='live']"]),
    "/keys": ("API keys", ["[data-key='e2e tests']"]),
    "/policies": ("Policies", ["#new-rule"]),
    "/attribution": ("Attribution", ["[data-example='claude_code']", "#sources-session"]),
    "/config": ("Config", ["#config-status:has-text('Valid')", "[data-line='1']"]),
    "/endpoints": ("Endpoints", ["[data-snippet='curl']:has-text('/v1/chat/completions')"]),
    "/playground": ("Playground", ["#chat-input"]),
    "/settings": ("Settings", ["#retention-days"]),
}
MORE_PAGES = {"/models/tiny": ("Model", ["#model-config:has-text('llama-server')", "#model-id"])}
LIVE_TIMEOUT_MS = 15_000  # polling fallback refreshes every 5 s; the event stream is much faster


def chat(server, api_key: str, model: str = "tiny") -> None:
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=api_key, max_retries=0)
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=4)


def newest_request_id(server, after: int | None = None) -> int:
    """The id of the newest logged request, waiting until it is newer than `after` (the log is written async)."""
    newest: list[int] = []

    def written() -> bool:
        items = server.requests(limit=1)
        newest[:] = [items[0]["id"]] if items else []
        return bool(newest) and (after is None or newest[0] > after)

    wait_until(written, timeout=10, message="a new request log row")
    return newest[0]


def wait_until_ready(view: BrowserPage, route: str) -> None:
    title, ready = {**PAGES, **MORE_PAGES}[route]
    page = view.page
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
    for selector in ready:
        expect(page.locator(selector).first).to_be_visible()


def test_every_navigation_entry_is_a_tested_page():
    assert [item.route for item in NAVIGATION] == list(PAGES)


@pytest.mark.parametrize("route", [*PAGES, *MORE_PAGES])
def test_page_loads_without_console_errors(browser_page: BrowserPage, server, api_key, width: int, route: str):
    chat(server, api_key)  # something to show in the tables
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


def test_phone_menu_navigates(signed_in, server):
    view = signed_in(390)
    view.open("/")
    wait_until_ready(view, "/")
    view.page.locator("#nav-menu").click()
    view.page.get_by_role("dialog").locator("[data-nav='endpoints']").click()
    wait_until_ready(view, "/endpoints")
    assert view.page.url.rstrip("/") == server.base_url + "/endpoints"
    assert view.problems == []


def test_a_key_created_on_the_keys_page_works_and_its_requests_appear_live(signed_in, server, api_key):
    chat(server, api_key)
    before = newest_request_id(server)
    views = []
    for route in ("/", "/requests"):
        view = signed_in()
        view.open(route)
        wait_until_ready(view, route)
        expect(view.page.locator(f"[data-request-id='{before}']").first).to_be_visible()
        view.page.evaluate("window.__not_reloaded = true")
        expect(view.page.locator("[data-live='live']")).to_be_visible()
        views.append(view)

    keys = signed_in()
    keys.open("/keys")
    wait_until_ready(keys, "/keys")
    keys.page.locator("#new-key").click()
    keys.page.locator("#key-name").fill("sdk laptop")
    keys.page.locator("#create-key").click()
    secret = keys.page.locator("#new-key-secret")
    expect(secret).to_have_text(re.compile(r"^sy-"))
    expect(keys.page.locator("[data-key='sdk laptop']")).to_be_visible()
    keys.screenshot("keys-created-1280")

    chat(server, secret.inner_text())
    new_id = newest_request_id(server, after=before)
    assert server.requests(limit=1)[0]["api_key_name"] == "sdk laptop"
    for view in views:
        row = view.page.locator(f"[data-request-id='{new_id}']").first
        expect(row).to_be_visible(timeout=LIVE_TIMEOUT_MS)
        expect(row).to_contain_text("tiny")
        assert view.page.evaluate("window.__not_reloaded === true"), "the page was reloaded"
    expect(views[1].page.locator(f"[data-request-id='{new_id}']")).to_contain_text("sdk laptop")
    # upstream health follows too (probes are cached for 10 s; the dashboard re-reads them on heartbeats)
    expect(views[0].page.locator("[data-upstream='tiny']")).to_contain_text(" ms", timeout=30_000)
    for view in (*views, keys):
        assert view.problems == []


def test_request_detail_shows_prompt_response_and_decisions(desktop_page: BrowserPage, server, api_key):
    chat(server, api_key)
    request_id = newest_request_id(server)
    desktop_page.open("/requests")
    wait_until_ready(desktop_page, "/requests")
    desktop_page.page.locator(f"[data-request-id='{request_id}']").click()
    detail = desktop_page.page.locator("#request-detail")
    expect(detail).to_contain_text(f"Request {request_id}")
    expect(detail).to_contain_text("/v1/chat/completions")
    expect(detail).to_contain_text("Time to first token")
    expect(desktop_page.page.locator("#request-prompt")).to_contain_text("user: Hello")
    expect(desktop_page.page.locator("#routing-decision")).to_contain_text("No routing rule matched")
    expect(desktop_page.page.locator("#credential-audit")).to_contain_text("None")
    expect(detail).to_contain_text("e2e tests")  # the key that made it
    desktop_page.screenshot("requests-detail-1280")
    assert desktop_page.problems == []


def test_search_and_filters(desktop_page: BrowserPage, server, api_key):
    with pytest.raises(openai.NotFoundError):
        chat(server, api_key, model="no-such-model")
    failed_id = newest_request_id(server)
    chat(server, api_key)
    ok_id = newest_request_id(server, after=failed_id)
    page = desktop_page.page
    desktop_page.open("/requests")
    wait_until_ready(desktop_page, "/requests")
    expect(page.locator(f"[data-request-id='{failed_id}']")).to_be_visible()

    page.locator("#filter-status").click()
    page.get_by_role("option", name="All errors").click()
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

    page.locator("#filter-model").click()
    page.get_by_role("option", name="All models").click()
    page.locator("#request-search").fill("no-such")
    page.locator("#request-search-submit").click()
    expect(page.locator(f"[data-request-id='{ok_id}']")).to_have_count(0)
    expect(page.locator(f"[data-request-id='{failed_id}']")).to_be_visible()
    expect(page.locator("#histogram-summary")).to_contain_text("failed")
    assert desktop_page.problems == []


def test_request_log_pages_through_older_requests(desktop_page: BrowserPage, server, api_key):
    with httpx.Client(base_url=server.base_url, timeout=5, headers={"authorization": f"Bearer {api_key}"}) as http:
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


def test_models_page_loads_and_unloads_a_model_and_its_page_shows_the_history(desktop_page: BrowserPage, server):
    page = desktop_page.page
    desktop_page.open("/models")
    wait_until_ready(desktop_page, "/models")
    card = page.locator("[data-model='spare']")
    expect(card).to_contain_text("Spare test model")
    expect(card.locator("[data-state='unloaded']")).to_be_visible()  # no other test uses this model

    card.locator("[data-action='load']").click()
    expect(card.locator("[data-state='ready']")).to_be_visible(timeout=30_000)
    card.locator("[data-action='unload']").click()
    expect(card.locator("[data-state='unloaded']")).to_be_visible(timeout=30_000)
    desktop_page.screenshot("models-after-actions-1280")

    card.get_by_role("link", name="spare").click()
    expect(page.locator("#model-id")).to_have_text("spare")
    history = page.locator("#model-history")
    expect(history).to_contain_text("starting → ready")
    expect(history).to_contain_text("stopped")
    expect(page.locator("#model-config")).to_contain_text("Spare test model")
    desktop_page.screenshot("model-spare-1280")
    assert desktop_page.problems == []


def test_endpoint_snippets_name_this_server_and_the_python_one_works(desktop_page: BrowserPage, server, api_key):
    restricted = server.admin("POST", "/api/keys", json={"name": "only tiny", "allowed_models": ["tiny"]}).json()
    desktop_page.open("/endpoints")
    wait_until_ready(desktop_page, "/endpoints")
    page = desktop_page.page
    expect(page.locator("#base-url")).to_have_text(server.base_url + "/v1")
    page.locator("#snippet-key").click()
    page.get_by_role("option", name=f"only tiny ({restricted['prefix']}…)").click()
    expect(page.locator("#key-note")).to_contain_text("It may use: tiny")
    page.locator("#snippet-model").click()
    expect(page.get_by_role("option")).to_have_text(["tiny"])  # the key's allow-list leaves one model
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
        env={**os.environ, "SWITCHYARD_API_KEY": restricted["secret"]},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip()
    assert desktop_page.problems == []


def test_without_a_build_for_its_port_the_server_still_serves_the_api(frontend_port, llama_bin, tiny_gguf, tmp_path):
    from tests.e2e.conftest import DashboardServer, server_config

    other = DashboardServer(tmp_path, server_config(llama_bin, tiny_gguf), free_port())
    other.start(dashboard=False, build=False)
    try:
        assert httpx.get(other.base_url + "/v1/models", headers=ADMIN_HEADERS, timeout=5).json()["data"]
        assert httpx.get(other.base_url + "/api/requests", headers=ADMIN_HEADERS, timeout=5).status_code == 200
        assert httpx.get(other.base_url + "/", timeout=5).status_code == 404
        assert "dashboard not served (the frontend was built for" in other.log()
    finally:
        other.stop()
