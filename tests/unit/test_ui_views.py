"""The dashboard's plain-Python parts: forwarding the sign-in, reading forms, chart geometry and what the pages
show about requests, configs and keys — all without a browser or a server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ui_reflex import forms
from ui_reflex.api_client import (
    AttributionSource,
    Capture,
    CapturedBody,
    ConfigProblem,
    CredentialBinding,
    HeaderCondition,
    Histogram,
    HistogramBucket,
    ModelEvent,
    RequestDetail,
    RequestPage,
    RequestRow,
)
from ui_reflex.charts import histogram_bars, sparkline_area, sparkline_points, timeline_segments
from ui_reflex.pages.config import gutter_lines, line_count
from ui_reflex.pages.dashboard import stat_tiles
from ui_reflex.pages.endpoints import key_allows
from ui_reflex.pages.playground import paragraphs_of
from ui_reflex.request_views import (
    conversation_text,
    format_cost,
    reply_text,
    request_detail_view,
    routing_decision,
)
from ui_reflex.session import forwarded_credentials, login_url

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def request_row(id_: int = 1, **extra) -> RequestRow:
    data = {
        "id": id_, "created_at": NOW.isoformat(), "method": "POST", "path": "/v1/chat/completions",
        "model": "tiny", "upstream_model": "tiny", "status_code": 200, "duration_ms": 120.0, "ttft_ms": 20.0,
        "prompt_tokens": 5, "completion_tokens": 10, "cached_tokens": None, "tokens_per_second": 50.0,
        "streamed": True, "client_addr": "127.0.0.1", "error": None, **extra,
    }  # fmt: skip
    return RequestRow.from_json(data)


# --------------------------------------------------------------------------- the sign-in, forwarded


def test_only_the_sign_in_cookies_are_forwarded_with_the_csrf_token():
    header = 'theme=dark; switchyard_session=tok-123; other="x y"; switchyard_csrf=csrf-456'
    assert forwarded_credentials(header) == {"cookie": "switchyard_session=tok-123", "x-csrf-token": "csrf-456"}


def test_no_session_cookie_forwards_nothing_even_with_a_csrf_cookie():
    assert forwarded_credentials("switchyard_csrf=abc") == {}
    assert forwarded_credentials("") == {}
    assert forwarded_credentials("garbage;;; =; switchyard_session=ok") == {"cookie": "switchyard_session=ok"}


def test_a_connection_from_another_origin_forwards_no_credentials():
    cookie = "switchyard_session=tok; switchyard_csrf=c"
    hosts = ["127.0.0.1:3000"]
    assert forwarded_credentials(cookie, origin="http://127.0.0.1:3000", hosts=hosts)["cookie"]
    assert forwarded_credentials(cookie, origin="http://127.0.0.1:8080", hosts=hosts) == {}  # same site, other app
    assert forwarded_credentials(cookie, origin="https://ai.example.com", hosts=[*hosts, "ai.example.com"])
    assert forwarded_credentials(cookie, origin="null", hosts=hosts) == {}
    assert forwarded_credentials(cookie, hosts=hosts)  # no Origin: not sent by a browser on a page's behalf


def test_login_returns_only_to_pages_of_this_site():
    assert login_url("/keys?x=1") == "/login?next=/keys%3Fx%3D1"
    assert login_url("/login?next=/") == "/login"
    assert login_url("https://evil.example/") == "/login"


# --------------------------------------------------------------------------- forms


def test_lists_split_on_commas_and_lines_without_blanks_or_repeats():
    assert forms.items("qwen*, llama\n\n re:^phi ,qwen*") == ("qwen*", "llama", "re:^phi")


def test_optional_numbers_treat_empty_and_zero_as_unlimited():
    assert forms.optional_int({"rpm": ""}, "rpm", "RPM") is None
    assert forms.optional_int({"rpm": "0"}, "rpm", "RPM") is None
    assert forms.optional_int({"rpm": " 60 "}, "rpm", "RPM") == 60
    with pytest.raises(forms.FormProblem, match="RPM must be a whole number"):
        forms.optional_int({"rpm": "lots"}, "rpm", "RPM")
    with pytest.raises(forms.FormProblem, match="between 100 and 599"):
        forms.required_int({"s": "99"}, "s", "Status", minimum=100, maximum=599)


def test_checkboxes_are_on_when_the_browser_sends_on():
    assert forms.checked({"admin": "on"}, "admin") and not forms.checked({}, "admin")


def test_credential_bindings_round_trip_through_their_lines():
    bindings = (
        CredentialBinding("openai", header="Authorization", template="Bearer {secret}"),
        CredentialBinding("gh", mode="placeholder"),
        CredentialBinding("body-token", mode="placeholder", in_body=True),
    )
    text = forms.bindings_to_lines(bindings)
    assert text.splitlines() == [
        "openai: Authorization: Bearer {secret}",
        "gh: placeholder",
        "body-token: placeholder in body",
    ]
    assert forms.bindings_from_lines(text) == bindings
    assert forms.bindings_from_lines("key: x-api-key") == (CredentialBinding("key", header="x-api-key"),)
    with pytest.raises(forms.FormProblem, match="line 1"):
        forms.bindings_from_lines("just-a-slug")


def test_header_conditions_default_to_present():
    assert forms.header_conditions_from_lines("x-team: re:^(a|b)$\nx-flag") == (
        HeaderCondition("x-team", "re:^(a|b)$"),
        HeaderCondition("x-flag", "*"),
    )


def test_attribution_sources_round_trip_with_patterns_and_fallback():
    sources = (
        AttributionSource("header", "x-session-id"),
        AttributionSource("body", "metadata.user_id", "session_([0-9a-f-]+)", True),
        AttributionSource("header", "x-with-space", "a b/c"),
    )
    text = forms.sources_to_lines(sources)
    assert forms.sources_from_lines(text) == sources
    with pytest.raises(forms.FormProblem, match="source line 1"):
        forms.sources_from_lines("cookie:session")


# --------------------------------------------------------------------------- charts


def test_sparkline_spans_the_box_with_the_peak_at_the_top():
    points = [tuple(map(float, p.split(","))) for p in sparkline_points([0, 5, 10]).split()]
    assert [x for x, _ in points] == [0.0, 50.0, 100.0]
    assert points[2][1] == pytest.approx(1.0) and points[0][1] == pytest.approx(27.0)
    assert sparkline_points([]) == "" and sparkline_area("") == ""
    assert sparkline_area("0.00,27.00 100.00,1.00") == "0.00,28.0 0.00,27.00 100.00,1.00 100.00,28.0"
    assert sparkline_points([0, 0]) == "0.00,27.00 100.00,27.00"  # all zero: a flat line at the bottom


def test_histogram_bars_scale_to_the_tallest_and_stack_errors():
    bars = histogram_bars([2, 4, 0], [1, 0, 0], ["a", "b", "c"])
    assert [(b.height, b.error_height) for b in bars] == [(50.0, 25.0), (100.0, 0.0), (0.0, 0.0)]


def event(minutes_ago: float, state: str, previous: str | None = None) -> ModelEvent:
    return ModelEvent(NOW - timedelta(minutes=minutes_ago), state, previous, None, None)


def test_timeline_marks_where_a_model_was_running_in_the_window():
    since = NOW - timedelta(hours=1)
    history = [event(50, "starting", "stopped"), event(49, "ready", "starting"), event(20, "stopped", "ready")]
    segments = timeline_segments(history, since, NOW, "stopped")
    assert [(s.state, round(s.left, 1), round(s.width, 1)) for s in segments] == [
        ("starting", 16.7, 1.7),
        ("ready", 18.3, 48.3),
    ]


def test_timeline_of_a_model_loaded_before_the_window_starts_at_its_left_edge():
    since = NOW - timedelta(hours=1)
    segments = timeline_segments([event(120, "ready", "starting")], since, NOW, "ready")
    assert [(s.state, s.left, s.width) for s in segments] == [("ready", 0.0, 100.0)]
    assert timeline_segments([], since, NOW, "stopped") == []


def test_a_load_seconds_ago_still_shows_at_the_right_edge():
    since = NOW - timedelta(hours=24)
    [segment] = timeline_segments([event(0.1, "ready", "stopped")], since, NOW, "ready")
    assert (segment.left, segment.width) == (99.4, 0.6)


# --------------------------------------------------------------------------- requests


def test_chat_prompts_and_replies_are_read_from_captured_bodies():
    request = {"model": "tiny", "messages": [{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}  # fmt: skip
    assert conversation_text(json.dumps(request)) == "system: Be brief.\n\nuser: Hi"
    assert conversation_text("not json") is None
    answer = {"choices": [{"message": {"role": "assistant", "content": "Hello!"}}]}
    assert reply_text(json.dumps(answer)) == "Hello!"
    stream = 'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\ndata: {"choices":[{"delta":{"content":"lo"}}]}\n\n'
    assert reply_text(stream + "data: [DONE]\n\n") == "Hello"
    anthropic = (
        'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":"Hi"}}\n'
    )
    assert reply_text(anthropic) == "Hi"


def test_the_detail_view_explains_routing_credentials_and_missing_captures():
    row = request_row(
        policy_rule_id="to-claude", policy_action="route", routed_model="claude-sonnet", credentials_used=["anthropic"]
    )
    capture = Capture(
        request_headers=(("content-type", "application/json"), ("authorization", "[redacted]")),
        request_body=CapturedBody("application/json", 80, '{"messages": [{"role": "user", "content": "Hi"}]}'),
        response_headers=(),
        response_body=CapturedBody("audio/mpeg", 4096, None, omitted="binary"),
    )
    view = request_detail_view(RequestDetail(row, capture))
    assert view.routing == "Rule to-claude matched (route), sent to claude-sonnet."
    assert view.credentials == ["anthropic"]
    assert (view.prompt, view.response) == ("user: Hi", "")
    assert view.response_note == "audio/mpeg of 4.0 KB (binary, not kept)"
    assert [h.value for h in view.request_headers] == ["application/json", "[redacted]"]
    assert "No capture" in request_detail_view(RequestDetail(request_row(), None)).capture_note
    assert routing_decision(request_row()) == "No routing rule matched: the requested model served it."


def test_costs_show_sub_cent_amounts_and_unknown_prices():
    assert [format_cost(v) for v in (0.0, 0.00042, 0.0123, 12.5)] == ["$0", "$0.00042", "$0.0123", "$12.50"]
    assert format_cost(None) == "—" and format_cost(0.0, known=False) == "—"


def test_stat_tiles_count_from_the_histogram_and_price_from_the_rows():
    since = NOW - timedelta(hours=2)
    buckets = [HistogramBucket(since, 3, 1, 30, 60), HistogramBucket(since + timedelta(hours=1), 1, 0, 5, 10)]
    histogram = Histogram(since, NOW, 3600.0, buckets)
    rows = [request_row(1, cost_usd=0.01, cost_known=True), request_row(2, created_at=since.isoformat())]
    tiles = {t.key: t for t in stat_tiles(RequestPage(rows, None), histogram, since)}
    assert (tiles["requests"].value, tiles["tokens"].value, tiles["errors"].value) == ("4", "105", "1")
    assert tiles["errors"].alert and tiles["errors"].hint == "25.0% of requests"
    assert tiles["cost"].value == "$0.0100"
    assert len(tiles["requests"].points.split()) == 2


# --------------------------------------------------------------------------- config, keys, speech


def test_the_gutter_marks_problem_lines_and_errors_win_over_warnings():
    problems = [
        ConfigProblem("models.a", "unused", 2, 1, "warning"),
        ConfigProblem("models.a.ttl", "must be an integer", 2, 5, "error"),
        ConfigProblem("(yaml)", "cut short", 9, 1, "error"),  # past the end: shown on the last line
    ]
    gutter = gutter_lines(line_count("a: 1\nb: 2\nc: 3\n"), problems)
    assert [(g.number, g.severity) for g in gutter] == [(1, ""), (2, "error"), (3, "error")]
    assert gutter[1].message == "must be an integer"
    assert line_count("") == 1 and line_count("x") == 1 and line_count("x\ny") == 2


def test_key_allow_lists_take_globs_and_regular_expressions():
    assert key_allows((), "anything")
    assert key_allows(("qwen*",), "qwen3-8b") and not key_allows(("qwen*",), "llama")
    assert key_allows(("re:^llama-3",), "llama-3-70b") and not key_allows(("re:[",), "x")


def test_pasted_text_is_read_aloud_paragraph_by_paragraph():
    text = "First line\ncontinues here.\n\n\nSecond paragraph.\n\n   \n"
    assert paragraphs_of(text) == ["First line continues here.", "Second paragraph."]
