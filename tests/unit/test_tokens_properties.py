"""However a response is split into chunks, the scraper reads the same thing.

Every recorded and hand-written fixture is fed in random chunkings (from one byte
at a time to whole) and must give the figures of feeding it whole, which must be
the independently derived expected figures. The clock used here reads "bytes
delivered so far", so the timestamps are exact too: the first content delta is
stamped with the end of the chunk that completed its event.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.tokens import Usage, UsageScraper
from tests.fixtures.stream_fixtures import StreamFixture, load_stream_fixtures, sse_event_ends

FIXTURES = load_stream_fixtures()
TIMING_FIELDS = {"first_content_at", "last_content_at", "ttft_ms", "generation_ms", "tokens_per_second"}
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
PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def feed_in_chunks(body: bytes, content_type: str, cuts: list[int], **options) -> Usage:
    """Feed `body` split at `cuts`; the clock reads how many bytes have been delivered."""
    delivered = 0
    scraper = UsageScraper(content_type, started_at=0.0, clock=lambda: float(delivered), **options)
    start = 0
    for end in [*cuts, len(body)]:
        delivered = end
        scraper.feed(body[start:end])
        start = end
    return scraper.finish()


def without_timing(usage: Usage) -> dict:
    return {key: value for key, value in asdict(usage).items() if key not in TIMING_FIELDS}


@st.composite
def chunkings(draw: st.DrawFn, size: int) -> list[int]:
    """Cut points: random ones, or every k bytes (k = 1 is one byte at a time)."""
    if size < 2:
        return []
    every = draw(st.one_of(st.none(), st.integers(1, 64)))
    if every is not None:
        return list(range(every, size, every))
    return sorted(draw(st.sets(st.integers(1, size - 1), max_size=min(size - 1, 200))))


def expected_time(cuts: list[int], size: int, byte_offset: int) -> float:
    """The clock reading when the byte at `byte_offset` was delivered: the end of its chunk."""
    ends = [*cuts, size]
    return float(ends[bisect.bisect_right(ends, byte_offset)])


def check_timing(fixture: StreamFixture, body: bytes, cuts: list[int], usage: Usage) -> None:
    expected = fixture.expected
    if expected["content_events"] == 0:
        assert usage.first_content_at is None and usage.ttft_ms is None
        return
    if fixture.is_sse:
        ends = sse_event_ends(body)
        first = expected_time(cuts, len(body), ends[expected["first_content_event"]])
        last = expected_time(cuts, len(body), ends[expected["last_content_event"]])
    else:
        first = last = expected_time(cuts, len(body), 0)  # a JSON body: its first byte
    assert usage.first_content_at == first
    assert usage.last_content_at == last
    assert usage.ttft_ms == pytest.approx(first * 1000)
    assert usage.generation_ms == pytest.approx((last - first) * 1000)
    completion = usage.completion_tokens
    if completion is not None and completion > 1 and last > first:
        assert usage.tokens_per_second == pytest.approx((completion - 1) / (last - first))
    else:
        assert usage.tokens_per_second == expected["upstream_tokens_per_second"]


def crlf(body: bytes) -> bytes:
    assert b"\r" not in body
    return body.replace(b"\n", b"\r\n")


def lone_cr(body: bytes) -> bytes:
    assert b"\r" not in body
    return body.replace(b"\n", b"\r")


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda fixture: fixture.name)
def test_one_byte_at_a_time_equals_whole(fixture):
    body = fixture.body
    whole = feed_in_chunks(body, fixture.content_type, [])
    one_by_one = feed_in_chunks(body, fixture.content_type, list(range(1, len(body))))
    assert without_timing(one_by_one) == without_timing(whole)
    assert {field: getattr(whole, field) for field in COUNT_FIELDS} == {f: fixture.expected[f] for f in COUNT_FIELDS}
    check_timing(fixture, body, list(range(1, len(body))), one_by_one)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda fixture: fixture.name)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_any_chunking_gives_the_expected_figures(fixture, data):
    body = fixture.body
    cuts = data.draw(chunkings(len(body)), label="cuts")
    usage = feed_in_chunks(body, fixture.content_type, cuts)
    assert {field: getattr(usage, field) for field in COUNT_FIELDS} == {f: fixture.expected[f] for f in COUNT_FIELDS}
    assert without_timing(usage) == without_timing(feed_in_chunks(body, fixture.content_type, []))
    check_timing(fixture, body, cuts, usage)


SSE_FIXTURES = [fixture for fixture in FIXTURES if fixture.is_sse]


@pytest.mark.parametrize("fixture", SSE_FIXTURES, ids=lambda fixture: fixture.name)
@pytest.mark.parametrize("line_ending", [crlf, lone_cr], ids=["crlf", "cr"])
@PROPERTY_SETTINGS
@given(data=st.data())
def test_other_line_endings_in_any_chunking(fixture, line_ending, data):
    body = line_ending(fixture.body)
    cuts = data.draw(chunkings(len(body)), label="cuts")
    usage = feed_in_chunks(body, fixture.content_type, cuts)
    assert {field: getattr(usage, field) for field in COUNT_FIELDS} == {f: fixture.expected[f] for f in COUNT_FIELDS}
    check_timing(fixture, body, cuts, usage)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda fixture: fixture.name)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_small_keep_limit_is_still_chunking_invariant(fixture, data):
    # With a tiny keep limit every event or body overflows and is salvaged from its ends:
    # the figures may be fewer, but never depend on the chunking.
    body = fixture.body
    cuts = data.draw(chunkings(len(body)), label="cuts")
    keep = 160
    usage = feed_in_chunks(body, fixture.content_type, cuts, keep_bytes=keep)
    whole = feed_in_chunks(body, fixture.content_type, [], keep_bytes=keep)
    assert without_timing(usage) == without_timing(whole)
    for field in ("prompt_tokens", "completion_tokens", "cached_tokens"):
        assert getattr(whole, field) in (None, fixture.expected[field])  # salvage never invents


@pytest.mark.parametrize("fixture", SSE_FIXTURES, ids=lambda fixture: fixture.name)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_a_stream_cut_anywhere_reads_only_complete_events(fixture, data):
    body = fixture.body
    cut = data.draw(st.integers(0, len(body)), label="cut")
    prefix = body[:cut]
    cuts = data.draw(chunkings(len(prefix)), label="cuts")
    usage = feed_in_chunks(prefix, fixture.content_type, cuts)
    assert without_timing(usage) == without_timing(feed_in_chunks(prefix, fixture.content_type, []))
    ends = sse_event_ends(body)
    complete = sum(1 for end in ends if end < cut)
    if body.rstrip().endswith(b"data: [DONE]") and ends[-1] < cut:
        complete -= 1  # [DONE] is not an event
    # every complete event is read; an unterminated last one only if its data is complete JSON
    assert complete <= usage.events <= complete + 1
    if cut == len(body):
        assert usage.prompt_tokens == fixture.expected["prompt_tokens"]
