"""Watch a response as it streams past and read token usage and timing from it.

:class:`UsageScraper` is fed the response bytes chunk by chunk, exactly as they
are relayed to the client, and answers a :class:`Usage` at the end. It reads:

* OpenAI chat/completions ``usage`` (including the ``stream_options.include_usage``
  final chunk, ``prompt_tokens_details.cached_tokens``, ``completion_tokens_details.reasoning_tokens``
  and OpenRouter's ``usage.cost``),
* llama.cpp ``timings`` (``prompt_n``, ``cache_n``, ``predicted_n``, ``prompt_ms``, ``predicted_ms``,
  per-second figures), used for counts only when the upstream sent no ``usage``,
* Anthropic ``message_start`` / ``message_delta`` usage, streamed or not (``input_tokens`` plus
  ``cache_read_input_tokens`` and ``cache_creation_input_tokens`` make the prompt),
* Responses API ``response.completed`` / ``response.incomplete`` usage,
* embeddings ``usage``.

When an upstream reports nothing, the counts stay ``None`` (unknown): nothing is
estimated from text lengths or event counts.

Memory is bounded. For Server-Sent Events the scraper holds only the line and the
event being received; an event (or a plain JSON body) larger than ``keep_bytes``
is not kept whole: its first and last :data:`WINDOW_BYTES` are, and usage and
timings are salvaged from those windows (APIs put usage at one end of a body).

Timing uses the injected clock at the moment :meth:`UsageScraper.feed` completes
an event. Time to first token is the arrival of the first content delta (text,
reasoning or tool-call arguments); generation speed is measured over the
generation window, first to last content delta: ``n`` tokens span ``n - 1`` gaps,
so ``tokens_per_second = (completion_tokens - 1) / window``. When there is no
window (a non-streamed body, or all deltas in one chunk) the upstream's own
figure (llama.cpp ``predicted_per_second``) is used if it sent one. For a plain
JSON body the first content is the first byte of the body.

The results are identical however the bytes are split into chunks (except the
timestamps, which are taken when the chunk completing an event arrives); the
property tests in ``tests/unit/test_tokens_properties.py`` hold it to that.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from core.jsonvalues import as_float, as_int

KEEP_BYTES = 4 * 1024 * 1024
"""A JSON body or SSE event up to this size is decoded whole; a larger one is salvaged from its ends."""
WINDOW_BYTES = 64 * 1024
"""How much of the head and of the tail of an oversized body or event is kept."""

_BOM = b"\xef\xbb\xbf"
_DECOMPRESS_STEP = 1024 * 1024


@dataclass(slots=True)
class Usage:
    """What one response said about its tokens and how fast they came.

    Token counts are ``None`` when the upstream did not report them.
    ``prompt_tokens`` counts every prompt token, cached or not (for Anthropic:
    ``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``);
    ``cached_tokens`` is the part read from a prompt cache, ``cache_creation_tokens``
    the part written to one (Anthropic). ``reasoning_tokens`` is included in
    ``completion_tokens``. Times are milliseconds; ``*_at`` are clock readings.
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    ttft_ms: float | None = None
    generation_ms: float | None = None
    tokens_per_second: float | None = None
    prompt_per_second: float | None = None
    first_content_at: float | None = None
    last_content_at: float | None = None
    events: int = 0
    error_message: str | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    content_events: int = 0
    upstream_tokens_per_second: float | None = None
    upstream_prompt_ms: float | None = None
    upstream_generation_ms: float | None = None
    reported_cost_usd: float | None = None

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)

    @property
    def tokens_known(self) -> bool:
        return self.prompt_tokens is not None or self.completion_tokens is not None


class _Event(msgspec.Struct):
    """The fields of an SSE event or JSON body the scraper reads; msgspec skips every other key."""

    type: Any = None
    choices: Any = None
    usage: Any = None
    timings: Any = None
    message: Any = None
    delta: Any = None
    response: Any = None
    error: Any = None
    content: Any = None
    output: Any = None
    object: Any = None


_decode_event = msgspec.json.Decoder(_Event).decode
_decode_any = msgspec.json.Decoder().decode

