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

from ui_reflex.api_client import AdminClient, ApiError, LiveEvent, NotFound, RequestRow, default_base_url, parse_sse
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
        body = {"items": [row(7, future_field="ignored")], "next_cursor": 7}
        return httpx.Response(200, json=body, headers={"ETag": '"v1"'})

    async with client(handler) as api:
        page = await api.list_requests(limit=20, before=9, model="tiny", status="ok")
    assert seen == {"limit": "20", "before": "9", "model": "tiny", "status": "ok"}
    assert page.next_cursor == 7 and page.etag == '"v1"'
    [r] = page.items
    assert r.created_at == datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)
    assert r.ok and r.tokens_per_second == 40.0


async def test_status_filter_holds_even_when_the_server_ignores_it():
    async with client(
        lambda request: httpx.Response(200, json={"items": [row(2, 500), row(1)], "next_cursor": None})
    ) as api:
        errors = await api.list_requests(status="error")
        ok = await api.list_requests(status="ok")
    assert [r.id for r in errors.items] == [2]
    assert [r.id for r in ok.items] == [1]


async def test_not_modified_is_none():
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["if-none-match"] == '"v1"'
        return httpx.Response(304)

    async with client(handler) as api:
        assert await api.list_requests(if_none_match='"v1"') is None


async def test_errors_carry_the_api_message_and_404_is_not_found():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/running":
            return httpx.Response(404, json={"status_code": 404, "detail": "Not Found"})
        return httpx.Response(503, json={"error": {"message": "model is starting"}})

    async with client(handler) as api:
        with pytest.raises(NotFound) as missing:
            await api.running()
        with pytest.raises(ApiError) as failed:
            await api.list_models()
    assert missing.value.message == "Not Found"
    assert (failed.value.status, failed.value.message) == (503, "model is starting")


async def test_load_falls_back_to_a_one_token_request_when_there_is_no_load_endpoint():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.raw_path.decode()))
        if request.url.path.endswith("/load"):
            return httpx.Response(404, json={"detail": "Not Found"})
        assert json.loads(request.content)["max_tokens"] == 1
        return httpx.Response(200, json={"choices": []})

    async with client(handler) as api:
        assert await api.load_model("org/model") == "warm-up request"
    assert calls == [("POST", "/api/models/org%2Fmodel/load"), ("POST", "/v1/chat/completions")]


async def test_models_merge_listing_fields():
    listing = {
        "data": [
            {
                "id": "tiny",
                "name": "Tiny",
                "status": {"value": "loaded"},
                "meta": {"llamaswap": {"type": "model", "aliases": ["t"]}},
            },
            {"id": "peer/x", "meta": {"llamaswap": {"type": "peer"}}},
        ]
    }
    async with client(lambda request: httpx.Response(200, json=listing)) as api:
        tiny, peer = await api.list_models()
    assert (tiny.loaded, tiny.aliases, tiny.kind) == (True, ("t",), "model")
    assert (peer.loaded, peer.kind) == (False, "peer")


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
