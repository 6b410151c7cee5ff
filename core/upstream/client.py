"""One way to send a request upstream, whatever the scheme: plain HTTP through the lean keep-alive
pool (core.upstream.http1), HTTPS through httpx (TLS, certificate options). Both give back the same
small response interface, so the gateway relays either the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from core.config.schema import Timeouts
from core.upstream.http1 import Http1Pool, UpstreamConnectError, UpstreamProtocolError

__all__ = [
    "UpstreamClient",
    "UpstreamConnectError",
    "UpstreamProtocolError",
    "UpstreamResponse",
    "with_body_deadline",
]


class UpstreamResponse(Protocol):
    status: int
    headers: list[tuple[bytes, bytes]]  # lower-cased names

    def header(self, name: bytes) -> bytes | None: ...
    def iter_body(self) -> AsyncIterator[bytes]: ...
    async def aclose(self) -> None: ...


class _HttpxResponse:
    __slots__ = ("_response", "status", "headers", "_index")

    def __init__(self, response: httpx.Response):
        self._response = response
        self.status = response.status_code
        self.headers = [(k.lower(), v) for k, v in response.headers.raw]
        self._index = {k: v for k, v in self.headers}

    def header(self, name: bytes) -> bytes | None:
        return self._index.get(name)

    async def iter_body(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise UpstreamProtocolError(f"the upstream failed mid-response: {exc!r}") from None

    async def aclose(self) -> None:
        await self._response.aclose()


class _BodyDeadline:
    """A response whose body must be complete within `seconds` of its headers; late, it fails like a broken one."""

    __slots__ = ("_response", "_seconds", "headers", "status")

    def __init__(self, response: UpstreamResponse, seconds: float):
        self._response = response
        self._seconds = seconds
        self.status = response.status
        self.headers = response.headers

    def header(self, name: bytes) -> bytes | None:
        return self._response.header(name)

    async def iter_body(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._seconds
        body = self._response.iter_body()
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await anext(body)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise UpstreamProtocolError(
                        f"the response was not complete within {self._seconds:g}s (timeouts.body)"
                    ) from None
                yield chunk
        finally:
            await body.aclose()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        await self._response.aclose()


def with_body_deadline(response: UpstreamResponse, seconds: float) -> UpstreamResponse:
    """`response`, its body limited to `seconds` in all (`timeouts.body`; 0 leaves it unlimited)."""
    return _BodyDeadline(response, seconds) if seconds > 0 else response


class UpstreamClient:
    def __init__(self) -> None:
        self.http1 = Http1Pool()
        self._tls_clients: dict[tuple[str, bool, Timeouts], httpx.AsyncClient] = {}
        self._origins: dict[str, tuple[str, str, int, str]] = {}

    def _origin(self, base_url: str) -> tuple[str, str, int, str]:
        """(scheme, host, port, path prefix) of a base URL, parsed once."""
        cached = self._origins.get(base_url)
        if cached is None:
            parts = urlsplit(base_url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            cached = self._origins[base_url] = (parts.scheme, parts.hostname or "", port, parts.path.rstrip("/"))
        return cached

    async def send(
        self,
        method: str,
        base_url: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        timeouts: Timeouts,
        insecure: bool = False,
    ) -> UpstreamResponse:
        scheme, host, port, prefix = self._origin(base_url)
        if scheme == "http":
            return await self.http1.request(
                method, host, port, prefix + path, headers, body, connect_timeout=timeouts.connect or None
            )
        client = self._tls_client(base_url, insecure, timeouts)
        request = client.build_request(method, base_url + path, headers=headers, content=body)
        try:
            return _HttpxResponse(await client.send(request, stream=True))
        except httpx.ConnectError as exc:
            raise UpstreamConnectError(f"cannot connect to {base_url}: {exc}") from None
        except httpx.HTTPError as exc:
            raise UpstreamProtocolError(f"request to {base_url} failed: {exc!r}") from None

    def _tls_client(self, base_url: str, insecure: bool, timeouts: Timeouts) -> httpx.AsyncClient:
        scheme, host, port, _ = self._origin(base_url)
        key = (f"{scheme}://{host}:{port}", insecure, timeouts)
        client = self._tls_clients.get(key)
        if client is None:
            client = self._tls_clients[key] = httpx.AsyncClient(
                timeout=httpx.Timeout(connect=timeouts.connect or None, read=None, write=None, pool=None),
                verify=not insecure,
                trust_env=False,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            )
        return client

    async def aclose(self) -> None:
        await self.http1.aclose()
        for client in self._tls_clients.values():
            await client.aclose()