# Responses API events whose `delta` is generated content (text, reasoning or tool-call arguments).
_RESPONSES_CONTENT_EVENTS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
        "response.audio.transcript.delta",
        "response.code_interpreter_call_code.delta",
    }
)
_RESPONSES_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class _BoundedJson:
    """Accumulates one JSON document; past `limit` bytes keeps only a head and a tail window."""

    __slots__ = ("head", "limit", "parts", "size", "tail", "window")

    def __init__(self, limit: int, window: int):
        self.limit = limit
        self.window = window
        self.parts: list[bytes] = []
        self.size = 0
        self.head: bytes | None = None
        self.tail: bytearray | None = None

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if self.tail is None:
            self.parts.append(data)
            if self.size > self.limit:
                whole = b"".join(self.parts)
                self.parts = []
                self.head = whole[: self.window]
                self.tail = bytearray(whole[-self.window :])
            return
        self.tail += data
        if len(self.tail) > 2 * self.window:
            del self.tail[: -self.window]

    @property
    def overflowed(self) -> bool:
        return self.tail is not None

    def whole(self) -> bytes:
        return b"".join(self.parts)


@dataclass(slots=True)
class _Salvage:
    """What could be read from the ends of an oversized document."""

    type: str | None
    usage: dict[str, Any] | None
    timings: dict[str, Any] | None


