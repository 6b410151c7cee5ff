"""What people do on the dashboard's pages, end to end: edit the config, chat in the playground, watch a model's
log, write routing rules, store credentials, map attribution headers, change settings, edit a key."""

from __future__ import annotations

import re

import httpx
import openai
from playwright.sync_api import expect

from tests.e2e.conftest import BrowserPage
from tests.e2e.test_dashboard import chat, newest_request_id, wait_until_ready
from tests.servers import wait_until

BROKEN_AT_LINE_4 = "models:\n  tiny:\n    cmd: llama-server --port ${PORT}\n    ttl: soon\n"


def config_text(server) -> str:
    return server.admin("GET", "/api/config").text


def test_config_shows_a_broken_yaml_at_its_line_and_saves_nothing(desktop_page: BrowserPage, server):
    before = config_text(server)
    page = desktop_page.page
    desktop_page.open("/config")
    wait_until_ready(desktop_page, "/config")
    expect(page.locator("#config-editor")).to_have_value(before)

    page.locator("#config-editor").fill(BROKEN_AT_LINE_4)
    expect(page.locator("#config-status")).to_have_text(re.compile(r"1 error"))
    problem = page.locator("[data-problem-line='4']")
    expect(problem).to_contain_text("line 4")
    expect(problem).to_contain_text("ttl")
    expect(page.locator("[data-line='4']")).to_have_attribute("data-severity", "error")
    expect(page.locator("[data-line='3']")).to_have_attribute("data-severity", "")

    page.locator("#config-save").click()
    expect(page.get_by_role("alert")).to_contain_text("Nothing was changed")
    assert config_text(server) == before
    desktop_page.screenshot("config-error-1280")
    assert desktop_page.problems == []


def test_config_saves_a_good_edit_and_the_gateway_reloads_it(desktop_page: BrowserPage, server):
    before = config_text(server)
    edited = before.rstrip("\n") + "\n    aliases: [tiny-from-the-editor]\n"  # the last model entry gets an alias
    page = desktop_page.page
    desktop_page.open("/config")
    wait_until_ready(desktop_page, "/config")
    page.locator("#config-editor").fill(edited)
    expect(page.locator("#config-status")).to_have_text(re.compile(r"Valid: 3 models"))
    page.locator("#config-save").click()
    expect(page.locator("#config-message")).to_contain_text("Saved and reloaded: 3 models")
    assert config_text(server) == edited
    assert server.admin("GET", "/api/models/spare").json()["model"]["aliases"] == ["tiny-from-the-editor"]
    assert desktop_page.problems == []


WATCH_REPLY = """() => {
  window.__replyLengths = [];
  new MutationObserver(() => {
    const bubbles = document.querySelectorAll("[data-role='assistant']");
    const text = bubbles.length ? bubbles[bubbles.length - 1].innerText.trim() : "";
    const seen = window.__replyLengths;
    if (text && seen[seen.length - 1] !== text.length) seen.push(text.length);
  }).observe(document.getElementById("chat-log"), {subtree: true, childList: true, characterData: true});
}"""


def test_a_playground_chat_reply_streams_in_from_llama_server(desktop_page: BrowserPage, server):
    page = desktop_page.page
    desktop_page.open("/playground")
    wait_until_ready(desktop_page, "/playground")
    before = newest_request_id(server) if server.requests(limit=1) else 0
    page.locator("#chat-model").click()
    page.get_by_role("option", name="tiny", exact=True).click()
    page.get_by_label("Max tokens").fill("1500")
    page.evaluate(WATCH_REPLY)
    page.locator("#chat-input").fill("Tell me a story")
    page.locator("#chat-send").click()
    expect(page.locator("#chat-stats")).to_contain_text(re.compile(r"done.*tokens"), timeout=30_000)
    lengths = page.evaluate("window.__replyLengths")
    # the reply grew on the page piece by piece while llama-server generated it, not all at once at the end
    assert len(lengths) >= 3 and lengths == sorted(lengths), lengths
    assert page.locator("[data-role='assistant']").last.inner_text().strip()
    expect(page.locator("#chat-send")).to_be_visible()

    row = server.requests(limit=1)[0]
    assert row["id"] > before
    assert (row["path"], row["model"], row["streamed"], row["status_code"]) == (
        "/v1/chat/completions",
        "tiny",
        True,
        200,
    )
    assert row["api_key_name"] == "playground · admin"  # the temporary key of the signed-in user
    desktop_page.screenshot("playground-chat-1280")
    assert desktop_page.problems == []


