"""Non-streamed OpenAI responses → Ollama bodies; errors; the token counts and nanosecond durations."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from core.jsonvalues import as_float, as_int
from core.ollama.request import UpstreamCall

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class UpstreamResponseError(ValueError):
    """The upstream answered 200 with a body this translation cannot read (answer 502)."""


_DONE_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop", "function_call": "stop"}


def rfc3339(moment: datetime | float | None = None) -> str:
    """A UTC RFC 3339 timestamp with microseconds, as Ollama's ``created_at``/``modified_at``."""
    if moment is None:
        moment = datetime.now(UTC)
    elif not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class _Timing:
    started_at: float
    load_seconds: float
    finished_at: float
    first_token_at: float | None = None
    last_token_at: float | None = None


def _done_fields(
    timing: _Timing, usage: Mapping[str, Any] | None, timings: Mapping[str, Any] | None, counted_tokens: int
) -> dict[str, Any]:
    """Token counts and nanosecond durations for a final Ollama object.

    llama.cpp's ``timings`` are exact (prompt/eval milliseconds as the server measured them); without them
    the prompt phase is the time to the first token (minus model loading) and the eval phase the time from
    the first to the last token.
    """
    usage = usage or {}
    timings = timings or {}
    total = max(0, round((timing.finished_at - timing.started_at) * 1e9))
    load = max(0, round(timing.load_seconds * 1e9))
    prompt_count = as_int(usage.get("prompt_tokens"))
    if prompt_count is None and as_int(timings.get("prompt_n")) is not None:
        prompt_count = as_int(timings["prompt_n"]) + (as_int(timings.get("cache_n")) or 0)
    eval_count = as_int(usage.get("completion_tokens"))
    if eval_count is None:
        eval_count = as_int(timings.get("predicted_n"))
    if eval_count is None:
        eval_count = counted_tokens
    if as_float(timings.get("prompt_ms")) is not None and as_float(timings.get("predicted_ms")) is not None:
        prompt_ns = round(as_float(timings["prompt_ms"]) * 1e6)
        eval_ns = round(as_float(timings["predicted_ms"]) * 1e6)
    elif timing.first_token_at is not None:
        prompt_ns = max(0, round((timing.first_token_at - timing.started_at - timing.load_seconds) * 1e9))
        eval_ns = max(0, round(((timing.last_token_at or timing.first_token_at) - timing.first_token_at) * 1e9))
    else:
        prompt_ns = 0
        eval_ns = max(0, total - load)
    return {
        "total_duration": total,
        "load_duration": load,
        "prompt_eval_count": prompt_count or 0,
        "prompt_eval_duration": prompt_ns,
        "eval_count": eval_count,
        "eval_duration": eval_ns,
    }


def done_reason(finish_reason: Any) -> str:
    """OpenAI ``finish_reason`` → Ollama ``done_reason`` (``stop`` or ``length``)."""
    return _DONE_REASONS.get(finish_reason, "stop") if isinstance(finish_reason, str) else "stop"


def translate_response(
    call: UpstreamCall,
    upstream: Mapping[str, Any],
    *,
    started_at: float,
    load_seconds: float = 0.0,
    finished_at: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """A non-streamed OpenAI response body → the Ollama body for `call`.

    `started_at` and `finished_at` are readings of `clock` (``time.perf_counter`` by default) taken when the
    Ollama request arrived and when the upstream answer was complete; `load_seconds` is how long the gateway
    waited for the model to start.
    """
    timing = _Timing(started_at, load_seconds, clock() if finished_at is None else finished_at)
    if call.kind == "embed":
        return _embed_body(call, upstream, timing)
    if call.kind == "embeddings":
        return {"embedding": _embedding_vectors(upstream)[0] if upstream.get("data") else []}
    choices = upstream.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], Mapping) else {}
    message = choice.get("message") if isinstance(choice.get("message"), Mapping) else {}
    text = message.get("content") if message else choice.get("text")
    thinking = message.get("reasoning_content") or message.get("reasoning") if message else None
    out: dict[str, Any] = {"model": call.model, "created_at": rfc3339()}
    if call.kind == "chat":
        reply: dict[str, Any] = {"role": "assistant", "content": text or ""}
        if thinking:
            reply["thinking"] = thinking
        calls = message.get("tool_calls") if message else None
        if calls:
            reply["tool_calls"] = [_ollama_tool_call(c) for c in calls if isinstance(c, Mapping)]
        out["message"] = reply
    else:
        out["response"] = text or ""
        if thinking:
            out["thinking"] = thinking
    logprobs = _ollama_logprobs(choice.get("logprobs"))
    if logprobs is not None:
        out["logprobs"] = logprobs
    out["done"] = True
    out["done_reason"] = done_reason(choice.get("finish_reason"))
    timings = upstream.get("timings") if isinstance(upstream.get("timings"), Mapping) else None
    usage = upstream.get("usage") if isinstance(upstream.get("usage"), Mapping) else None
    out.update(_done_fields(timing, usage, timings, 0))
    return out