class UsageScraper:
    """Feed it response chunks in order with :meth:`feed`; read :meth:`finish`.

    ``content_type`` selects the parser: ``text/event-stream`` is read as SSE,
    anything with ``json`` as one JSON document; other bodies (audio, images)
    yield an empty :class:`Usage`. ``content_encoding`` (gzip or deflate) is
    undone on the fly; an encoding it cannot undo (br, zstd) leaves the usage
    unknown. ``finish`` may be called more than once and always answers the same
    object; chunks fed after it are ignored.
    """

    def __init__(
        self,
        content_type: str | None,
        started_at: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
        *,
        content_encoding: str | None = None,
        keep_bytes: int = KEEP_BYTES,
    ):
        self._clock = clock
        self.started_at = started_at if started_at is not None else clock()
        self.usage = Usage()
        ctype = (content_type or "").lower()
        self.is_sse = "text/event-stream" in ctype
        self.is_json = not self.is_sse and "json" in ctype
        self._keep = max(1, keep_bytes)
        self._window = min(WINDOW_BYTES, self._keep)
        self._finished: Usage | None = None
        self._decompressor: Any = None
        encoding = (content_encoding or "identity").strip().lower()
        if not (self.is_sse or self.is_json):
            pass  # nothing to read in this body, however it is encoded
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self._decompressor = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
        elif encoding != "identity":
            self.is_sse = self.is_json = False  # cannot read it: the usage stays unknown
        # SSE state
        self._line_parts: list[bytes] = []
        self._line_size = 0
        self._skip_lf = False  # the previous chunk ended with CR: a leading LF belongs to it
        self._spill: str | None = None  # an overlong line is being streamed: "data" or "ignore"
        self._event: _BoundedJson | None = None
        self._event_lines = 0
        self._at_start = True
        # JSON state
        self._body: _BoundedJson | None = _BoundedJson(self._keep, self._window) if self.is_json else None
        self._first_byte_at: float | None = None
        # usage as reported, before it is combined in finish()
        self._prompt: int | None = None  # OpenAI-style: includes cached tokens
        self._completion: int | None = None
        self._cached: int | None = None
        self._reasoning: int | None = None
        self._total_only: int | None = None
        self._anthropic_input: int | None = None
        self._anthropic_cache_read: int | None = None
        self._anthropic_cache_write: int | None = None
        self._timings: dict[str, Any] | None = None

    # ------------------------------------------------------------------ feed

    def feed(self, chunk: bytes) -> None:
        if not chunk or self._finished is not None:
            return
        if self._decompressor is not None:
            self._feed_encoded(chunk)
        elif self.is_sse:
            self._feed_sse(chunk)
        elif self._body is not None:
            if self._first_byte_at is None:
                self._first_byte_at = self._clock()
            self._body.add(chunk)

    def _feed_encoded(self, chunk: bytes) -> None:
        decompressor = self._decompressor
        try:
            data = decompressor.decompress(chunk, _DECOMPRESS_STEP)
            while True:
                if data:
                    self._feed_decoded(data)
                if not decompressor.unconsumed_tail:
                    break
                data = decompressor.decompress(decompressor.unconsumed_tail, _DECOMPRESS_STEP)
        except zlib.error:
            self._decompressor = None
            self.is_sse = self.is_json = False
            self._body = None

    def _feed_decoded(self, data: bytes) -> None:
        if self.is_sse:
            self._feed_sse(data)
        elif self._body is not None:
            if self._first_byte_at is None:
                self._first_byte_at = self._clock()
            self._body.add(data)

    def _feed_sse(self, chunk: bytes) -> None:
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
                if not chunk:
                    return
        if self._spill is not None:
            end = _first_line_end(chunk)
            if end < 0:
                self._spill_more(chunk)
                return
            self._spill_more(chunk[:end])
            self._spill = None
            if chunk[end] == 0x0D:
                if end + 1 < len(chunk):
                    end += 1 if chunk[end + 1] == 0x0A else 0
                else:
                    self._skip_lf = True
            chunk = chunk[end + 1 :]
            if not chunk:
                return
        last = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
        if last < 0:
            self._line_parts.append(chunk)
            self._line_size += len(chunk)
            if self._line_size > self._keep:
                self._start_spill()
            return
        complete = chunk[: last + 1]
        if self._line_parts:
            self._line_parts.append(complete)
            complete = b"".join(self._line_parts)
            self._line_parts = []
            self._line_size = 0
        rest = chunk[last + 1 :]
        if chunk[last] == 0x0D and not rest:
            self._skip_lf = True
        for line in complete.splitlines():
            self._sse_line(line)
        if rest:
            self._line_parts.append(rest)
            self._line_size = len(rest)
            if self._line_size > self._keep:
                self._start_spill()

    def _sse_line(self, line: bytes) -> None:
        if self._at_start:
            self._at_start = False
            if line.startswith(_BOM):
                line = line[3:]
        if not line:
            self._dispatch()
        elif line.startswith(b"data:"):
            self._event_data(line[6:] if line[5:6] == b" " else line[5:])
        elif line == b"data":
            self._event_data(b"")
        # event:, id:, retry: and comments (":") carry nothing that is accounted

    def _event_data(self, value: bytes) -> None:
        if self._event is None:
            self._event = _BoundedJson(self._keep, self._window)
        elif self._event_lines:
            self._event.add(b"\n")
        self._event.add(value)
        self._event_lines += 1

    def _start_spill(self) -> None:
        """A line grew past the keep limit before its end arrived: stream it into the event instead."""
        line = b"".join(self._line_parts)
        self._line_parts = []
        self._line_size = 0
        if self._at_start:
            self._at_start = False
            if line.startswith(_BOM):
                line = line[3:]
        if line.startswith(b"data:"):
            self._spill = "data"
            self._event_data(line[6:] if line[5:6] == b" " else line[5:])
        else:
            self._spill = "ignore"

    def _spill_more(self, data: bytes) -> None:
        if self._spill == "data" and data and self._event is not None:
            self._event.add(data)

    def _dispatch(self) -> None:
        event = self._event
        if event is None:
            return
        self._event = None
        self._event_lines = 0
        if event.overflowed:
            self._read_salvage(_salvage(event))
            return
        payload = event.whole()
        if payload == b"[DONE]":
            return
        try:
            decoded = _decode_event(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        self.usage.events += 1
        self._read_event(decoded)

    # ------------------------------------------------------------------ read

    def _read_event(self, event: _Event) -> None:
        kind = event.type
        if kind is None:  # OpenAI chat/completions chunk, llama.cpp /completion chunk, error event
            if _has_choice_content(event.choices) or (isinstance(event.content, str) and event.content):
                self._mark_content()
            if event.error is not None:
                self._read_error(event.error)
            self._read_usage(event.usage, None)
        elif kind == "content_block_delta":
            if _has_anthropic_delta(event.delta):
                self._mark_content()
        elif kind == "message_start":
            if isinstance(event.message, dict):
                self._read_usage(event.message.get("usage"), "anthropic")
        elif kind == "message_delta":
            self._read_usage(event.usage, "anthropic")
        elif kind in _RESPONSES_CONTENT_EVENTS:
            if event.delta:
                self._mark_content()
        elif kind in _RESPONSES_FINAL_EVENTS:
            response = event.response if isinstance(event.response, dict) else {}
            self._read_usage(response.get("usage"), "openai")
            if kind == "response.failed":
                self._read_error(response.get("error"))
        elif kind == "error":
            self._read_error(event.error if event.error is not None else event.message)
        elif isinstance(kind, str) and kind.startswith("chat.completion"):
            # some servers tag OpenAI chunks with a type
            if _has_choice_content(event.choices):
                self._mark_content()
            self._read_usage(event.usage, None)
        if isinstance(event.timings, dict):
            self._timings = event.timings

    def _read_salvage(self, salvage: _Salvage) -> None:
        self.usage.events += 1
        kind = salvage.type
        family = "anthropic" if kind in ("message_start", "message_delta", "message") else None
        if kind is None or kind == "content_block_delta" or kind in _RESPONSES_CONTENT_EVENTS:
            self._mark_content()  # an event this large is a content delta
        self._read_usage(salvage.usage, family)
        if salvage.timings is not None:
            self._timings = salvage.timings

    def _read_usage(self, usage: Any, family: str | None) -> None:
        """Record a usage object; fields it carries replace earlier ones (Anthropic's are cumulative)."""
        if not isinstance(usage, dict):
            return
        if family is None:
            family = _usage_family(usage)
        if family == "anthropic":
            value = as_int(usage.get("input_tokens"))
            if value is not None:
                self._anthropic_input = value
            value = as_int(usage.get("cache_read_input_tokens"))
            if value is not None:
                self._anthropic_cache_read = value
            value = as_int(usage.get("cache_creation_input_tokens"))
            if value is not None:
                self._anthropic_cache_write = value
            value = as_int(usage.get("output_tokens"))
            if value is not None:
                self._completion = value
            return
        prompt = as_int(usage.get("prompt_tokens"))
        if prompt is None:
            prompt = as_int(usage.get("input_tokens"))  # Responses API: includes cached tokens
        completion = as_int(usage.get("completion_tokens"))
        if completion is None:
            completion = as_int(usage.get("output_tokens"))
        total = as_int(usage.get("total_tokens"))
        if prompt is not None:
            self._prompt = prompt
            if completion is None and total is not None and total >= prompt:
                completion = total - prompt  # embeddings: usage has prompt and total only
        elif completion is None and total is not None:
            self._total_only = total
        if completion is not None:
            self._completion = completion
        details = usage.get("prompt_tokens_details")
        if not isinstance(details, dict):
            details = usage.get("input_tokens_details")
        if isinstance(details, dict):
            cached = as_int(details.get("cached_tokens"))
            if cached is not None:
                self._cached = cached
        details = usage.get("completion_tokens_details")
        if not isinstance(details, dict):
            details = usage.get("output_tokens_details")
        if isinstance(details, dict):
            reasoning = as_int(details.get("reasoning_tokens"))
            if reasoning is not None:
                self._reasoning = reasoning
        cost = as_float(usage.get("cost"))  # OpenRouter reports what it charged
        if cost is not None:
            self.usage.reported_cost_usd = cost

    def _read_error(self, error: Any) -> None:
        if isinstance(error, dict):
            message = error.get("message")
            self.usage.error_message = str(message if message else error)[:500]
        elif isinstance(error, str) and error:
            self.usage.error_message = error[:500]

    def _mark_content(self) -> None:
        now = self._clock()
        usage = self.usage
        if usage.first_content_at is None:
            usage.first_content_at = now
        usage.last_content_at = now
        usage.content_events += 1

    # ---------------------------------------------------------------- finish

    def finish(self) -> Usage:
        """End of the response: read what is still pending and combine the figures."""
        if self._finished is not None:
            return self._finished
        if self._decompressor is not None:
            try:
                tail = self._decompressor.flush()
            except zlib.error:
                tail = b""
            if tail:
                self._feed_decoded(tail)
        if self.is_sse:
            self._finish_sse()
        elif self._body is not None:
            self._finish_json(self._body)
            self._body = None
        self._finished = self._combine()
        return self._finished

    def _finish_sse(self) -> None:
        # A stream cut mid-event: its data is read only if it is complete JSON.
        if self._spill is None and self._line_parts:
            line = b"".join(self._line_parts)
            self._line_parts = []
            self._sse_line(line)
        self._spill = None
        self._dispatch()

    def _finish_json(self, body: _BoundedJson) -> None:
        if body.overflowed:
            salvage = _salvage(body)
            self._read_usage(salvage.usage, "anthropic" if salvage.type == "message" else None)
            if salvage.timings is not None:
                self._timings = salvage.timings
            generated = bool(self._completion)
        else:
            try:
                event = _decode_event(body.whole())
            except (msgspec.DecodeError, msgspec.ValidationError):
                return
            self.usage.events += 1
            generated = self._read_body(event)
        if generated and self._first_byte_at is not None:
            # a non-streamed answer arrives at once: its first content is its first byte
            self.usage.first_content_at = self.usage.last_content_at = self._first_byte_at
            self.usage.content_events += 1

    def _read_body(self, body: _Event) -> bool:
        """Read a whole JSON body; answers whether it carries generated content."""
        kind = body.type
        if kind == "error" or (body.error is not None and body.choices is None and body.output is None):
            self._read_error(body.error)
        if body.object == "response" or (body.output is not None and body.choices is None):
            self._read_usage(body.usage, "openai")  # Responses API
            if body.object == "response" and body.error is not None:
                self._read_error(body.error)
        elif kind == "message":
            self._read_usage(body.usage, "anthropic")
        elif isinstance(body.response, dict) and body.usage is None:
            self._read_usage(body.response.get("usage"), "openai")  # a wrapped Responses object
        else:
            self._read_usage(body.usage, None)
        if isinstance(body.timings, dict):
            self._timings = body.timings
        return bool(
            self._completion
            or _has_choice_content(body.choices)
            or (isinstance(body.content, (str, list)) and body.content)
            or (isinstance(body.output, list) and body.output)
        )

    def _combine(self) -> Usage:
        u = self.usage
        if self._anthropic_input is not None:
            read = self._anthropic_cache_read or 0
            write = self._anthropic_cache_write or 0
            u.prompt_tokens = self._anthropic_input + read + write
            u.cached_tokens = self._anthropic_cache_read
            u.cache_creation_tokens = self._anthropic_cache_write
        elif self._prompt is not None:
            u.prompt_tokens = self._prompt
            u.cached_tokens = self._cached
        u.completion_tokens = self._completion
        u.reasoning_tokens = self._reasoning
        if u.prompt_tokens is None and u.completion_tokens is None and self._total_only is not None:
            u.prompt_tokens = self._total_only  # only a total: all of it was input (embeddings)
            u.completion_tokens = 0
        timings = self._timings
        if timings:
            prompt_n = as_int(timings.get("prompt_n"))
            cache_n = as_int(timings.get("cache_n"))
            if u.prompt_tokens is None and prompt_n is not None:
                u.prompt_tokens = prompt_n + (cache_n or 0)
                u.cached_tokens = cache_n
            elif u.cached_tokens is None and cache_n is not None and u.prompt_tokens is not None:
                u.cached_tokens = cache_n
            predicted_n = as_int(timings.get("predicted_n"))
            if u.completion_tokens is None and predicted_n is not None:
                u.completion_tokens = predicted_n
            u.prompt_per_second = as_float(timings.get("prompt_per_second"))
            u.upstream_tokens_per_second = as_float(timings.get("predicted_per_second"))
            u.upstream_prompt_ms = as_float(timings.get("prompt_ms"))
            u.upstream_generation_ms = as_float(timings.get("predicted_ms"))
        if u.first_content_at is not None:
            last = u.last_content_at if u.last_content_at is not None else u.first_content_at
            u.ttft_ms = (u.first_content_at - self.started_at) * 1000
            u.generation_ms = (last - u.first_content_at) * 1000
            if u.completion_tokens is not None and u.completion_tokens > 1 and u.generation_ms > 0:
                u.tokens_per_second = (u.completion_tokens - 1) / (u.generation_ms / 1000)
        if u.tokens_per_second is None:
            u.tokens_per_second = u.upstream_tokens_per_second
        return u


def scrape_usage(
    body: bytes, content_type: str | None, *, content_encoding: str | None = None, keep_bytes: int = KEEP_BYTES
) -> Usage:
    """Read the usage of a complete response body (no timing: all of it arrived at once)."""
    scraper = UsageScraper(
        content_type, started_at=0.0, clock=lambda: 0.0, content_encoding=content_encoding, keep_bytes=keep_bytes
    )
    scraper.feed(body)
    return scraper.finish()


# ---------------------------------------------------------------- helpers


def _first_line_end(data: bytes) -> int:
    lf = data.find(b"\n")
    cr = data.find(b"\r")
    if lf < 0:
        return cr
    if cr < 0:
        return lf
    return min(lf, cr)


def _usage_family(usage: dict[str, Any]) -> str:
    """Anthropic's usage counts cache reads and writes apart from `input_tokens`; OpenAI's includes them."""
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        return "openai"
    if "cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage:
        return "anthropic"
    if "total_tokens" in usage or "input_tokens_details" in usage or "output_tokens_details" in usage:
        return "openai"  # Responses API
    if "input_tokens" in usage or "output_tokens" in usage:
        return "anthropic"
    return "openai"


def _has_choice_content(choices: Any) -> bool:
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = choice.get("message")
        if isinstance(delta, dict) and (
            delta.get("content")
            or delta.get("reasoning_content")
            or delta.get("reasoning")
            or delta.get("tool_calls")
            or delta.get("function_call")
            or delta.get("refusal")
        ):
            return True
        if choice.get("text"):
            return True
    return False


def _has_anthropic_delta(delta: Any) -> bool:
    if not isinstance(delta, dict):
        return False
    return bool(delta.get("text") or delta.get("thinking") or delta.get("partial_json") or delta.get("citation"))


# ------------------------------------------------------ oversized documents

# A JSON string (escapes included) or one structural character.
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]]', re.DOTALL)
_COLON = re.compile(rb"\s*:\s*")
_SALVAGED_KEYS = (b'"usage"', b'"timings"')