def test_the_stop_button_ends_a_streaming_reply(desktop_page: BrowserPage, server):
    page = desktop_page.page
    desktop_page.open("/playground")
    wait_until_ready(desktop_page, "/playground")
    page.locator("#chat-model").click()
    page.get_by_role("option", name="media", exact=True).click()  # a stand-in that streams for 20 s
    page.locator("#chat-input").fill("Count slowly")
    page.locator("#chat-send").click()
    expect(page.locator("[data-role='assistant']").last).to_contain_text("tick tick")
    page.locator("#chat-stop").click()
    expect(page.locator("#chat-stats")).to_contain_text("stopped")
    ticks = page.locator("[data-role='assistant']").last.inner_text().count("tick")
    assert 2 <= ticks < 200
    expect(page.locator("#chat-send")).to_be_visible()

    def logged() -> dict | None:
        rows = [r for r in server.requests(limit=5) if r["model"] == "media" and r["path"] == "/v1/chat/completions"]
        return rows[0] if rows else None

    wait_until(lambda: logged() is not None, timeout=10, message="the stopped request in the log")
    assert logged()["duration_ms"] < 10_000  # the upstream stream was cut, not played out for 20 s
    assert desktop_page.problems == []


def test_logs_follow_a_model_server_while_the_page_is_open(desktop_page: BrowserPage, server, api_key):
    page = desktop_page.page
    desktop_page.open("/logs?model=tiny")
    wait_until_ready(desktop_page, "/logs")
    expect(page.locator("#log-source")).to_have_text("tiny")
    chat(server, api_key)  # makes llama-server log the request
    expect(page.locator("[data-log-source='tiny']").first).to_be_visible(timeout=15_000)
    count = page.locator("[data-log-source='tiny']").count()
    chat(server, api_key)
    expect(page.locator("[data-log-source='tiny']")).not_to_have_count(count, timeout=15_000)
    desktop_page.screenshot("logs-tiny-1280")
    assert desktop_page.problems == []


def test_routing_rules_are_written_ordered_and_applied(desktop_page: BrowserPage, server, api_key):
    page = desktop_page.page
    desktop_page.open("/policies")
    wait_until_ready(desktop_page, "/policies")
    for name, model in (("block gpt", "gpt-*"), ("rewrite alias", "fast")):
        page.locator("#new-rule").click()
        dialog = page.get_by_role("dialog")
        dialog.locator("input[name='name']").fill(name)
        dialog.locator("input[name='match_model']").fill(model)
        page.locator("#rule-action").click()
        page.get_by_role("option", name="reject" if model == "gpt-*" else "rewrite").click()
        if model == "fast":
            dialog.locator("input[name='rewrite_model']").fill("tiny")
        else:
            dialog.locator("input[name='reject_message']").fill("no cloud models here")
        page.locator("#save-rule").click()
        expect(page.locator("[data-rule]").filter(has_text=name)).to_be_visible()
    rules = page.locator("[data-rule]")
    expect(rules.first).to_contain_text("block gpt")
    rules.nth(1).get_by_role("button", name="Move up").click()
    expect(rules.first).to_contain_text("rewrite alias")
    assert [r["name"] for r in server.admin("GET", "/api/policies").json()] == ["rewrite alias", "block gpt"]

    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=api_key, max_retries=0)
    try:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        raise AssertionError("the reject rule did not apply")
    except openai.PermissionDeniedError as exc:
        assert "no cloud models here" in str(exc)
    reply = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert reply.choices
    desktop_page.screenshot("policies-rules-1280")
    for rule in server.admin("GET", "/api/policies").json():  # leave the gateway as the other tests expect it
        server.admin("DELETE", f"/api/policies/{rule['id']}")
    assert desktop_page.problems == []


