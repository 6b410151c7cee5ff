"""ASGI plumbing shared by the gateway's raw ASGI apps (proxy, Ollama, MCP relays)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ClientDisconnected(Exception):
    """The client went away while the response was being sent."""


class ResponseSender:
    """Mixin: send the response to the client; an ASGI server reports a gone client by raising.

    Expects `self._send`; keeps `response_started` and `client_gone` up to date.
    """

    _send: Send
    response_started: bool = False
    client_gone: bool = False

    async def _send_start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.response_started = True
        try:
            await self._send({"type": "http.response.start", "status": status, "headers": headers})
        except Exception as exc:
            self.client_gone = True
            raise ClientDisconnected() from exc

    async def _send_body(self, chunk: bytes, *, more: bool) -> None:
        try:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": more})
        except Exception as exc:
            self.client_gone = True
            raise ClientDisconnected() from exc
