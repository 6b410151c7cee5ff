"""Bounded captures of a request and its response, redacted and compressed for storage.

A capture is what an operator sees when opening one request in the log: the
headers both ways and the first ``limit_bytes`` of each body. It is built on the
hot path, so :class:`CaptureBuffer` only copies up to its cap and then counts.
Bodies that are not text (audio, images, anything ``multipart/*`` such as an
upload, or a body still content-encoded) are recorded as metadata only: their
content type and size.

Secrets never reach storage through a capture: :func:`redact_headers` blanks
credentials by header name (``Authorization``, ``x-api-key``, cookies,
``Proxy-Authorization`` and any name containing ``token``, ``secret``, ``key``,
``password`` or ``credential``; rate-limit headers that merely count tokens are
kept), and ``redact_values`` (for example credentials a policy injected) are
replaced by ``[redacted]`` wherever they appear in captured header values or
text, including a secret cut in half by the byte cap.

At rest a capture is JSON compressed with zlib (:func:`compress` /
:func:`decompress`). The dict shape, version 1::

    {"version": 1,
     "request":  {"headers": [[name, value], ...], "body": BODY | None},
     "response": {"headers": [[name, value], ...], "body": BODY | None}}

    BODY = {"content_type": str | None, "size": int, "truncated": bool, "text": str}
         | {"content_type": str | None, "size": int, "omitted": "binary" | "multipart" | "encoded",
            "content_encoding": str | None}
"""

from __future__ import annotations

import codecs
import zlib
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import msgspec

DEFAULT_CAPTURE_BYTES = 16 * 1024
"""Default cap per body: enough for a chat request and the start of its answer."""
REDACTED = "[redacted]"
CAPTURE_VERSION = 1
MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024

_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"})
_SECRET_NAME_PARTS = ("token", "secret", "key", "password", "passwd", "credential")
_NOT_SECRET_NAME_PARTS = ("ratelimit", "rate-limit")
_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/jsonl",
        "application/x-www-form-urlencoded",
        "application/xml",
        "application/javascript",
        "application/graphql",
        "application/yaml",
        "application/x-yaml",
    }
)
_MIN_CUT_SECRET = 4  # a secret cut by the cap is redacted when at least this much of it was captured

BodyKind = Literal["text", "binary", "multipart", "encoded"]


def body_kind(content_type: str | None, content_encoding: str | None = None) -> BodyKind | None:
    """How a body is captured; None when the content type does not say (decided by the bytes)."""
    encoding = (content_encoding or "").strip().lower()
    if encoding and encoding != "identity":
        return "encoded"
    if not content_type:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    if media.startswith("multipart/"):
        return "multipart"
    if media.startswith("text/") or media in _TEXT_TYPES or media.endswith(("+json", "+xml")):
        return "text"
    return "binary"


