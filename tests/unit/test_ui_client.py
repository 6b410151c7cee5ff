"""The dashboard's API client, stats and snippets, without a browser or a server.

The client is exercised against httpx.MockTransport answering the way the real endpoints answer (the
e2e tests cover the real server); what matters here is parsing, error mapping and the fallbacks.
"""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime

import httpx
import pytest
import yaml

from ui_reflex.api_client import (
    AdminClient,
    ApiError,
    CredentialBinding,
    HeaderCondition,
    KeyDraft,
    LiveEvent,
    NotFound,
    NotSignedIn,
    PolicyRule,
    RequestQuery,
    RequestRow,
    RouteTarget,
    RuleMatch,
    default_base_url,
    parse_chat_line,
    parse_sse,
)
from ui_reflex.client_snippets import SNIPPET_KINDS, client_snippets
from ui_reflex.request_views import format_ms, request_view, summarize_requests


def row(
    id_: int, status: int = 200, prompt: int | None = 10, completion: int | None = 20, tps: float | None = 40.0, **extra
) -> dict:
    return {
        "id": id_,
        "created_at": "2026-01-02T03:04:05.5Z",
        "method": "POST",
        "path": "/v1/chat/completions",
        "model": "tiny",
        "upstream_model": "tiny",
        "status_code": status,
        "duration_ms": 1234.5,
        "ttft_ms": 80.0,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": 0,
        "tokens_per_second": tps,
        "streamed": True,
        "client_addr": "127.0.0.1",
        "error": None if status < 400 else "boom",
        **extra,
    }


def client(handler) -> AdminClient:
    return AdminClient("http://switchyard.test", transport=httpx.MockTransport(handler))


async def test_list_requests_sends_filters_and_parses_rows():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(request.url.params)
        body = {"items": [row(7, future_field="ignored", cost_usd=0.002, credentials_used=["gh"])], "next_cursor": 7}
        return httpx.Response(200, json=body, headers={"ETag": '"v1"'})

    query = RequestQuery(q="chat", key="laptop", status="5xx", since=datetime(2026, 1, 1, tzinfo=UTC))
    async with client(handler) as api:
        page = await api.list_requests(limit=20, before=9, query=query, model="tiny")
    assert seen == {
        "limit": "20", "before": "9", "q": "chat", "model": "tiny", "key": "laptop", "status": "5xx",
        "since": "2026-01-01T00:00:00+00:00",
    }  # fmt: skip
    assert page.next_cursor == 7 and page.etag == '"v1"'
    [r] = page.items
    assert r.created_at == datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)
    assert r.ok and r.tokens_per_second == 40.0
    assert (r.cost_usd, r.credentials_used) == (0.002, ("gh",))


async def test_not_modified_is_none():
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["if-none-match"] == '"v1"'
        return httpx.Response(304)

    async with client(handler) as api:
        assert await api.list_requests(if_none_match='"v1"') is None


async def test_errors_carry_the_api_message_401_is_not_signed_in_and_404_is_not_found():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/running":
            return httpx.Response(404, json={"status_code": 404, "detail": "Not Found"})
        if request.url.path == "/api/auth/me":
            return httpx.Response(401, json={"status_code": 401, "detail": "not signed in"})
        if request.url.path == "/api/keys":
            extra = [{"key": "name", "message": "must not be blank", "source": "body"}]
            return httpx.Response(400, json={"status_code": 400, "detail": "a key needs a name", "extra": extra})
        return httpx.Response(503, json={"error": {"message": "model is starting"}})

    async with client(handler) as api:
        with pytest.raises(NotFound) as missing:
            await api.running()
        with pytest.raises(NotSignedIn):
            await api.whoami()
        with pytest.raises(ApiError) as invalid:
            await api.create_key(KeyDraft(name=" "))
        with pytest.raises(ApiError) as failed:
            await api.system_status()
    assert missing.value.message == "Not Found"
    assert invalid.value.explanation == "a key needs a name; name: must not be blank"
    assert (failed.value.status, failed.value.message) == (503, "model is starting")


async def test_config_save_with_errors_comes_back_unsaved_with_its_problems():
    problem = {"path": "models.a.ttl", "message": "must be an integer", "line": 4, "column": 5, "severity": "error"}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "PUT" and request.headers["if-match"] == '"abc"'
        assert request.content == b"models: broken"
        return httpx.Response(422, json={"saved": False, "problems": [problem]})

    async with client(handler) as api:
        result = await api.save_config("models: broken", if_match='"abc"')
    assert (result.saved, result.valid) == (False, False)
    assert [(p.line, p.column, p.path) for p in result.problems] == [(4, 5, "models.a.ttl")]


async def test_policy_rules_go_out_in_the_shape_the_api_takes():
    sent = {}

    def handler(request: httpx.Request) -> httpx.Response:
        sent.update(json.loads(request.content))
        return httpx.Response(201, json={**sent, "id": "rule_1", "position": 0, "hits": 0})

    rule = PolicyRule(
        id="",
        name="to claude",
        match=RuleMatch(model="claude-*", headers=(HeaderCondition("x-team", "research"),)),
        action="route",
        target=RouteTarget(kind="upstream", base_url="https://api.anthropic.com"),
        bindings=(CredentialBinding("anthropic", header="x-api-key"),),
    )
    async with client(handler) as api:
        saved = await api.create_rule(rule)
    assert "id" not in sent and "hits" not in sent
    assert sent["match"]["headers"] == [{"name": "x-team", "pattern": "research"}]
    assert sent["bindings"][0] == {"credential": "anthropic", "mode": "header", "header": "x-api-key",
                                   "template": "{secret}", "in_body": False}  # fmt: skip
    assert saved.id == "rule_1" and saved.target == rule.target and saved.bindings == rule.bindings


