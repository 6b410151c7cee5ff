"""ETags for the admin API's GETs: the dashboard polls, and an unchanged answer costs a 304.

Every successful `GET /api/...` whose body is JSON or YAML gets a strong ETag, a hash of the
body. A request whose `If-None-Match` names it gets `304 Not Modified` without the body. Streams
(SSE, logs) are passed through untouched: they are never buffered.
"""

from __future__ import annotations

import hashlib

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

_TAGGED_TYPES = (b"application/json", b"application/yaml", b"text/yaml", b"application/vnd.oai.openapi+json")


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison over a comma-separated list (`*` matches anything)."""
    bare = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == bare:
            return True
    return False


class ETagMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope["method"] != "GET" or not scope["path"].startswith("/api/"):
            await next_app(scope, receive, send)
            return
        if_none_match = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"if-none-match"), None)
        start: Message | None = None
        chunks: list[bytes] = []

        async def tagging_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                content_type = next((v for k, v in message.get("headers", []) if k.lower() == b"content-type"), b"")
                if message["status"] == 200 and content_type.split(b";")[0].strip() in _TAGGED_TYPES:
                    start = message  # hold the headers until the whole body is known
                    return
                await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            etag = etag_of(body)
            headers = MutableScopeHeaders(start)
            headers["etag"] = etag
            if "cache-control" not in headers:
                headers["cache-control"] = "no-cache"
            if if_none_match is not None and etag_matches(if_none_match, etag):
                not_modified = {
                    "type": "http.response.start",
                    "status": 304,
                    "headers": [(k, v) for k, v in start["headers"] if k.lower() in (b"etag", b"cache-control")],
                }
                await send(not_modified)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await next_app(scope, receive, tagging_send)