def test_a_stored_credential_is_never_shown_again(desktop_page: BrowserPage, server):
    page = desktop_page.page
    desktop_page.open("/policies")
    wait_until_ready(desktop_page, "/policies")
    page.get_by_role("tab", name="Credential vault").click()
    page.locator("#credential-slug").fill("upstream-token")
    page.locator("#credential-secret").fill("sk-very-secret-value")
    page.locator("#store-credential").click()
    card = page.locator("[data-credential='upstream-token']")
    expect(card).to_be_visible()
    stored = server.admin("GET", "/api/credentials").json()
    assert [c["slug"] for c in stored] == ["upstream-token"]
    page.reload()
    page.get_by_role("tab", name="Credential vault").click()
    expect(page.locator("[data-credential='upstream-token']")).to_be_visible()
    assert "sk-very-secret-value" not in page.content()

    # an MCP relay that injects it, with the Claude Code snippet pointing at this gateway
    page.get_by_role("tab", name="MCP relays").click()
    relay_form = page.locator("form").filter(has_text="Add a relay")
    relay_form.locator("input[name='slug']").fill("docs")
    relay_form.locator("input[name='upstream_url']").fill("https://mcp.example.com/mcp")
    relay_form.locator("textarea[name='bindings']").fill("upstream-token: Authorization: Bearer {secret}")
    relay_form.get_by_role("button", name="Add relay").click()
    relay = page.locator("[data-relay='docs']")
    expect(relay).to_contain_text(f"{server.base_url}/mcp-relays/docs")
    expect(relay).to_contain_text("x-switchyard-api-key")
    assert server.admin("GET", "/api/mcp-relays/docs").json()["bindings"][0]["credential"] == "upstream-token"
    page.get_by_role("tab", name="Credential vault").click()
    expect(page.locator("[data-credential='upstream-token']")).to_contain_text("relay docs")
    assert "sk-very-secret-value" not in page.content()
    server.admin("DELETE", "/api/mcp-relays/docs")
    assert desktop_page.problems == []


def test_attribution_mapping_is_saved_and_read_back(desktop_page: BrowserPage, server):
    page = desktop_page.page
    desktop_page.open("/attribution")
    wait_until_ready(desktop_page, "/attribution")
    page.locator("#sources-session").fill("header:x-ticket\nheader:x-session-id")
    page.locator("#save-attribution").click()
    expect(page.get_by_text("Saved: new requests are attributed this way.")).to_be_visible()
    mapping = server.admin("GET", "/api/settings/attribution").json()
    assert [s["name"] for s in mapping["session"]] == ["x-ticket", "x-session-id"]
    assert mapping["customized"] == ["session"]
    server.admin("DELETE", "/api/settings/attribution")
    assert desktop_page.problems == []


def test_settings_change_live_and_prune_runs(desktop_page: BrowserPage, server):
    page = desktop_page.page
    desktop_page.open("/settings")
    wait_until_ready(desktop_page, "/settings")
    page.locator("#retention-days").fill("45")
    page.locator("#save-settings").click()
    expect(page.locator("#settings-message")).to_contain_text("Saved")
    assert server.admin("GET", "/api/settings").json()["retention_days"] == 45
    page.locator("#prune").click()
    expect(page.locator("#settings-message")).to_contain_text("Pruned 0 requests")
    assert desktop_page.problems == []


