"""A lean HTTP/1.1 client for plain-HTTP upstreams (local model servers, http:// peers).

Why not httpx here: the gateway's hot path forwards every inference request to a model server on
loopback. Profiling showed httpcore's connection pool spending most of the gateway's CPU time per
request (each request scans every pooled connection and probes its socket for readability), several
milliseconds per request at 32 concurrent connections. This client keeps one idle stack per
(host, port), writes the request head and body without copying the body, parses only the response
head, and hands the body on as it arrives (de-chunked), so an SSE event is forwarded the moment it is
read. HTTPS upstreams (remote APIs) still go through httpx, which handles TLS and its many options.

Connections are reused only when a response was read to its end and neither side asked to close.
A request that fails on a reused connection before any response byte arrived (the server closed an
idle keep-alive connection at the same moment) is retried once on a fresh connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

_READ_SIZE = 65536
_HEAD_LIMIT = 1024 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


class UpstreamProtocolError(Exception):
    """The upstream sent something that is not HTTP/1.1, or closed the connection mid-response."""


class UpstreamConnectError(Exception):
    """The upstream could not be reached."""


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reused: bool = False
    idle_since: float = field(default_factory=time.monotonic)

    def usable(self, idle_timeout: float) -> bool:
        if self.writer.is_closing() or self.reader.at_eof() or self.reader._buffer:  # noqa: SLF001 - stray bytes: unusable
            return False
        return time.monotonic() - self.idle_since < idle_timeout

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Http1Response:
    """Status and headers of an upstream response; the body is read with :meth:`iter_body`."""

    __slots__ = ("_conn", "_done", "_pool", "_key", "_remaining", "_mode", "_keep_alive", "status", "headers", "_index")

    def __init__(self, pool: Http1Pool, key: tuple[str, int], conn: _Connection, status: int,
                 headers: list[tuple[bytes, bytes]], mode: str, length: int, keep_alive: bool):  # fmt: skip
        self._pool = pool
        self._key = key
        self._conn = conn
        self.status = status
        self.headers = headers  # as received: (lower-cased name, value)
        self._mode = mode  # "length" | "chunked" | "eof" | "none"
        self._remaining = length
        self._keep_alive = keep_alive
        self._done = mode == "none" or (mode == "length" and length == 0)
        self._index: dict[bytes, bytes] | None = None

    def header(self, name: bytes) -> bytes | None:
        if self._index is None:
            self._index = {k: v for k, v in self.headers}
        return self._index.get(name)

    async def iter_body(self) -> AsyncIterator[bytes]:
        """Body data as it arrives (chunked framing removed)."""
        reader = self._conn.reader
        if self._mode == "length":
            while self._remaining > 0:
                data = await reader.read(min(self._remaining, _READ_SIZE))
                if not data:
                    raise UpstreamProtocolError("the upstream closed the connection mid-response")
                self._remaining -= len(data)
                yield data
        elif self._mode == "chunked":
            while True:
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    raise UpstreamProtocolError("the upstream closed the connection mid-response")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise UpstreamProtocolError(f"bad chunk size line {line[:40]!r}") from None
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass  # trailers: not forwarded
                    break
                while size > 0:
                    data = await reader.read(min(size, _READ_SIZE))
                    if not data:
                        raise UpstreamProtocolError("the upstream closed the connection mid-response")
                    size -= len(data)
                    yield data
                if await reader.readexactly(2) != b"\r\n":
                    raise UpstreamProtocolError("bad chunk terminator")
        elif self._mode == "eof":
            while True:
                data = await reader.read(_READ_SIZE)
                if not data:
                    break
                yield data
            self._keep_alive = False
        self._done = True

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_body()])

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Give the connection back when the body was read completely and may be reused, else close it."""
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if conn is None:
            return
        if self._done and self._keep_alive:
            self._pool._release(self._key, conn)  # noqa: SLF001
        else:
            conn.close()


class Http1Pool:
    """Keep-alive connections per (host, port) for plain HTTP/1.1 upstreams."""

    def __init__(self, *, max_idle_per_host: int = 128, idle_timeout: float = 30.0):
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}
        self._max_idle = max_idle_per_host
        self._idle_timeout = idle_timeout
        self._closed = False

    async def request(
        self,
        method: str,
        host: str,
        port: int,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        connect_timeout: float | None = 30.0,
    ) -> Http1Response:
        """Send a request and return once the response head arrived. Raises UpstreamConnectError/ProtocolError."""
        key = (host, port)
        head = _request_head(
            method, host, port, target, headers, len(body) if body or method in ("POST", "PUT", "PATCH") else None
        )
        for attempt in (0, 1):
            conn = self._checkout(key) if attempt == 0 else None
            if conn is None:
                conn = await self._connect(host, port, connect_timeout)
            try:
                conn.writer.writelines((head, body) if body else (head,))
                await conn.writer.drain()
                return await self._read_head(key, conn, method)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                conn.close()
                if conn.reused and attempt == 0 and not getattr(exc, "partial", b""):
                    continue  # the idle connection was closed under us: once more on a new one
                raise UpstreamProtocolError(f"the upstream closed the connection: {exc!r}") from None
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")

    async def _connect(self, host: str, port: int, timeout: float | None) -> _Connection:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=_HEAD_LIMIT), timeout)
        except TimeoutError:
            raise UpstreamConnectError(f"connect to {host}:{port} timed out after {timeout:g}s") from None
        except OSError as exc:
            raise UpstreamConnectError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        return _Connection(reader, writer)

    def _checkout(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable(self._idle_timeout):
                conn.reused = True
                return conn
            conn.close()
        return None

    def _release(self, key: tuple[str, int], conn: _Connection) -> None:
        if self._closed:
            conn.close()
            return
        idle = self._idle.setdefault(key, deque())
        if len(idle) >= self._max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _read_head(self, key: tuple[str, int], conn: _Connection, method: str) -> Http1Response:
        reader = conn.reader
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise UpstreamProtocolError("the upstream's response head is larger than 1 MiB") from None
            lines = raw[:-4].split(b"\r\n")
            status_line = lines[0]
            if not status_line.startswith(b"HTTP/1."):
                raise UpstreamProtocolError(f"not an HTTP/1.x response: {status_line[:60]!r}")
            try:
                status = int(status_line[9:12])
            except ValueError:
                raise UpstreamProtocolError(f"bad status line {status_line[:60]!r}") from None
            if 100 <= status < 200:
                continue  # 100 Continue and friends: the real response follows
            break
        headers = []
        length = -1
        chunked = False
        keep_alive = status_line[5:8] == b"1.1"
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            name = name.strip().lower()
            value = value.strip()
            headers.append((name, value))
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                lowered = value.lower()
                if b"close" in lowered:
                    keep_alive = False
                elif b"keep-alive" in lowered:
                    keep_alive = True
        if method == "HEAD" or status in _NO_BODY_STATUSES:
            mode = "none"
        elif chunked:
            mode = "chunked"
        elif length >= 0:
            mode = "length"
        else:
            mode = "eof"
        return Http1Response(self, key, conn, status, headers, mode, max(length, 0), keep_alive)

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()


def _request_head(method: str, host: str, port: int, target: str, headers: list[tuple[bytes, bytes]],
                  length: int | None) -> bytes:  # fmt: skip
    parts = [f"{method} {target} HTTP/1.1\r\nhost: {host}:{port}\r\n".encode("latin-1")]
    for name, value in headers:
        parts.append(name + b": " + value + b"\r\n")
    if length is not None:
        parts.append(b"content-length: " + str(length).encode() + b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)