def load_response(call: UpstreamCall, *, unloaded: bool = False) -> dict[str, Any]:
    """The answer to a load-only request (empty prompt/messages/input) once the model is loaded or unloaded."""
    if call.kind == "embeddings":
        return {"embedding": []}
    if call.kind == "embed":
        return {"model": call.model, "embeddings": []}
    out: dict[str, Any] = {"model": call.model, "created_at": rfc3339()}
    if call.kind == "chat":
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    out["done"] = True
    out["done_reason"] = "unload" if unloaded else "load"
    return out


def _embed_body(call: UpstreamCall, upstream: Mapping[str, Any], timing: _Timing) -> dict[str, Any]:
    vectors = [_normalised(vector[: call.dimensions] if call.dimensions else vector)
               for vector in _embedding_vectors(upstream)]  # fmt: skip
    usage = upstream.get("usage") if isinstance(upstream.get("usage"), Mapping) else {}
    prompt_tokens = as_int(usage.get("prompt_tokens"))
    if prompt_tokens is None:
        prompt_tokens = as_int(usage.get("total_tokens")) or 0
    return {
        "model": call.model,
        "embeddings": vectors,
        "total_duration": max(0, round((timing.finished_at - timing.started_at) * 1e9)),
        "load_duration": max(0, round(timing.load_seconds * 1e9)),
        "prompt_eval_count": prompt_tokens,
    }


def _embedding_vectors(upstream: Mapping[str, Any]) -> list[list[float]]:
    data = upstream.get("data")
    if not isinstance(data, list):
        raise UpstreamResponseError("the model server's embeddings response has no data list")
    items = sorted((item for item in data if isinstance(item, Mapping)), key=lambda item: item.get("index", 0))
    return [list(item.get("embedding") or []) for item in items]


def _normalised(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(value * value for value in vector))
    return [value / norm for value in vector] if norm > 0 else vector


def _ollama_tool_call(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") if isinstance(call.get("function"), Mapping) else {}
    return ollama_tool_call(call.get("id"), function.get("name"), function.get("arguments"))


def ollama_tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    """One tool call as Ollama writes it: arguments as an object, and the call id when the upstream gave one
    (recent Ollama versions return it, and accept it back as a tool message's ``tool_call_id``)."""
    out: dict[str, Any] = {"function": {"name": name or "", "arguments": _arguments_object(arguments)}}
    if isinstance(call_id, str) and call_id:
        out["id"] = call_id
    return out


def _arguments_object(arguments: Any) -> dict[str, Any]:
    """OpenAI sends tool arguments as a JSON string; Ollama as an object. Text that is not a JSON object is
    kept under ``"value"`` (parsed JSON of another type) or ``"raw"`` (not JSON) rather than dropped."""
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if arguments in (None, ""):
        return {}
    if not isinstance(arguments, str):
        return {"value": arguments}
    try:
        parsed = _decode(arguments)
    except msgspec.DecodeError:
        return {"raw": arguments}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def _ollama_logprobs(logprobs: Any) -> list[dict[str, Any]] | None:
    if not isinstance(logprobs, Mapping) or not isinstance(logprobs.get("content"), list):
        return None
    out = []
    for entry in logprobs["content"]:
        if not isinstance(entry, Mapping):
            continue
        item: dict[str, Any] = {"token": entry.get("token", ""), "logprob": entry.get("logprob", 0.0)}
        top = entry.get("top_logprobs")
        if isinstance(top, list) and top:
            item["top_logprobs"] = [{"token": t.get("token", ""), "logprob": t.get("logprob", 0.0)}
                                    for t in top if isinstance(t, Mapping)]  # fmt: skip
        out.append(item)
    return out


def error_body(message: str) -> dict[str, str]:
    """Ollama's error shape."""
    return {"error": message}


def error_from_upstream(status: int, body: bytes | str) -> dict[str, str]:
    """An upstream error response (OpenAI ``{"error": {"message"}}``, a bare string, or anything) as Ollama's."""
    raw = body.encode() if isinstance(body, str) else body
    try:
        parsed = _decode(raw) if raw else None
    except msgspec.DecodeError:
        parsed = None
    message = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict):
            message = error.get("message")
        elif isinstance(error, str):
            message = error
        message = message or parsed.get("message") or parsed.get("detail")
    if not message:
        text = raw.decode("utf-8", "replace").strip()
        message = text[:500] if text else f"upstream returned HTTP {status}"
    return error_body(str(message))
