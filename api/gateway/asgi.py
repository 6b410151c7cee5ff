"""ASGI plumbing shared by the gateway's raw ASGI apps (proxy, Ollama, MCP relays)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ClientDisconnected(Exception):
    """The client went away while the request was read or the response was being sent."""


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"request body is larger than the limit of {limit} bytes")
        self.limit = limit


class ClientConnection:
    """Mixin for one exchange with an ASGI client: read the body, notice a disconnect, send the response.

    Expects `self.receive` and `self._send`; keeps `response_started`, `client_gone` and `finished` up to date.
    """

    scope: Scope
    receive: Receive
    _send: Send
    response_started: bool = False
    client_gone: bool = False
    finished: bool = False  # the whole response went out: a later disconnect cancels nothing
    _text_headers: dict[str, str] | None = None

    @property
    def text_headers(self) -> dict[str, str]:
        """Request headers as str (lower-case names), built once when something needs them."""
        if self._text_headers is None:
            self._text_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in self.scope["headers"]}
        return self._text_headers

    async def _receive_body(self, limit: int, declared_length: bytes | None = None) -> bytes:
        """The request body, refused (BodyTooLarge) as soon as it is known to exceed `limit` bytes."""
        if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
            raise BodyTooLarge(limit)
        chunks = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.client_gone = True
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(limit)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _watch_disconnect(self, handler: asyncio.Task[Any]) -> None:
        """Run beside the handler once the body is read: a client that goes away cancels the handler
        (and with it the upstream request), so a waiting or streaming request frees its slot at once."""
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                if not self.finished:
                    self.client_gone = True
                    handler.cancel()
                return

    async def _send_start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.response_started = True
        try:
            await self._send({"type": "http.response.start", "status": status, "headers": headers})
        except Exception as exc:  # an ASGI server reports a gone client by raising
            self.client_gone = True
            raise ClientDisconnected() from exc

    async def _send_body(self, chunk: bytes, *, more: bool) -> None:
        try:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": more})
        except Exception as exc:
            self.client_gone = True
            raise ClientDisconnected() from exc
        if not more:
            self.finished = True