class CaptureBuffer:
    """Keeps the first ``limit_bytes`` of a body (text only) and counts all of it."""

    __slots__ = ("_kept", "_parts", "content_encoding", "content_type", "kind", "limit_bytes", "size")

    def __init__(
        self,
        limit_bytes: int = DEFAULT_CAPTURE_BYTES,
        content_type: str | None = None,
        content_encoding: str | None = None,
    ):
        self.limit_bytes = max(0, limit_bytes)
        self.content_type = content_type
        self.content_encoding = content_encoding
        self.kind = body_kind(content_type, content_encoding)
        self.size = 0
        self._parts: list[bytes] = []
        self._kept = 0

    def append(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.kind not in (None, "text") or self._kept >= self.limit_bytes:
            return
        room = self.limit_bytes - self._kept
        part = chunk if len(chunk) <= room else chunk[:room]
        if part:
            self._parts.append(part)
            self._kept += len(part)

    @property
    def truncated(self) -> bool:
        return self.size > self._kept

    @property
    def data(self) -> bytes:
        if len(self._parts) > 1:
            self._parts = [b"".join(self._parts)]
        return self._parts[0] if self._parts else b""

    def to_dict(self, redact_values: Iterable[str] = ()) -> dict[str, Any]:
        """The stored form of this body (see the module docstring)."""
        kind = self.kind
        data = self.data
        text: str | None = None
        if kind in (None, "text"):
            text = _decode_text(data, truncated=self.truncated, strict=kind is None)
            if text is None:
                kind = "binary"  # no content type and not UTF-8: it is not text
        if text is None:
            return {
                "content_type": self.content_type,
                "size": self.size,
                "omitted": kind,
                "content_encoding": self.content_encoding,
            }
        return {
            "content_type": self.content_type,
            "size": self.size,
            "truncated": self.truncated,
            "text": redact_text(text, redact_values, cut=self.truncated),
        }


def redact_headers(
    headers: Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]], redact_values: Iterable[str] = ()
) -> list[list[str]]:
    """Headers as ``[name, value]`` pairs (order and repeats kept) with credentials replaced by ``[redacted]``."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    values = _usable_values(redact_values)
    result = []
    for raw_name, raw_value in pairs:
        name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else str(raw_name)
        value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else str(raw_value)
        if is_secret_header(name):
            value = REDACTED
        elif values:
            value = _replace_values(value, values)
        result.append([name, value])
    return result


def is_secret_header(name: str) -> bool:
    lowered = name.strip().lower()
    if lowered in _SECRET_HEADERS:
        return True
    if any(part in lowered for part in _NOT_SECRET_NAME_PARTS):
        return False
    return any(part in lowered for part in _SECRET_NAME_PARTS)


def redact_text(text: str, redact_values: Iterable[str], *, cut: bool = False) -> str:
    """Replace each value by ``[redacted]``; with ``cut``, also a secret's start left at the very end of ``text``."""
    values = _usable_values(redact_values)
    if not values:
        return text
    text = _replace_values(text, values)
    if cut:
        for value in values:
            for length in range(len(value) - 1, _MIN_CUT_SECRET - 1, -1):
                if text.endswith(value[:length]):
                    return text[: len(text) - length] + REDACTED
    return text


def build_capture(
    *,
    request_headers: Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]] = (),
    request_body: CaptureBuffer | None = None,
    response_headers: Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]] = (),
    response_body: CaptureBuffer | None = None,
    redact_values: Iterable[str] = (),
) -> dict[str, Any]:
    """Assemble the capture of one exchange, redacted, ready for :func:`compress`."""
    values = _usable_values(redact_values)
    return {
        "version": CAPTURE_VERSION,
        "request": {
            "headers": redact_headers(request_headers, values),
            "body": request_body.to_dict(values) if request_body is not None else None,
        },
        "response": {
            "headers": redact_headers(response_headers, values),
            "body": response_body.to_dict(values) if response_body is not None else None,
        },
    }


def compress(capture: Mapping[str, Any]) -> bytes:
    """A capture as stored: zlib-compressed JSON."""
    return zlib.compress(msgspec.json.encode(capture), 6)


def decompress(blob: bytes, max_bytes: int = MAX_DECOMPRESSED_BYTES) -> dict[str, Any]:
    """The capture dict back from :func:`compress`'s bytes; refuses more than ``max_bytes`` of JSON."""
    decompressor = zlib.decompressobj()
    try:
        raw = decompressor.decompress(blob, max_bytes)
    except zlib.error as exc:
        raise ValueError(f"not a compressed capture: {exc}") from exc
    if decompressor.unconsumed_tail:
        raise ValueError(f"capture is larger than {max_bytes} bytes uncompressed")
    if not decompressor.eof:
        raise ValueError("capture is truncated")
    try:
        capture = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValueError(f"capture is not JSON: {exc}") from exc
    if not isinstance(capture, dict):
        raise ValueError("capture is not a JSON object")  # noqa: TRY004 - bad stored data, not a bad argument
    return capture


def _decode_text(data: bytes, *, truncated: bool, strict: bool) -> str | None:
    # A cap can cut a multi-byte character: leave its first bytes out rather than show a replacement char.
    decoder = codecs.getincrementaldecoder("utf-8")("strict" if strict else "replace")
    try:
        return decoder.decode(data, final=not truncated)
    except UnicodeDecodeError:
        return None


def _usable_values(values: Iterable[str]) -> tuple[str, ...]:
    # longest first, so a secret that contains another is replaced whole
    return tuple(sorted({value for value in values if isinstance(value, str) and value}, key=len, reverse=True))


def _replace_values(text: str, values: tuple[str, ...]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text