async def lines(*items: str):
    for item in items:
        yield item


async def test_sse_parser_follows_the_event_stream_format():
    stream = lines(
        ": comment",
        "event: request.completed",
        'data: {"model": "tiny",',
        'data: "status": 200}',
        "",
        "data: not json",
        "",
        "event: heartbeat",
        "data: {}",
        "",
        "event: dangling",
        "data: {}",
    )
    events = [e async for e in parse_sse(stream)]
    assert events == [
        LiveEvent("request.completed", {"model": "tiny", "status": 200}),
        LiveEvent("message", {"text": "not json"}),
        LiveEvent("heartbeat", {}),
    ]


async def test_events_stream_from_the_server_and_404_means_no_stream():
    body = b'event: model.state\ndata: {"model": "tiny", "state": "ready"}\n\n'

    async with client(lambda request: httpx.Response(200, content=body)) as api:
        assert [e async for e in api.events()] == [LiveEvent("model.state", {"model": "tiny", "state": "ready"})]
    async with client(lambda request: httpx.Response(404, json={"detail": "Not Found"})) as api:
        with pytest.raises(NotFound):
            [e async for e in api.events()]


def test_chat_stream_lines_give_text_usage_and_llama_timings():
    assert parse_chat_line('data: {"choices": [{"delta": {"content": "Hel"}}]}').text == "Hel"
    last = parse_chat_line(
        'data: {"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": {"completion_tokens": 9},'
        ' "timings": {"predicted_per_second": 51.5}}'
    )
    assert (last.text, last.finish_reason, last.completion_tokens, last.tokens_per_second) == ("", "stop", 9, 51.5)
    assert parse_chat_line("data: [DONE]") is None and parse_chat_line(": keep-alive") is None
    with pytest.raises(ApiError, match="out of memory"):
        parse_chat_line('data: {"error": {"message": "out of memory"}}')


def test_default_base_url_reaches_a_wildcard_bind_over_loopback(monkeypatch):
    monkeypatch.delenv("SWITCHYARD_INTERNAL_URL", raising=False)
    monkeypatch.setenv("SWITCHYARD_PORT", "4000")
    monkeypatch.setenv("SWITCHYARD_HOST", "0.0.0.0")
    assert default_base_url() == "http://127.0.0.1:4000"
    monkeypatch.setenv("SWITCHYARD_HOST", "::")
    assert default_base_url() == "http://[::1]:4000"
    monkeypatch.setenv("SWITCHYARD_HOST", "192.168.1.5")
    assert default_base_url() == "http://192.168.1.5:4000"


def test_tokens_per_second_weighs_requests_by_the_tokens_they_generated():
    rows = [RequestRow.from_json(r) for r in (row(1, completion=300, tps=100.0), row(2, completion=10, tps=10.0))]
    # 310 tokens generated in 3 s + 1 s; the plain mean of the two rates would say 55
    assert summarize_requests(rows).tokens_per_second == pytest.approx(310 / 4)


def test_stats_count_tokens_and_errors_and_skip_rows_without_usage():
    rows = [
        RequestRow.from_json(r)
        for r in (row(1, completion=100, tps=100.0), row(2, 502, prompt=None, completion=None, tps=None))
    ]
    stats = summarize_requests(rows)
    assert (stats.requests, stats.tokens, stats.errors, stats.tokens_per_second) == (2, 110, 1, 100.0)
    assert stats.error_rate == pytest.approx(1 / 2)


def test_empty_window_has_no_rate():
    stats = summarize_requests([])
    assert (stats.requests, stats.tokens_per_second, stats.error_rate) == (0, None, 0.0)


def test_request_view_formats_for_people():
    view = request_view(RequestRow.from_json(row(5, 500, prompt=None, completion=None, tps=None)))
    assert (view.duration, view.tokens, view.rate, view.error, view.ok) == ("1.23 s", "—", "—", "boom", False)
    assert [format_ms(v) for v in (None, 12.4, 59_999, 61_000)] == ["—", "12 ms", "60.00 s", "1 m 1 s"]


def test_snippets_are_valid_in_their_own_languages_and_name_the_server():
    snippets = client_snippets("http://gw.local:3000/", "qwen")
    assert set(snippets) == {kind.key for kind in SNIPPET_KINDS}
    for kind in SNIPPET_KINDS:
        text = snippets[kind.key]
        assert "http://gw.local:3000" in text and "//v1" not in text
        assert "qwen" in text or kind.key == "open_webui"  # Open WebUI lists the models itself
        if kind.language == "json":
            json.loads(text)
        elif kind.language == "yaml":
            yaml.safe_load(text)
        elif kind.language == "python":
            ast.parse(text)
    assert json.loads(snippets["claude_code"])["env"]["ANTHROPIC_BASE_URL"] == "http://gw.local:3000"
    assert yaml.safe_load(snippets["continue"])["models"][0]["apiBase"] == "http://gw.local:3000/v1"
