"""Ollama request bodies → OpenAI request bodies (what to send upstream, and what the gateway must do)."""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
EMBEDDINGS_PATH = "/v1/embeddings"

RequestKind = Literal["chat", "generate", "embed", "embeddings"]

_encode = msgspec.json.Encoder().encode

#: Ollama option → llama-server request field, for options sent with every request.
_SAMPLING_OPTIONS: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "temperature": ("temperature", (int, float)),
    "top_k": ("top_k", int),
    "top_p": ("top_p", (int, float)),
    "min_p": ("min_p", (int, float)),
    "typical_p": ("typical_p", (int, float)),
    "seed": ("seed", int),
    "repeat_penalty": ("repeat_penalty", (int, float)),
    "repeat_last_n": ("repeat_last_n", int),
    "presence_penalty": ("presence_penalty", (int, float)),
    "frequency_penalty": ("frequency_penalty", (int, float)),
    "mirostat": ("mirostat", int),
    "mirostat_tau": ("mirostat_tau", (int, float)),
    "mirostat_eta": ("mirostat_eta", (int, float)),
    "num_keep": ("n_keep", int),
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class OllamaRequestError(ValueError):
    """The client sent something Ollama itself would refuse; answer 400 with ``{"error": str(exc)}``."""

    status_code = 400


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """One Ollama request, translated: where to send it upstream and what the gateway must do around it.

    `load_only` marks Ollama's "load the model" / "unload the model" requests (an empty prompt or message
    list): nothing goes upstream; the gateway starts the model (or, with ``keep_alive == 0``, stops it) and
    answers with :func:`load_response`.
    """

    kind: RequestKind
    model: str
    path: str
    body: dict[str, Any]
    stream: bool
    keep_alive: float | None = None
    num_ctx: int | None = None
    dimensions: int | None = None
    load_only: bool = False
    #: options and fields accepted but not applied per request (load-time options, `template`, `suffix`, ...)
    unapplied_options: tuple[str, ...] = ()

    @property
    def unloads(self) -> bool:
        """True when the client asked for the model to be unloaded once this request is answered."""
        return self.keep_alive == 0