def test_a_key_page_edits_limits_and_shows_usage_by_model(desktop_page: BrowserPage, server):
    created = server.admin("POST", "/api/keys", json={"name": "team a"}).json()
    openai.OpenAI(base_url=server.base_url + "/v1", api_key=created["secret"], max_retries=0).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    page = desktop_page.page
    desktop_page.open("/keys")
    wait_until_ready(desktop_page, "/keys")
    page.locator("[data-key='team a']").get_by_role("link", name="team a").click()
    expect(page.locator("#key-title")).to_have_text("team a")
    expect(page.locator("[data-usage-model='tiny']")).to_be_visible(timeout=10_000)
    page.locator("input[name='rpm_limit']").fill("30")
    page.locator("textarea[name='allowed_models']").fill("tiny")
    page.locator("#save-key").click()
    expect(page.get_by_text("Saved. The gateway applies it to the next request.")).to_be_visible()
    key = server.admin("GET", f"/api/keys/{created['id']}").json()
    assert (key["rpm_limit"], key["allowed_models"]) == (30, ["tiny"])
    refused = httpx.post(
        server.base_url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {created['secret']}"},
        json={"model": "spare", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert refused.status_code == 403
    page.locator("#revoke-key").click()
    expect(page.locator("[data-state='revoked']")).to_be_visible()
    desktop_page.screenshot("key-detail-1280")
    assert desktop_page.problems == []


ARTICLE = b"""<!doctype html><html><head><title>Quiet rooms</title></head><body><nav>Menu</nav><article>
<h1>Quiet rooms</h1><p>Libraries are adding quiet rooms because people come to work there, not only to read books.</p>
<p>The rooms fill up early in the morning and stay full until the doors close late in the evening.</p>
</article><footer>Footer text</footer></body></html>"""


def choose(page, trigger: str, option: str) -> None:
    page.locator(trigger).click()
    page.get_by_role("option", name=option, exact=True).click()


def test_playground_images_speech_and_transcription_go_through_the_gateway(desktop_page: BrowserPage, server, tmp_path):
    import threading
    import wave
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Article(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(ARTICLE)))
            self.end_headers()
            self.wfile.write(ARTICLE)

        def log_message(self, *args) -> None:
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), Article)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    page = desktop_page.page
    try:
        desktop_page.open("/playground")
        wait_until_ready(desktop_page, "/playground")

        page.get_by_role("tab", name="Images").click()
        choose(page, "#image-model", "media")
        choose(page, "#image-size", "256x256")
        page.locator("#image-prompt").fill("a teal square")
        page.get_by_role("button", name="Generate").click()
        image = page.locator("img.generated").first
        expect(image).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
        assert image.evaluate("img => img.naturalWidth") == 256
        expect(page.locator("a[download$='.png']").first).to_be_visible()

        page.get_by_role("tab", name="Speech").click()
        choose(page, "#speech-model", "media")
        expect(page.locator("#speech-voice")).to_have_text("alloy")
        page.locator("#speech-text").fill("One two three.\n\nFour five six seven.")
        page.get_by_role("button", name="Speak").click()
        expect(page.locator("[data-clip]")).to_have_count(2)
        expect(page.locator("#speech-player")).to_have_attribute("src", re.compile(r"^data:audio/wav;base64,"))
        # when the first paragraph has been played, the player moves on to the second by itself
        expect(page.locator("[data-clip='1'] .rt-variant-solid")).to_be_visible(timeout=10_000)

        page.locator("#article-url").fill(f"http://127.0.0.1:{site.server_address[1]}/story")
        page.locator("#speech-text").fill("")
        page.get_by_role("button", name="Speak").click()
        expect(page.get_by_role("heading", name="Quiet rooms")).to_be_visible()
        clips = page.locator("[data-clip]")
        expect(clips).to_have_count(2)
        expect(clips.first).to_contain_text("Libraries are adding quiet rooms")
        desktop_page.screenshot("playground-speech-1280")

        recording = tmp_path / "hello.wav"
        with wave.open(str(recording), "wb") as wav:
            wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(8000)
            wav.writeframes(b"\0\0" * 800)
        page.get_by_role("tab", name="Transcription").click()
        choose(page, "#transcribe-model", "media")
        page.locator("input[type='file']").set_input_files(str(recording))
        page.get_by_role("button", name="Transcribe").click()
        expect(page.locator("#transcript")).to_have_text(f"heard {recording.stat().st_size} bytes of audio/wav")
    finally:
        site.shutdown()
    paths = [row["path"] for row in server.requests(limit=20) if row["model"] == "media"]
    assert {"/v1/images/generations", "/v1/audio/speech", "/v1/audio/transcriptions"} <= set(paths)
    assert desktop_page.problems == []
