"""Translate Ollama's REST API to and from the OpenAI-shaped API that llama-server speaks.

Ollama clients (Open WebUI, the `ollama` Python/JS libraries, editors) talk to `/api/chat`, `/api/generate`,
`/api/embed`, `/api/embeddings`, `/api/tags`, `/api/show`, `/api/ps` and `/api/version`. Switchyard serves them
from the same OpenAI-compatible upstreams it proxies everywhere else, so this module only translates:

* requests: :func:`translate_chat_request`, :func:`translate_generate_request`, :func:`translate_embed_request`,
  :func:`translate_embeddings_request` turn an Ollama body into an :class:`UpstreamCall` (path + OpenAI body,
  plus what the gateway itself must act on: ``stream``, ``keep_alive``, ``num_ctx``, load-only requests);
* non-streamed responses: :func:`translate_response`;
* streamed responses: :class:`OllamaStreamTranslator` turns OpenAI Server-Sent Events into Ollama NDJSON as the
  bytes arrive (it never buffers the stream; tool-call fragments are the only thing it holds, because Ollama
  sends a tool call whole while OpenAI sends its arguments in pieces);
* listings: :func:`tags_response`, :func:`show_response`, :func:`ps_response`, :func:`version_response` from a
  neutral :class:`OllamaModel` description.

Where Ollama and OpenAI differ in shape the Ollama side wins: ``stream`` defaults to true, tool-call
arguments are JSON objects (OpenAI sends JSON strings), durations are integer nanoseconds, timestamps are
RFC 3339, errors are ``{"error": "..."}``, and a tool call ends with ``done_reason: "stop"`` (Ollama has no
``tool_calls`` reason).
"""

from core.ollama.listing import (
    OLLAMA_COMPAT_VERSION,
    OllamaModel,
    format_parameter_count,
    ps_response,
    show_response,
    tags_response,
    version_response,
)
from core.ollama.request import (
    CHAT_PATH,
    COMPLETIONS_PATH,
    EMBEDDINGS_PATH,
    OllamaRequestError,
    RequestKind,
    UpstreamCall,
    parse_keep_alive,
    strip_latest_tag,
    translate_chat_request,
    translate_embed_request,
    translate_embeddings_request,
    translate_generate_request,
    translate_messages,
    translate_options,
)
from core.ollama.response import (
    UpstreamResponseError,
    done_reason,
    error_body,
    error_from_upstream,
    load_response,
    rfc3339,
    translate_response,
)
from core.ollama.stream import OllamaStreamTranslator

__all__ = [
    "CHAT_PATH",
    "COMPLETIONS_PATH",
    "EMBEDDINGS_PATH",
    "OLLAMA_COMPAT_VERSION",
    "OllamaModel",
    "OllamaRequestError",
    "OllamaStreamTranslator",
    "RequestKind",
    "UpstreamCall",
    "UpstreamResponseError",
    "done_reason",
    "error_body",
    "error_from_upstream",
    "format_parameter_count",
    "load_response",
    "parse_keep_alive",
    "ps_response",
    "rfc3339",
    "show_response",
    "strip_latest_tag",
    "tags_response",
    "translate_chat_request",
    "translate_embed_request",
    "translate_embeddings_request",
    "translate_generate_request",
    "translate_messages",
    "translate_options",
    "translate_response",
    "version_response",
]