def parse_keep_alive(value: Any) -> float | None:
    """Seconds to keep the model loaded after this request, as Ollama reads ``keep_alive``.

    ``None`` (absent or null): the model's own idle timeout applies. ``0``: unload right after the request.
    ``math.inf``: never unload (any negative number or duration, e.g. ``-1`` or ``"-1m"``). Numbers are
    seconds; strings are Go durations (``"5m"``, ``"1h30m"``, ``"250ms"``) or bare numbers of seconds.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise OllamaRequestError("keep_alive must be a duration, not a boolean")
    if isinstance(value, (int, float)):
        if math.isnan(value):
            raise OllamaRequestError("keep_alive must be a number")
        return math.inf if value < 0 else float(value)
    if not isinstance(value, str):
        raise OllamaRequestError("keep_alive must be a number of seconds or a duration string")
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = _parse_go_duration(text)
    return math.inf if seconds < 0 else seconds


def _parse_go_duration(text: str) -> float:
    sign = 1.0
    body = text
    if body[0] in "+-":
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    position = 0
    total = 0.0
    for match in _DURATION_PART.finditer(body):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(body) or not body:
        raise OllamaRequestError(f"keep_alive: invalid duration {text!r} (use e.g. 5m, 1h, 30s, 0 or -1)")
    return sign * total


def translate_options(options: Any) -> tuple[dict[str, Any], int | None, tuple[str, ...]]:
    """Ollama ``options`` → (llama-server sampling fields, ``num_ctx``, option names not applied).

    ``num_predict`` becomes ``max_tokens`` (its ``-1`` "unlimited" and ``-2`` "fill the context" mean no
    limit). ``num_ctx`` is returned, not sent: the context size is fixed when the model starts.
    """
    if options is None:
        return {}, None, ()
    if not isinstance(options, Mapping):
        raise OllamaRequestError("options must be an object")
    out: dict[str, Any] = {}
    num_ctx: int | None = None
    unapplied: list[str] = []
    for key, value in options.items():
        if value is None:
            continue
        if key in _SAMPLING_OPTIONS:
            target, kinds = _SAMPLING_OPTIONS[key]
            out[target] = _checked_option(key, value, kinds)
        elif key == "num_predict":
            limit = _checked_option(key, value, int)
            if limit >= 0:
                out["max_tokens"] = limit
        elif key == "stop":
            out["stop"] = _checked_stop(value)
        elif key == "num_ctx":
            num_ctx = _checked_option(key, value, int)
            if num_ctx <= 0:
                raise OllamaRequestError("option num_ctx must be a positive integer")
        else:
            unapplied.append(key)
    return out, num_ctx, tuple(unapplied)


def _checked_option(key: str, value: Any, kinds: type | tuple[type, ...]) -> Any:
    if isinstance(value, bool) or not isinstance(value, kinds):
        if kinds is int and isinstance(value, float) and value.is_integer():
            return int(value)
        wanted = "an integer" if kinds is int else "a number"
        raise OllamaRequestError(f"option {key} must be {wanted}, got {value!r}")
    return value


def _checked_stop(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(item, str) for item in value):
        return list(value)
    raise OllamaRequestError("option stop must be a string or a list of strings")


def translate_chat_request(body: Mapping[str, Any]) -> UpstreamCall:
    """``POST /api/chat`` → OpenAI chat completions."""
    model = _model_name(body)
    messages = body.get("messages")
    if messages is None:
        messages = []
    if not isinstance(messages, list):
        raise OllamaRequestError("messages must be a list")
    stream = _stream_flag(body)
    keep_alive = parse_keep_alive(body.get("keep_alive"))
    sampling, num_ctx, unapplied = translate_options(body.get("options"))
    if not messages:
        return UpstreamCall("chat", model, CHAT_PATH, {}, stream, keep_alive, num_ctx, load_only=True)
    openai: dict[str, Any] = {"model": model, "messages": translate_messages(messages), "stream": stream}
    if stream:
        openai["stream_options"] = {"include_usage": True}
    openai.update(sampling)
    _apply_format(openai, body.get("format"))
    _apply_think(openai, body.get("think"))
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise OllamaRequestError("tools must be a list")
        openai["tools"] = tools
    _apply_logprobs(openai, body)
    return UpstreamCall("chat", model, CHAT_PATH, openai, stream, keep_alive, num_ctx, unapplied_options=unapplied)


def translate_generate_request(body: Mapping[str, Any]) -> UpstreamCall:
    """``POST /api/generate`` → OpenAI chat completions, or plain completions when ``raw`` is true.

    ``system`` becomes a system message (Ollama ignores it in raw mode, and so does this). ``template``,
    ``context`` and ``suffix`` have no OpenAI equivalent: the upstream's own chat template applies; they are
    listed in `unapplied_options`.
    """
    model = _model_name(body)
    prompt = body.get("prompt") or ""
    if not isinstance(prompt, str):
        raise OllamaRequestError("prompt must be a string")
    images = _image_list(body.get("images"))
    stream = _stream_flag(body)
    keep_alive = parse_keep_alive(body.get("keep_alive"))
    sampling, num_ctx, unapplied = translate_options(body.get("options"))
    unapplied += tuple(key for key in ("template", "context", "suffix") if body.get(key))
    raw = bool(body.get("raw"))
    if not prompt and not images:
        path = COMPLETIONS_PATH if raw else CHAT_PATH
        return UpstreamCall("generate", model, path, {}, stream, keep_alive, num_ctx, load_only=True)
    openai: dict[str, Any] = {"model": model, "stream": stream}
    if raw:
        if images:
            raise OllamaRequestError("images cannot be sent with raw: true (raw prompts bypass the chat template)")
        openai["prompt"] = prompt
        path = COMPLETIONS_PATH
    else:
        messages: list[dict[str, Any]] = []
        system = body.get("system")
        if system:
            if not isinstance(system, str):
                raise OllamaRequestError("system must be a string")
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": _content_with_images(prompt, images)})
        openai["messages"] = messages
        path = CHAT_PATH
        _apply_think(openai, body.get("think"))
        _apply_logprobs(openai, body)
    if stream:
        openai["stream_options"] = {"include_usage": True}
    openai.update(sampling)
    _apply_format(openai, body.get("format"))
    return UpstreamCall("generate", model, path, openai, stream, keep_alive, num_ctx, unapplied_options=unapplied)


def translate_embed_request(body: Mapping[str, Any]) -> UpstreamCall:
    """``POST /api/embed`` (``input``: a string or a list of strings) → OpenAI embeddings.

    ``dimensions`` is applied by :func:`translate_response` (truncate, then re-normalise, as Ollama does),
    because llama-server ignores it.
    """
    model = _model_name(body)
    raw_input = body.get("input")
    if raw_input is None or raw_input == "" or raw_input == []:
        return UpstreamCall("embed", model, EMBEDDINGS_PATH, {}, False, parse_keep_alive(body.get("keep_alive")),
                            load_only=True)  # fmt: skip
    if isinstance(raw_input, str):
        inputs: str | list[str] = raw_input
    elif isinstance(raw_input, list) and all(isinstance(item, str) for item in raw_input):
        inputs = list(raw_input)
    else:
        raise OllamaRequestError("input must be a string or a list of strings")
    dimensions = body.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions <= 0):
        raise OllamaRequestError("dimensions must be a positive integer")
    _, num_ctx, unapplied = translate_options(body.get("options"))
    if body.get("truncate") is False:
        unapplied += ("truncate",)
    openai = {"model": model, "input": inputs, "encoding_format": "float"}
    return UpstreamCall("embed", model, EMBEDDINGS_PATH, openai, False, parse_keep_alive(body.get("keep_alive")),
                        num_ctx, dimensions, unapplied_options=unapplied)  # fmt: skip


def translate_embeddings_request(body: Mapping[str, Any]) -> UpstreamCall:
    """The legacy ``POST /api/embeddings`` (``prompt``: one string) → OpenAI embeddings."""
    model = _model_name(body)
    prompt = body.get("prompt")
    keep_alive = parse_keep_alive(body.get("keep_alive"))
    if not prompt:
        return UpstreamCall("embeddings", model, EMBEDDINGS_PATH, {}, False, keep_alive, load_only=True)
    if not isinstance(prompt, str):
        raise OllamaRequestError("prompt must be a string")
    _, num_ctx, unapplied = translate_options(body.get("options"))
    openai = {"model": model, "input": prompt, "encoding_format": "float"}
    return UpstreamCall("embeddings", model, EMBEDDINGS_PATH, openai, False, keep_alive, num_ctx,
                        unapplied_options=unapplied)  # fmt: skip


def translate_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
    """Ollama chat messages → OpenAI chat messages.

    Images (base64) become ``image_url`` data-URL parts; assistant ``thinking`` becomes ``reasoning_content``;
    assistant tool calls get ids and JSON-string arguments; a ``tool`` message names its tool
    (``tool_name``), so it is answered with the id of the earliest unanswered call of that tool.
    """
    out: list[dict[str, Any]] = []
    pending_calls: list[tuple[str, str]] = []  # (id, function name) of calls not yet answered
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise OllamaRequestError(f"messages[{index}] must be an object")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise OllamaRequestError(f"messages[{index}].role is required")
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise OllamaRequestError(f"messages[{index}].content must be a string")
        images = _image_list(message.get("images"), where=f"messages[{index}].images")
        converted: dict[str, Any] = {"role": role, "content": _content_with_images(content, images)}
        thinking = message.get("thinking")
        if role == "assistant" and isinstance(thinking, str) and thinking:
            converted["reasoning_content"] = thinking
        calls = message.get("tool_calls")
        if role == "assistant" and calls:
            converted["tool_calls"] = [_openai_tool_call(call, index, n) for n, call in enumerate(calls)]
            pending_calls.extend((c["id"], c["function"]["name"]) for c in converted["tool_calls"])
        if role == "tool":
            call_id = message.get("tool_call_id") or _answer_call(pending_calls, message.get("tool_name"))
            if call_id:
                converted["tool_call_id"] = call_id
        out.append(converted)
    return out


def _openai_tool_call(call: Any, message_index: int, call_index: int) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise OllamaRequestError(f"messages[{message_index}].tool_calls[{call_index}].function.name is required")
    arguments = function.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = _encode(arguments).decode()
    call_id = call.get("id") or f"call_{message_index}_{call_index}"
    return {"id": call_id, "type": "function", "function": {"name": function["name"], "arguments": arguments}}


def _answer_call(pending: list[tuple[str, str]], tool_name: Any) -> str | None:
    for position, (call_id, name) in enumerate(pending):
        if tool_name is None or name == tool_name:
            del pending[position]
            return call_id
    return None


def _content_with_images(text: str, images: list[str]) -> str | list[dict[str, Any]]:
    if not images:
        return text
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": _data_url(image)}} for image in images]
    if text:
        parts.append({"type": "text", "text": text})
    return parts


def _image_list(value: Any, where: str = "images") -> list[str]:
    if not value:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise OllamaRequestError(f"{where} must be a list of base64 strings")
    return value


def _data_url(image: str) -> str:
    if image.startswith("data:"):
        return image
    head = image[:32]
    try:  # check (and sniff) the start only: the upstream decodes the rest
        prefix = binascii.a2b_base64(head[: len(head) - len(head) % 4], strict_mode=True)
    except binascii.Error as exc:
        raise OllamaRequestError("images must be base64-encoded") from exc
    return f"data:{_sniff_image_type(prefix)};base64,{image}"


def _sniff_image_type(prefix: bytes) -> str:
    if prefix.startswith(b"\x89PNG"):
        return "image/png"
    if prefix.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if prefix.startswith(b"GIF8"):
        return "image/gif"
    if prefix.startswith(b"RIFF") and prefix[8:12] == b"WEBP":
        return "image/webp"
    if prefix.startswith(b"BM"):
        return "image/bmp"
    return "image/jpeg"


def _apply_format(openai: dict[str, Any], fmt: Any) -> None:
    if fmt in (None, ""):
        return
    if fmt == "json":
        openai["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, Mapping):
        openai["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": dict(fmt), "strict": True},
        }
    else:
        raise OllamaRequestError('format must be "json" or a JSON schema object')


def _apply_think(openai: dict[str, Any], think: Any) -> None:
    """Ollama ``think`` → llama-server's template switch (and OpenAI's ``reasoning_effort`` for levels)."""
    if think is None:
        return
    if isinstance(think, bool):
        openai["chat_template_kwargs"] = {"enable_thinking": think}
    elif think in ("low", "medium", "high"):
        openai["chat_template_kwargs"] = {"enable_thinking": True}
        openai["reasoning_effort"] = think
    else:
        raise OllamaRequestError('think must be true, false, "low", "medium" or "high"')


def _apply_logprobs(openai: dict[str, Any], body: Mapping[str, Any]) -> None:
    if body.get("logprobs"):
        openai["logprobs"] = True
        top = body.get("top_logprobs")
        if isinstance(top, int) and not isinstance(top, bool) and top > 0:
            openai["top_logprobs"] = top


def _model_name(body: Mapping[str, Any]) -> str:
    if not isinstance(body, Mapping):
        raise OllamaRequestError("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise OllamaRequestError("model is required")
    return model.strip()


def _stream_flag(body: Mapping[str, Any]) -> bool:
    stream = body.get("stream")
    return True if stream is None else bool(stream)


def strip_latest_tag(name: str) -> str:
    """Ollama clients may add ``:latest`` to a name that has no tag; ``"qwen:latest"`` means ``"qwen"``."""
    return name.removesuffix(":latest")
