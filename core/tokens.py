"""Watch a response as it streams past and read token usage and timing from it.

The scraper never buffers a whole stream: for Server-Sent Events it holds at most
the event being received; for a plain JSON body it keeps the body only up to a
cap (the usage object of a huge body is found in its tail). It understands:

* OpenAI chat/completions `usage` (including the `stream_options.include_usage` final chunk)
* llama.cpp `timings` (prompt_n, predicted_n, per-second figures)
* Anthropic `message_start` / `message_delta` usage
* Responses API `response.completed` usage
* embeddings `usage`

When an upstream reports nothing, the result says tokens are unknown (None)
rather than inventing them. Time to first token is the arrival of the first
content delta; generation speed is measured over the generation window (first
to last content delta), not end to end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec

_decode = msgspec.json.Decoder().decode
JSON_KEEP_LIMIT = 4 * 1024 * 1024
TAIL_KEEP = 64 * 1024


@dataclass(slots=True)
class Usage:
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

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


class UsageScraper:
    """Feed it response chunks in order with :meth:`feed`; read :meth:`finish`."""

    def __init__(self, content_type: str | None, started_at: float | None = None, clock=time.perf_counter):
        self._clock = clock
        self.started_at = started_at if started_at is not None else clock()
        self.usage = Usage()
        ctype = (content_type or "").lower()
        self.is_sse = "text/event-stream" in ctype
        self.is_json = not self.is_sse and "json" in ctype
        self._pending = b""  # SSE: the partial line being received
        self._data: list[bytes] = []  # SSE: data lines of the current event
        self._body: list[bytes] = []  # JSON: body parts while under the cap
        self._body_size = 0
        self._tail = b""
        self._timings: dict[str, Any] | None = None

    # ------------------------------------------------------------------ feed

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self.is_sse:
            self._feed_sse(chunk)
        elif self.is_json:
            self._body_size += len(chunk)
            if self._body_size <= JSON_KEEP_LIMIT:
                self._body.append(chunk)
            else:
                if self._body:
                    self._tail = b"".join(self._body)[-TAIL_KEEP:]
                    self._body = []
                self._tail = (self._tail + chunk)[-TAIL_KEEP:]

    def _feed_sse(self, chunk: bytes) -> None:
        data = self._pending + chunk
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            line = data[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                self._dispatch()
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
            # event:, id:, retry: and comments carry nothing we account
        self._pending = data[start:]

    def _dispatch(self) -> None:
        if not self._data:
            return
        payload = b"\n".join(self._data)
        self._data = []
        if payload == b"[DONE]":
            return
        try:
            event = _decode(payload)
        except msgspec.DecodeError:
            return
        if isinstance(event, dict):
            self.usage.events += 1
            self._read_event(event)

    # ------------------------------------------------------------------ read

    def _read_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind is not None:
            self._read_typed_event(kind, event)
            return
        if _has_openai_content(event):
            self._mark_content()
        if "error" in event and isinstance(event["error"], (dict, str)):
            self._read_error(event["error"])
        self._read_usage(event.get("usage"))
        timings = event.get("timings")
        if isinstance(timings, dict):
            self._timings = timings

    def _read_typed_event(self, kind: str, event: dict[str, Any]) -> None:
        # Anthropic messages
        if kind == "message_start":
            message = event.get("message") or {}
            self._read_usage(message.get("usage"))
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("text") or delta.get("thinking") or delta.get("partial_json"):
                self._mark_content()
        elif kind == "message_delta":
            self._read_usage(event.get("usage"))
        elif kind == "error":
            self._read_error(event.get("error"))
        # OpenAI Responses API
        elif kind in ("response.output_text.delta", "response.reasoning_text.delta", "response.function_call_arguments.delta"):
            if event.get("delta"):
                self._mark_content()
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            response = event.get("response") or {}
            self._read_usage(response.get("usage"))
            if kind == "response.failed":
                self._read_error(response.get("error"))
        else:
            self._read_usage(event.get("usage"))
        timings = event.get("timings")
        if isinstance(timings, dict):
            self._timings = timings

    def _read_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        u = self.usage
        prompt = _int(usage.get("prompt_tokens"))
        if prompt is None:
            prompt = _int(usage.get("input_tokens"))
            if prompt is not None:  # Anthropic counts cache reads/writes separately
                prompt += (_int(usage.get("cache_read_input_tokens")) or 0) + (
                    _int(usage.get("cache_creation_input_tokens")) or 0
                )
        completion = _int(usage.get("completion_tokens"))
        if completion is None:
            completion = _int(usage.get("output_tokens"))
        if prompt is not None:
            u.prompt_tokens = prompt
        if completion is not None:
            u.completion_tokens = completion
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
        if isinstance(details, dict) and _int(details.get("cached_tokens")) is not None:
            u.cached_tokens = _int(details.get("cached_tokens"))
        elif _int(usage.get("cache_read_input_tokens")) is not None:
            u.cached_tokens = _int(usage.get("cache_read_input_tokens"))
        if prompt is None and completion is None and _int(usage.get("total_tokens")) is not None:
            u.prompt_tokens = _int(usage.get("total_tokens"))  # embeddings report only total
            u.completion_tokens = u.completion_tokens or 0

    def _read_error(self, error: Any) -> None:
        if isinstance(error, dict):
            self.usage.error_message = str(error.get("message") or error)[:500]
        elif isinstance(error, str):
            self.usage.error_message = error[:500]

    def _mark_content(self) -> None:
        now = self._clock()
        if self.usage.first_content_at is None:
            self.usage.first_content_at = now
        self.usage.last_content_at = now

    # ---------------------------------------------------------------- finish

    def finish(self) -> Usage:
        if self.is_sse:
            if self._pending:
                self._feed_sse(b"\n")
            self._dispatch()
        elif self.is_json:
            self._finish_json()
        u = self.usage
        timings = self._timings
        if timings:
            if u.prompt_tokens is None and _int(timings.get("prompt_n")) is not None:
                u.prompt_tokens = _int(timings["prompt_n"]) + (_int(timings.get("cache_n")) or 0)
            if u.completion_tokens is None and _int(timings.get("predicted_n")) is not None:
                u.completion_tokens = _int(timings["predicted_n"])
            if _num(timings.get("prompt_per_second")) is not None:
                u.prompt_per_second = _num(timings["prompt_per_second"])
        if u.first_content_at is not None:
            u.ttft_ms = (u.first_content_at - self.started_at) * 1000
            u.generation_ms = ((u.last_content_at or u.first_content_at) - u.first_content_at) * 1000
            if u.completion_tokens and u.completion_tokens > 1 and u.generation_ms > 0:
                # n tokens span n-1 gaps between first and last
                u.tokens_per_second = (u.completion_tokens - 1) / (u.generation_ms / 1000)
        if u.tokens_per_second is None and timings and _num(timings.get("predicted_per_second")) is not None:
            u.tokens_per_second = _num(timings["predicted_per_second"])
        return u

    def _finish_json(self) -> None:
        if self._body:
            body = b"".join(self._body)
            self._body = []
            try:
                event = _decode(body)
            except msgspec.DecodeError:
                return
            if isinstance(event, dict):
                self._read_json_body(event)
        elif self._tail:
            self._read_tail(self._tail)

    def _read_json_body(self, body: dict[str, Any]) -> None:
        if body.get("type") == "error" or ("error" in body and "choices" not in body):
            self._read_error(body.get("error"))
        if "response" in body and isinstance(body["response"], dict) and "usage" not in body:
            body = body["response"]
        self._read_usage(body.get("usage"))
        timings = body.get("timings")
        if isinstance(timings, dict):
            self._timings = timings
        if self.usage.completion_tokens or _has_openai_content(body) or body.get("content") or body.get("output"):
            # a non-streamed answer arrives all at once: its first token is its last byte
            self._mark_content()

    def _read_tail(self, tail: bytes) -> None:
        for key in (b'"usage"', b'"timings"'):
            index = tail.rfind(key)
            if index < 0:
                continue
            start = tail.find(b"{", index)
            value = _balanced_object(tail, start) if start >= 0 else None
            if value is None:
                continue
            try:
                parsed = _decode(value)
            except msgspec.DecodeError:
                continue
            if key == b'"usage"':
                self._read_usage(parsed)
            else:
                self._timings = parsed
        self._mark_content()


def _balanced_object(data: bytes, start: int) -> bytes | None:
    depth = 0
    in_string = False
    escape = False
    for index in range(start, len(data)):
        char = data[index]
        if in_string:
            if escape:
                escape = False
            elif char == 0x5C:
                escape = True
            elif char == 0x22:
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char == 0x7B:
            depth += 1
        elif char == 0x7D:
            depth -= 1
            if depth == 0:
                return data[start : index + 1]
    return None


def _has_openai_content(event: dict[str, Any]) -> bool:
    choices = event.get("choices")
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta") or choice.get("message")
        if isinstance(delta, dict) and (
            delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning") or delta.get("tool_calls")
        ):
            return True
        if choice.get("text"):
            return True
    return False


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