def _salvage(doc: _BoundedJson) -> _Salvage:
    """Read type, usage and timings from the head and tail windows of an oversized document.

    The head starts at the document's first byte, so it is tokenised exactly and the
    shallowest ``usage`` / ``timings`` objects wholly inside it are taken. The tail
    starts at an unknown place (perhaps inside a string), so there the last
    occurrence of the key that is followed by a complete object is taken; a value
    found in the tail wins, since usage comes last in the APIs that put it at the end.
    """
    head = doc.head or b""
    tail = bytes(doc.tail[-doc.window :]) if doc.tail else b""  # exactly the last window, whatever the chunking
    kind, found = _scan_head(head)
    for key in _SALVAGED_KEYS:
        value = _last_object_after(tail, key)
        if value is not None:
            found[key] = value
    return _Salvage(
        type=kind,
        usage=_decode_object(found.get(b'"usage"')),
        timings=_decode_object(found.get(b'"timings"')),
    )


def _scan_head(head: bytes) -> tuple[str | None, dict[bytes, bytes]]:
    kind: str | None = None
    found: dict[bytes, bytes] = {}
    depth_found: dict[bytes, int] = {}
    depth = 0
    for match in _JSON_TOKEN.finditer(head):
        start = match.start()
        char = head[start]
        if char in b"{[":
            depth += 1
            continue
        if char in b"}]":
            depth -= 1
            continue
        token = match.group()
        colon = _COLON.match(head, match.end())
        if colon is None:
            continue
        if token == b'"type"' and depth == 1 and kind is None:
            value = _JSON_TOKEN.match(head, colon.end())
            if value is not None and head[value.start()] == 0x22:
                try:
                    decoded = _decode_any(value.group())
                except msgspec.DecodeError:
                    decoded = None
                kind = decoded if isinstance(decoded, str) else None
        elif token in _SALVAGED_KEYS and head[colon.end() : colon.end() + 1] == b"{":
            if token in depth_found and depth_found[token] <= depth:
                continue
            value = _balanced_object(head, colon.end())
            if value is not None:
                found[token] = value
                depth_found[token] = depth
    return kind, found


def _last_object_after(data: bytes, key: bytes) -> bytes | None:
    index = len(data)
    while True:
        index = data.rfind(key, 0, index)
        if index < 0:
            return None
        if not _escaped(data, index):
            colon = _COLON.match(data, index + len(key))
            if colon is not None and data[colon.end() : colon.end() + 1] == b"{":
                value = _balanced_object(data, colon.end())
                if value is not None:
                    return value


def _escaped(data: bytes, index: int) -> bool:
    """Whether the quote at `index` is preceded by an odd number of backslashes."""
    count = 0
    index -= 1
    while index >= 0 and data[index] == 0x5C:
        count += 1
        index -= 1
    return count % 2 == 1


def _balanced_object(data: bytes, start: int) -> bytes | None:
    depth = 0
    for match in _JSON_TOKEN.finditer(data, start):
        char = data[match.start()]
        if char == 0x7B:
            depth += 1
        elif char == 0x7D:
            depth -= 1
            if depth == 0:
                return data[start : match.end()]
    return None


def _decode_object(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = _decode_any(raw)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None
