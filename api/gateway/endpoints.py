"""Which paths the gateway serves, and where each one carries its model name.

The model is read from the JSON body (msgspec decodes only `model` and `stream`,
skipping everything else without building it), from a multipart form field
(found by scanning part headers, without copying the upload), or from the query
string. The body is never parsed twice: when it must change (filters, a
rewritten model) the full decode happens once, later, in the rewrite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

import msgspec

from api.gateway.errors import Family, GatewayError


@dataclass(frozen=True, slots=True)
class Endpoint:
    family: Family
    model_from: Literal["json", "multipart", "query", "path"] = "json"
    methods: frozenset[str] = frozenset({"POST"})


_POST = frozenset({"POST"})
_GET = frozenset({"GET", "POST"})

ENDPOINTS: dict[str, Endpoint] = {
    # OpenAI
    "/v1/chat/completions": Endpoint(Family.OPENAI),
    "/v1/completions": Endpoint(Family.OPENAI),
    "/v1/embeddings": Endpoint(Family.OPENAI),
    "/v1/responses": Endpoint(Family.OPENAI),
    "/v1/audio/speech": Endpoint(Family.OPENAI),
    "/v1/audio/transcriptions": Endpoint(Family.OPENAI, "multipart"),
    "/v1/audio/translations": Endpoint(Family.OPENAI, "multipart"),
    "/v1/audio/voices": Endpoint(Family.OPENAI, "query", _GET),
    "/v1/images/generations": Endpoint(Family.OPENAI),
    "/v1/images/edits": Endpoint(Family.OPENAI, "multipart"),
    "/v1/images/variations": Endpoint(Family.OPENAI, "multipart"),
    # Anthropic
    "/v1/messages": Endpoint(Family.ANTHROPIC),
    "/v1/messages/count_tokens": Endpoint(Family.ANTHROPIC),
    # llama.cpp server
    "/v1/rerank": Endpoint(Family.OPENAI),
    "/v1/reranking": Endpoint(Family.OPENAI),
    "/rerank": Endpoint(Family.OPENAI),
    "/infill": Endpoint(Family.OPENAI),
    "/completion": Endpoint(Family.OPENAI),
    "/props": Endpoint(Family.OPENAI, "query", _GET),
    # stable-diffusion.cpp (SDAPI)
    "/sdapi/v1/txt2img": Endpoint(Family.OPENAI),
    "/sdapi/v1/img2img": Endpoint(Family.OPENAI),
    "/sdapi/v1/loras": Endpoint(Family.OPENAI, "query", _GET),
}
PASSTHROUGH = Endpoint(Family.OPENAI, "path", frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}))


class RequestFields(msgspec.Struct):
    """The few top-level fields the gateway itself reads; everything else is skipped, not built."""

    model: str | None = None
    stream: bool | None = None
    user: Any = None  # attribution: end user (OpenAI)
    metadata: Any = None  # attribution: end user (Anthropic metadata.user_id)


_decode_fields = msgspec.json.Decoder(RequestFields).decode


def read_json_fields(body: bytes) -> RequestFields:
    try:
        return _decode_fields(body)
    except msgspec.ValidationError as exc:
        raise GatewayError(400, f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise GatewayError(400, f"request body is not valid JSON: {exc}") from None


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


def multipart_field(body: bytes, content_type: str, name: str) -> str | None:
    """The value of a small text field of a multipart/form-data body, or None.

    It looks for the field's part header and reads up to the next boundary, so an
    upload of many megabytes is not split, copied or decoded.
    """
    match = _BOUNDARY.search(content_type)
    if not match or not content_type.lower().startswith("multipart/form-data"):
        raise GatewayError(400, "expected a multipart/form-data body with a boundary")
    delimiter = b"--" + match.group(1).encode("latin-1")
    needle = b'name="' + name.encode() + b'"'
    position = 0
    while True:
        found = body.find(needle, position)
        if found < 0:
            return None
        part_start = body.rfind(delimiter, 0, found)
        header_end = body.find(b"\r\n\r\n", found)
        # the needle must sit inside a part header: after a delimiter, before the blank line
        if part_start >= 0 and header_end >= 0 and body.find(b"\r\n\r\n", part_start, found) < 0:
            value_end = body.find(b"\r\n" + delimiter, header_end + 4)
            if value_end < 0:
                return None
            return body[header_end + 4 : value_end].decode("utf-8", "replace").strip()
        position = found + len(needle)


def query_field(query_string: bytes, name: str) -> str | None:
    values = parse_qs(query_string.decode("latin-1")).get(name)
    return values[0] if values else None
