"""OpenAI Server-Sent Events → Ollama NDJSON, translated as the bytes arrive."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from core.ollama.response import (
    _done_fields,
    _ollama_logprobs,
    _Timing,
    done_reason,
    error_body,
    error_from_upstream,
    ollama_tool_call,
    rfc3339,
)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


@dataclass(slots=True)
class _ToolCallDraft:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class OllamaStreamTranslator:
    """OpenAI Server-Sent Events in, Ollama NDJSON out, incrementally.

    Feed upstream bytes in order with :meth:`feed` (any chunking: an event or a UTF-8 character may be split
    anywhere); each call returns the NDJSON lines completed so far (possibly ``b""``). Call :meth:`finish` at
    the end of the upstream stream: it returns the closing line(s). Exactly one final object is produced:
    the ``done: true`` object, or ``{"error": ...}`` when the upstream reported an error or stopped before
    finishing.

    Usage and llama.cpp ``timings`` arrive after ``finish_reason`` (``stream_options.include_usage``), so the
    ``done`` object is written at ``data: [DONE]`` (or at :meth:`finish`), not at ``finish_reason``.
    """

    def __init__(
        self,
        kind: Literal["chat", "generate"],
        model: str,
        *,
        started_at: float | None = None,
        load_seconds: float = 0.0,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.kind = kind
        self.model = model
        self._clock = clock
        self._wall_clock = wall_clock
        self._timing = _Timing(clock() if started_at is None else started_at, load_seconds, 0.0)
        self._pending = b""
        self._data: list[bytes] = []
        self._tool_calls: dict[int, _ToolCallDraft] = {}
        self._finish_reason: str | None = None
        self._usage: Mapping[str, Any] | None = None
        self._timings: Mapping[str, Any] | None = None
        self._content_events = 0
        self.done = False
        self.error: str | None = None

    # ------------------------------------------------------------------ input

    def feed(self, chunk: bytes) -> bytes:
        if self.done or not chunk:
            return b""
        out: list[bytes] = []
        data = self._pending + chunk
        start = 0
        while not self.done:
            end = data.find(b"\n", start)
            if end < 0:
                break
            line = data[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                self._dispatch(out)
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        self._pending = data[start:] if not self.done else b""
        return b"".join(out)

    def finish(self) -> bytes:
        """The closing line(s) once the upstream stream has ended (or was cut)."""
        if self.done:
            return b""
        out: list[bytes] = []
        if self._pending:
            line = self._pending.rstrip(b"\r")
            self._pending = b""
            if line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        self._dispatch(out)
        if not self.done:
            if self._finish_reason is not None:
                self._close(out)
            else:
                self._fail(out, "the model server closed the stream before the response was complete")
        return b"".join(out)

    def fail(self, message: str) -> bytes:
        """The final line for a stream the gateway has to abandon (upstream timeout, connection lost...)."""
        if self.done:
            return b""
        out: list[bytes] = []
        self._fail(out, message)
        return b"".join(out)

    # --------------------------------------------------------------- events

    def _dispatch(self, out: list[bytes]) -> None:
        if not self._data:
            return
        payload = b"\n".join(self._data)
        self._data = []
        if payload.strip() == b"[DONE]":
            self._close(out)
            return
        try:
            event = _decode(payload)
        except msgspec.DecodeError:
            return
        if not isinstance(event, dict):
            return
        if event.get("error") is not None:
            self._fail(out, error_from_upstream(500, _encode(event))["error"])
            return
        if isinstance(event.get("usage"), Mapping):
            self._usage = event["usage"]
        if isinstance(event.get("timings"), Mapping):
            self._timings = event["timings"]
        choices = event.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            return
        choice = choices[0]
        delta = choice.get("delta") if isinstance(choice.get("delta"), Mapping) else {}
        text = delta.get("content") if delta else None
        if text is None:
            text = choice.get("text")
        thinking = delta.get("reasoning_content") or delta.get("reasoning") if delta else None
        if delta.get("tool_calls"):
            self._mark_token()
            self._collect_tool_calls(delta["tool_calls"])
        if text or thinking:
            self._mark_token()
            self._content_events += 1
            out.append(self._line(self._fragment(text or "", thinking or None, choice.get("logprobs"))))
        if choice.get("finish_reason"):
            self._finish_reason = choice["finish_reason"]
            self._flush_tool_calls(out)

    def _collect_tool_calls(self, deltas: Any) -> None:
        if not isinstance(deltas, list):
            return
        for position, delta in enumerate(deltas):
            if not isinstance(delta, Mapping):
                continue
            index = delta.get("index", position)
            draft = self._tool_calls.setdefault(index if isinstance(index, int) else position, _ToolCallDraft())
            if delta.get("id"):
                draft.id = delta["id"]
            function = delta.get("function") if isinstance(delta.get("function"), Mapping) else {}
            if function.get("name"):
                draft.name += function["name"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                draft.arguments.append(arguments)
            elif isinstance(arguments, Mapping):  # some servers send the object whole
                draft.arguments.append(_encode(arguments).decode())

    def _flush_tool_calls(self, out: list[bytes]) -> None:
        if not self._tool_calls or self.kind != "chat":
            self._tool_calls.clear()
            return
        calls = [ollama_tool_call(draft.id, draft.name, "".join(draft.arguments))
                 for _, draft in sorted(self._tool_calls.items())]  # fmt: skip
        self._tool_calls.clear()
        obj = self._header()
        obj["message"] = {"role": "assistant", "content": "", "tool_calls": calls}
        obj["done"] = False
        out.append(self._line(obj))

    def _mark_token(self) -> None:
        now = self._clock()
        if self._timing.first_token_at is None:
            self._timing.first_token_at = now
        self._timing.last_token_at = now

    # --------------------------------------------------------------- output

    def _header(self) -> dict[str, Any]:
        return {"model": self.model, "created_at": rfc3339(self._wall_clock())}

    def _fragment(self, text: str, thinking: str | None, logprobs: Any) -> dict[str, Any]:
        obj = self._header()
        if self.kind == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            obj["message"] = message
        else:
            obj["response"] = text
            if thinking:
                obj["thinking"] = thinking
        converted = _ollama_logprobs(logprobs)
        if converted:
            obj["logprobs"] = converted
        obj["done"] = False
        return obj

    def _close(self, out: list[bytes]) -> None:
        self._flush_tool_calls(out)
        self._timing.finished_at = self._clock()
        obj = self._header()
        if self.kind == "chat":
            obj["message"] = {"role": "assistant", "content": ""}
        else:
            obj["response"] = ""
        obj["done"] = True
        obj["done_reason"] = done_reason(self._finish_reason)
        obj.update(_done_fields(self._timing, self._usage, self._timings, self._content_events))
        out.append(self._line(obj))
        self.done = True

    def _fail(self, out: list[bytes], message: str) -> None:
        self.error = message
        out.append(self._line(error_body(message)))
        self.done = True

    @staticmethod
    def _line(obj: Mapping[str, Any]) -> bytes:
        return _encode(obj) + b"\n"
