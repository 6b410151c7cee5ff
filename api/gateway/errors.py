"""Client-facing errors in each API family's own shape.

* OpenAI:    ``{"error": {"message", "type", "code"}}``
* Anthropic: ``{"type": "error", "error": {"type", "message"}}``
* Ollama:    ``{"error": "message"}``
"""

from __future__ import annotations

import enum

import msgspec

_encode = msgspec.json.Encoder().encode


class Family(enum.Enum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    OLLAMA = "ollama"


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


class GatewayError(Exception):
    """An error answered to the client with `status` in its API family's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


def error_body(family: Family, status: int, message: str, code: str | None = None) -> bytes:
    if family is Family.ANTHROPIC:
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        return _encode({"type": "error", "error": {"type": kind, "message": message}})
    if family is Family.OLLAMA:
        return _encode({"error": message})
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return _encode({"error": {"message": message, "type": kind, "param": None, "code": code}})


def sse_error_event(family: Family, message: str) -> bytes:
    """An error event for a stream that already started (headers are gone)."""
    if family is Family.ANTHROPIC:
        payload = _encode({"type": "error", "error": {"type": "api_error", "message": message}})
        return b"event: error\ndata: " + payload + b"\n\n"
    payload = _encode({"error": {"message": message, "type": "server_error", "code": "upstream_error"}})
    return b"data: " + payload + b"\n\n"
