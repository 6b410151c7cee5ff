"""The usage scraper reads what each upstream reports, and nothing it does not.

Recorded llama-server responses and hand-written cloud shapes live in
``tests/fixtures/streams`` (see ``tests/fixtures/stream_fixtures.py``); their
expected figures were derived without ``core.tokens``.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib

import pytest

from core.tokens import WINDOW_BYTES, UsageScraper, scrape_usage
from tests.fixtures.stream_fixtures import load_stream_fixtures

FIXTURES = load_stream_fixtures()
COUNT_FIELDS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "reported_cost_usd",
    "upstream_tokens_per_second",
    "error_message",
    "content_events",
)
SSE = "text/event-stream"
JSON = "application/json"


class SteppingClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def sse(*events: object, terminator: str = "\n") -> bytes:
    out = []
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        out.append(f"data: {data}{terminator}{terminator}")
    return "".join(out).encode()


def chat_chunk(content: str | None = None, usage: dict | None = None, timings: dict | None = None) -> dict:
    chunk: dict = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}}]}
    if content is not None:
        chunk["choices"][0]["delta"]["content"] = content
    if usage is not None:
        chunk["usage"] = usage
    if timings is not None:
        chunk["timings"] = timings
    return chunk


# ---------------------------------------------------------------- fixtures


def test_there_are_recorded_and_hand_written_fixtures_for_every_family():
    names = {fixture.name for fixture in FIXTURES}
    for required in (
        "llama_chat_stream_usage",
        "llama_chat",
        "llama_completions_stream",
        "llama_completions",
        "llama_responses_stream",
        "llama_responses",
        "llama_messages_stream",
        "llama_messages",
        "llama_embeddings",
        "llama_count_tokens",
        "openai_cloud_chat_stream_usage",
        "anthropic_cloud_messages_stream",
        "openai_cloud_responses_stream",
    ):
        assert required in names


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda fixture: fixture.name)
def test_whole_body_gives_the_independently_derived_figures(fixture):
    usage = scrape_usage(fixture.body, fixture.content_type)
    assert {field: getattr(usage, field) for field in COUNT_FIELDS} == {
        field: fixture.expected[field] for field in COUNT_FIELDS
    }


@pytest.mark.parametrize("fixture", [f for f in FIXTURES if f.meta.get("request")], ids=lambda fixture: fixture.name)
def test_recorded_generations_report_exactly_the_requested_token_count(fixture):
    # llama-server generates exactly max_tokens tokens with the tiny model: the counts are checkable
    request = fixture.meta["request"]["body"]
    wanted = request.get("max_tokens") or request.get("max_output_tokens") or request.get("n_predict")
    usage = scrape_usage(fixture.body, fixture.content_type)
    if wanted is None:
        assert usage.completion_tokens in (None, 0)
    else:
        assert usage.completion_tokens == wanted
        assert usage.prompt_tokens > 0


def test_count_tokens_answer_is_not_usage():
    fixture = next(f for f in FIXTURES if f.name == "llama_count_tokens")
    usage = scrape_usage(fixture.body, fixture.content_type)
    assert json.loads(fixture.body)["input_tokens"] > 0
    assert usage.prompt_tokens is None and usage.completion_tokens is None
    assert not usage.tokens_known


# ---------------------------------------------------------------- what is read


def test_openai_include_usage_final_chunk_with_cached_and_reasoning_details():
    body = sse(
        chat_chunk("Hel", usage=None),
        chat_chunk("lo", usage=None),
        {
            "choices": [],
            "usage": {
                "prompt_tokens": 1200,
                "completion_tokens": 40,
                "total_tokens": 1240,
                "prompt_tokens_details": {"cached_tokens": 1024},
                "completion_tokens_details": {"reasoning_tokens": 32},
            },
        },
        "[DONE]",
    )
    usage = scrape_usage(body, SSE)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.reasoning_tokens) == (
        1200,
        40,
        1024,
        32,
    )
    assert usage.total_tokens == 1240
    assert usage.content_events == 2


def test_usage_repeated_in_every_chunk_keeps_the_last_figures():
    # vLLM's continuous_usage_stats reports the running totals on each chunk
    body = sse(
        chat_chunk("a", usage={"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}),
        chat_chunk("b", usage={"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}),
        chat_chunk("c", usage={"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}),
    )
    usage = scrape_usage(body, SSE)
    assert (usage.prompt_tokens, usage.completion_tokens) == (9, 3)


def test_llama_timings_count_only_when_there_is_no_usage():
    timings = {"prompt_n": 4, "cache_n": 20, "predicted_n": 7, "prompt_per_second": 900.0, "predicted_per_second": 50.0}
    only_timings = scrape_usage(sse(chat_chunk("x"), chat_chunk(timings=timings)), SSE)
    assert (only_timings.prompt_tokens, only_timings.cached_tokens, only_timings.completion_tokens) == (24, 20, 7)
    assert only_timings.prompt_per_second == 900.0
    assert only_timings.upstream_tokens_per_second == 50.0

    usage = {"prompt_tokens": 30, "completion_tokens": 8, "total_tokens": 38}
    both = scrape_usage(sse(chat_chunk("x"), chat_chunk(usage=usage, timings=timings)), SSE)
    assert (both.prompt_tokens, both.completion_tokens) == (30, 8)
    assert both.cached_tokens == 20  # usage had no details; the same server's cache_n fills it


def test_anthropic_prompt_adds_cache_reads_and_writes_and_message_delta_updates_cumulatively():
    body = (
        b"event: message_start\n"
        b'data: {"type":"message_start","message":{"type":"message","usage":'
        b'{"input_tokens":10,"cache_creation_input_tokens":300,"cache_read_input_tokens":2000,"output_tokens":1}}}\n\n'
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n'
        b"event: message_delta\n"
        b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":12}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    usage = scrape_usage(body, SSE)
    assert usage.prompt_tokens == 2310
    assert usage.cached_tokens == 2000
    assert usage.cache_creation_tokens == 300
    assert usage.completion_tokens == 12


def test_anthropic_usage_without_cache_fields_is_still_anthropic():
    body = json.dumps(
        {
            "type": "message",
            "content": [{"type": "text", "text": "x"}],
            "usage": {"input_tokens": 5, "output_tokens": 2},
        }
    ).encode()
    usage = scrape_usage(body, JSON)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (5, 2, None)


def test_responses_incomplete_reports_usage_and_failed_reports_the_error():
    incomplete = sse(
        {"type": "response.output_text.delta", "delta": "a"},
        {
            "type": "response.incomplete",
            "response": {"usage": {"input_tokens": 7, "output_tokens": 16, "total_tokens": 23}},
        },
    )
    usage = scrape_usage(incomplete, SSE)
    assert (usage.prompt_tokens, usage.completion_tokens) == (7, 16)

    failed = sse(
        {"type": "response.failed", "response": {"usage": None, "error": {"code": "server_error", "message": "boom"}}}
    )
    usage = scrape_usage(failed, SSE)
    assert usage.error_message == "boom"
    assert usage.prompt_tokens is None


def test_embeddings_with_only_a_total_count_it_as_input():
    body = json.dumps({"object": "list", "data": [{"embedding": [0.1]}], "usage": {"total_tokens": 12}}).encode()
    usage = scrape_usage(body, JSON)
    assert (usage.prompt_tokens, usage.completion_tokens) == (12, 0)
    assert usage.ttft_ms is None  # nothing was generated


def test_openrouter_cost_is_kept():
    body = sse(chat_chunk("x"), {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1, "cost": 0.0042}})
    assert scrape_usage(body, SSE).reported_cost_usd == 0.0042


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"id":"x","object":"chat.completion","choices":[{"message":{"content":"hi"}}]}', JSON),
        (sse(chat_chunk("hi"), "[DONE]"), SSE),
        (b"plain text", "text/plain"),
        (b"\x00\x01binary", "audio/mpeg"),
        (b"", JSON),
        (b"{not json", JSON),
        (b'{"usage": {"prompt_tokens": "12"}}', JSON),
    ],
)
def test_nothing_reported_means_unknown_not_invented(body, content_type):
    usage = scrape_usage(body, content_type)
    assert usage.prompt_tokens is None
    assert usage.completion_tokens is None
    assert usage.total_tokens is None


def test_errors_are_read_from_bodies_and_events():
    openai_error = b'{"error":{"message":"model not found","type":"invalid_request_error","code":404}}'
    assert scrape_usage(openai_error, JSON).error_message == "model not found"
    anthropic_error = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    assert scrape_usage(anthropic_error, JSON).error_message == "Overloaded"
    stream_error = sse(chat_chunk("a"), {"error": {"message": "context length exceeded"}})
    assert scrape_usage(stream_error, SSE).error_message == "context length exceeded"
    responses_error = sse({"type": "error", "code": "rate_limit_exceeded", "message": "slow down"})
    assert scrape_usage(responses_error, SSE).error_message == "slow down"


def test_content_means_text_reasoning_or_tool_arguments_not_role_or_empty_deltas():
    body = sse(
        {"choices": [{"delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"delta": {"reasoning_content": "hmm"}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]},
        {"choices": [{"delta": {}, "finish_reason": "stop"}]},
        {"type": "content_block_delta", "delta": {"type": "signature_delta", "signature": "abc"}},
        {"type": "content_block_delta", "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "response.function_call_arguments.delta", "delta": '{"a"'},
    )
    assert scrape_usage(body, SSE).content_events == 3


# ---------------------------------------------------------------- timing


def test_ttft_is_the_first_content_delta_and_speed_spans_first_to_last_delta():
    clock = SteppingClock(100.0)
    scraper = UsageScraper(SSE, started_at=100.0, clock=clock)
    clock.now = 100.2
    scraper.feed(sse({"choices": [{"delta": {"role": "assistant", "content": ""}}]}))  # no content yet
    for step in range(5):  # five tokens, 0.1 s apart, the first at 100.5
        clock.now = 100.5 + step * 0.1
        scraper.feed(sse(chat_chunk("tok")))
    clock.now = 101.5
    scraper.feed(sse({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}}, "[DONE]"))
    usage = scraper.finish()
    assert usage.ttft_ms == pytest.approx(500.0)
    assert usage.generation_ms == pytest.approx(400.0)
    assert usage.tokens_per_second == pytest.approx(10.0)  # 4 gaps in 0.4 s, not 5 tokens in 1.5 s


def test_speed_falls_back_to_the_upstream_figure_without_a_window():
    timings = {"prompt_n": 1, "cache_n": 0, "predicted_n": 3, "predicted_per_second": 42.5}
    usage = scrape_usage(sse(chat_chunk("a"), chat_chunk("b"), chat_chunk(timings=timings)), SSE)  # one chunk
    assert usage.generation_ms == 0
    assert usage.tokens_per_second == 42.5


def test_non_streamed_body_first_content_is_its_first_byte():
    clock = SteppingClock(10.0)
    scraper = UsageScraper("application/json; charset=utf-8", started_at=10.0, clock=clock)
    body = json.dumps(
        {"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}
    ).encode()
    clock.now = 10.25
    scraper.feed(body[:10])
    clock.now = 10.75
    scraper.feed(body[10:])
    usage = scraper.finish()
    assert usage.ttft_ms == pytest.approx(250.0)
    assert usage.generation_ms == 0


def test_finish_is_idempotent_and_later_chunks_are_ignored():
    scraper = UsageScraper(SSE, started_at=0.0, clock=lambda: 1.0)
    scraper.feed(sse(chat_chunk("a"), {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}))
    first = scraper.finish()
    scraper.feed(sse({"choices": [], "usage": {"prompt_tokens": 99, "completion_tokens": 99}}))
    assert scraper.finish() is first
    assert (first.prompt_tokens, first.completion_tokens, first.content_events) == (2, 1, 1)


def test_started_at_defaults_to_the_clock_at_construction():
    clock = SteppingClock(5.0)
    scraper = UsageScraper(SSE, clock=clock)
    clock.now = 5.5
    scraper.feed(sse(chat_chunk("a")))
    assert scraper.finish().ttft_ms == pytest.approx(500.0)


# ---------------------------------------------------------------- SSE framing


@pytest.mark.parametrize("terminator", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_line_endings(terminator):
    body = sse(
        chat_chunk("a"),
        {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1}},
        "[DONE]",
        terminator=terminator,
    )
    usage = scrape_usage(body, SSE)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.content_events, usage.events) == (4, 1, 1, 2)


def test_crlf_split_between_chunks_is_one_line_end():
    body = sse(chat_chunk("a"), chat_chunk("b"), terminator="\r\n")
    scraper = UsageScraper(SSE)
    for index in range(len(body)):  # every CR and LF arrives in its own chunk
        scraper.feed(body[index : index + 1])
    usage = scraper.finish()
    assert usage.events == 2
    assert usage.content_events == 2


def test_comments_event_id_and_retry_lines_are_skipped():
    body = (
        b": keep-alive\n\n"
        b"retry: 1000\nid: 7\nevent: message\n"
        b'data: {"choices":[{"delta":{"content":"a"}}]}\n'
        b": a comment inside an event\n\n"
        b'data:{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}\n\n'  # no space after the colon
    )
    usage = scrape_usage(body, SSE)
    assert (usage.events, usage.content_events, usage.prompt_tokens) == (2, 1, 1)


def test_multi_line_data_is_joined_with_newlines():
    body = b'data: {"choices": [],\ndata:  "usage": {"prompt_tokens": 6,\ndata: "completion_tokens": 2}}\n\n'
    usage = scrape_usage(body, SSE)
    assert (usage.prompt_tokens, usage.completion_tokens) == (6, 2)


def test_done_and_non_json_data_are_not_events():
    usage = scrape_usage(b"data: [DONE]\n\ndata: not json\n\ndata: [1, 2]\n\n", SSE)
    assert usage.events == 0


def test_byte_order_mark_at_the_start_is_ignored():
    body = b"\xef\xbb\xbf" + sse({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 0}})
    assert scrape_usage(body, SSE).prompt_tokens == 2


def test_stream_cut_mid_event_keeps_what_came_before():
    usage_event = {"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 3}}
    whole = sse(chat_chunk("a"), chat_chunk("b"), usage_event)
    cut_inside_json = whole[: whole.index(b'"completion_tokens"')]
    usage = scrape_usage(cut_inside_json, SSE)
    assert usage.content_events == 2
    assert usage.prompt_tokens is None  # the half-received usage event is dropped

    cut_before_blank_line = whole.rstrip(b"\n") + b"\n"
    usage = scrape_usage(cut_before_blank_line, SSE)
    assert (usage.prompt_tokens, usage.completion_tokens) == (8, 3)  # its data was complete JSON


# ---------------------------------------------------------------- bounds and encodings


def test_oversized_event_is_salvaged_from_its_ends():
    huge = "x" * 50_000
    event = {
        "type": "response.completed",
        "response": {
            "output": [{"content": [{"text": huge}]}],
            "usage": {"input_tokens": 11, "output_tokens": 9000, "total_tokens": 9011},
        },
    }
    body = sse({"type": "response.output_text.delta", "delta": "a"}, event)
    usage = scrape_usage(body, SSE, keep_bytes=4096)
    assert (usage.prompt_tokens, usage.completion_tokens) == (11, 9000)


def test_oversized_json_body_is_salvaged_from_head_or_tail():
    data = [{"object": "embedding", "index": i, "embedding": [0.123456789] * 200} for i in range(40)]
    usage_first = json.dumps(
        {"model": "m", "object": "list", "usage": {"prompt_tokens": 77, "total_tokens": 77}, "data": data}
    ).encode()
    usage_last = json.dumps(
        {"object": "list", "data": data, "model": "m", "usage": {"prompt_tokens": 55, "total_tokens": 55}}
    ).encode()
    assert len(usage_first) > 100_000
    assert scrape_usage(usage_first, JSON, keep_bytes=8192).prompt_tokens == 77
    assert scrape_usage(usage_last, JSON, keep_bytes=8192).prompt_tokens == 55


def test_salvage_ignores_a_usage_key_inside_a_string():
    text = 'the word \\"usage\\": {\\"prompt_tokens\\": 1} inside text ' * 300
    body = (
        '{"type":"message","content":[{"type":"text","text":"' + text + '"}],'
        '"usage":{"input_tokens":4,"output_tokens":6}}'
    ).encode()
    usage = scrape_usage(body, JSON, keep_bytes=1024)
    assert (usage.prompt_tokens, usage.completion_tokens) == (4, 6)


def test_memory_stays_bounded_for_a_huge_single_line_event():
    chunk = b"x" * 65536
    scraper = UsageScraper(SSE, keep_bytes=256 * 1024)
    tracemalloc.start()
    try:
        scraper.feed(b'data: {"choices":[{"delta":{"content":"')
        for _ in range(128):  # 8 MiB without a line end
            scraper.feed(chunk)
        scraper.feed(b'"}}],"usage":{"prompt_tokens":5,"completion_tokens":4}}\n\n')
        usage = scraper.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024 + 4 * WINDOW_BYTES + 4 * len(chunk)
    assert (usage.prompt_tokens, usage.completion_tokens) == (5, 4)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies_are_read(encoding):
    body = sse(chat_chunk("a"), {"choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 1}})
    encoded = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    scraper = UsageScraper(SSE, content_encoding=encoding)
    for index in range(0, len(encoded), 7):
        scraper.feed(encoded[index : index + 7])
    assert scraper.finish().prompt_tokens == 21


def test_an_encoding_it_cannot_undo_leaves_usage_unknown():
    body = sse({"choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 1}})
    assert scrape_usage(body, SSE, content_encoding="br").prompt_tokens is None


def test_corrupt_compressed_body_leaves_usage_unknown():
    assert scrape_usage(b"not gzip at all", JSON, content_encoding="gzip").prompt_tokens is None
