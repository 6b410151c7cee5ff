"""MCP relays: ``/mcp-relays/{slug}[/...]`` reverse-proxies an MCP Streamable HTTP server with credentials injected.

One exchange, start to end:

1. authenticate the Switchyard key sent as ``x-switchyard-api-key`` (401 without a valid one; the ``Authorization``
   header is left for the MCP server) and check the key may use the relay (403; an unknown or disabled relay is
   404);
2. read the request body (bounded by ``SWITCHYARD_MAX_BODY_BYTES``) and apply the relay's credential bindings
   (``core.vault.apply_bindings``): a header set from a stored credential, or a ``{{switchyard:credential:..}}``
   placeholder the client sent replaced by its value;
3. forward the request (POST JSON-RPC, GET for the server's event stream, DELETE to end a session; the
   ``Mcp-Session-Id`` and protocol headers travel both ways untouched) and stream the response back as it arrives:
   a JSON body or an SSE stream, unbuffered;
4. record one request-log row: metadata only (path, relay slug as ``model``, status, duration, key) for a
   success, plus a bounded, redacted capture (``core.capture``) for a failure.

Injected values never leave towards the client or the log: when credentials were injected, the response (headers
and body) passes through a streaming redactor that replaces them with ``[redacted]``. It releases the body line
by line, so every SSE event still goes out as soon as it is complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import msgspec

from api.gateway.asgi import BodyTooLarge, ClientConnection, ClientDisconnected, Receive, Scope, Send
from core.capture import CaptureBuffer, build_capture, compress
from core.keys import RELAY_KEY_HEADER, ApiKeyRecord, extract_presented_key
from core.vault import NO_REDACTION, InjectionResult, Redactor, VaultError, VaultKeyError, apply_bindings

if TYPE_CHECKING:
    from api.access_store import RelayRecord
    from api.runtime import Runtime


RELAY_PREFIX = "/mcp-relays/"
REQUEST_DROP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"host", b"content-length", b"accept-encoding", RELAY_KEY_HEADER.encode(),
    }
)  # fmt: skip
RESPONSE_DROP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"trailer", b"server", b"date"}
)
#: a body with no line break is still released once this much is pending (less the longest secret)
MAX_PENDING_BYTES = 64 * 1024
_encode = msgspec.json.Encoder().encode


class RelayError(Exception):
    """Answered to the client as a JSON-RPC error object with HTTP `status`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def split_relay_path(path: str) -> tuple[str, str]:
    """``/mcp-relays/github/x/y`` → ``("github", "/x/y")``; ``/mcp-relays/github`` → ``("github", "")``."""
    rest = path[len(RELAY_PREFIX) :] if path.startswith(RELAY_PREFIX) else ""
    slug, sep, tail = rest.partition("/")
    return slug, (sep + tail) if sep else ""


def upstream_url(base: str, rest: str, query: bytes) -> str:
    """The relay's upstream URL with the client's subpath and query appended."""
    url = base.rstrip("/") + rest if rest else base
    if query:
        url += ("&" if "?" in url else "?") + query.decode("latin-1")
    return url


def error_body(message: str) -> bytes:
    """A JSON-RPC error object (what MCP clients parse), with no request id: the request was not processed."""
    return _encode({"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": message}})


class StreamRedactor:
    """Replaces injected secrets in a response body that arrives in chunks, without holding up whole events.

    Text up to the last line break is released at once (a header-injected secret never contains a line break,
    and a body-injected one sits JSON-escaped); the rest waits for the next chunk. When more than
    :data:`MAX_PENDING_BYTES` is pending without a line break, all but the last ``longest secret - 1`` bytes are
    released, extended past any secret that straddles that point.
    """

    def __init__(self, redactor: Redactor):
        self._redactor = redactor
        variants = set(redactor.values) | {msgspec.json.encode(v).decode()[1:-1] for v in redactor.values}
        ordered = sorted((v.encode() for v in variants if v), key=len, reverse=True)
        self._pattern = re.compile(b"|".join(map(re.escape, ordered))) if ordered else None
        self._hold = max((len(v) for v in ordered), default=1) - 1
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) > MAX_PENDING_BYTES:
            cut = len(data) - self._hold
            if self._pattern is not None:
                for match in self._pattern.finditer(data):
                    if match.start() < cut < match.end():
                        cut = match.end()
                        break
        self._pending = data[cut:]
        return self._redactor.redact_bytes(data[:cut]) if cut else b""

    def finish(self) -> bytes:
        data, self._pending = self._pending, b""
        return self._redactor.redact_bytes(data)


class McpRelayApp:
    """Raw ASGI app for ``/mcp-relays/*``; the relay table and keys come from ``runtime.access``."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @staticmethod
    def handles(path: str) -> bool:
        return path.startswith(RELAY_PREFIX)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await RelayExchange(self.runtime, scope, receive, send).run()


class RelayExchange(ClientConnection):
    """One relayed request and its response, from authentication to the log record."""

    def __init__(self, runtime: Runtime, scope: Scope, receive: Receive, send: Send):
        self.runtime = runtime
        self.scope = scope
        self.receive = receive
        self._send = send
        self.started = time.perf_counter()
        self.created_at = datetime.now(UTC)
        self.slug, self.rest = split_relay_path(scope["path"])
        self.status = 0
        self.error: str | None = None
        self.key: ApiKeyRecord | None = None
        self.injection: InjectionResult | None = None
        self.redactor: Redactor = NO_REDACTION
        self.body = b""
        self.request_bytes = 0
        self.response_bytes = 0
        self.streamed = False
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.response_capture: CaptureBuffer | None = None
        self.response_started = False
        self.finished = False
        self.client_gone = False

    async def run(self) -> None:
        watcher: asyncio.Task[None] | None = None
        try:
            relay = self._authorize()
            self.body = await self._read_body()
            watcher = asyncio.create_task(self._watch_disconnect(asyncio.current_task()))  # type: ignore[arg-type]
            await self._forward(relay)
        except RelayError as exc:
            self.status = exc.status
            self.error = self.redactor.redact(exc.message)
            if not self.response_started and not self.client_gone:
                with contextlib.suppress(Exception):
                    await self._respond_error(exc.status, self.error)
        except asyncio.CancelledError:
            if not self.client_gone:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            self._client_closed()
        except ClientDisconnected:
            self._client_closed()
        finally:
            if watcher is not None:
                watcher.cancel()
            self._record()

    def _client_closed(self) -> None:
        # a client ending an open event stream is how such a stream normally ends: keep the upstream's status
        if not self.response_started:
            self.status = 499
            self.error = "client disconnected"

    # ------------------------------------------------------------------ access

    def _authorize(self) -> RelayRecord:
        access = self.runtime.access
        presented = extract_presented_key(self.text_headers, (RELAY_KEY_HEADER,))
        auth = access.key_table.authenticate(presented.key if presented else None)
        if not auth.ok:
            message = auth.message
            if presented is None:
                message = f"an MCP relay needs a Switchyard API key in the {RELAY_KEY_HEADER} header"
            raise RelayError(401, message)
        key = self.key = auth.record
        assert key is not None
        access.note_key_used(key.id)
        relay = access.relays.get(self.slug)
        if relay is None or not relay.enabled:
            raise RelayError(404, f"no MCP relay {self.slug!r}")
        if not key.allows_relay(self.slug):
            raise RelayError(403, f"this API key is not allowed to use the MCP relay {self.slug!r}")
        return relay

    async def _read_body(self) -> bytes:
        limit = self.runtime.settings.max_body_bytes
        try:
            body = await self._receive_body(limit)
        except BodyTooLarge as exc:
            raise RelayError(413, str(exc)) from None
        self.request_bytes = len(body)
        return body

    # ------------------------------------------------------------------ forward

    async def _forward(self, relay: RelayRecord) -> None:
        headers = [(name, value) for name, value in self.scope["headers"] if name not in REQUEST_DROP]
        headers.append((b"accept-encoding", b"identity"))
        try:
            injection = apply_bindings(headers, self.body, relay.bindings, self.runtime.access.resolve_secret)
        except VaultKeyError as exc:
            raise RelayError(503, f"MCP relay {self.slug!r} cannot inject its credentials: {exc}") from None
        except VaultError as exc:
            raise RelayError(502, f"MCP relay {self.slug!r} cannot inject its credentials: {exc}") from None
        self.injection = injection
        self.redactor = injection.redactor
        url = upstream_url(relay.upstream_url, self.rest, self.scope.get("query_string") or b"")
        client = self.runtime.http
        request = client.build_request(self.scope["method"], url, headers=injection.headers, content=injection.body)
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise RelayError(502, f"could not reach the MCP server of relay {self.slug!r}: {exc!r}") from None
        try:
            await self._relay(response)
        finally:
            await response.aclose()

    async def _relay(self, response: httpx.Response) -> None:
        redacting = bool(self.redactor)
        content_type = response.headers.get("content-type", "")
        self.streamed = "text/event-stream" in content_type
        self.status = response.status_code
        drop = RESPONSE_DROP | ({b"content-length", b"content-encoding"} if redacting else frozenset())
        headers = [(name, value) for name, value in response.headers.raw if name.lower() not in drop]
        if redacting:
            headers = [(name, self.redactor.redact_bytes(value)) for name, value in headers]
        if self.streamed and "x-accel-buffering" not in response.headers:
            headers.append((b"x-accel-buffering", b"no"))
        self.response_headers = headers
        if self.status >= 400:
            self.response_capture = CaptureBuffer(
                self.runtime.live.capture_max_bytes, content_type or None, response.headers.get("content-encoding")
            )
        await self._send_start(self.status, headers)
        stream_redactor = StreamRedactor(self.redactor) if redacting else None
        chunks = response.aiter_bytes() if redacting else response.aiter_raw()
        try:
            async for chunk in chunks:
                self.response_bytes += len(chunk)
                if self.response_capture is not None:
                    self.response_capture.append(chunk)
                if stream_redactor is not None:
                    chunk = stream_redactor.feed(chunk)
                    if not chunk:
                        continue
                await self._send_body(chunk, more=True)
        except httpx.HTTPError as exc:
            self.error = self.redactor.redact(f"MCP server failed mid-response: {exc!r}")
        tail = stream_redactor.finish() if stream_redactor is not None else b""
        self.finished = True
        await self._send_body(tail, more=False)
        if self.status >= 400 and self.error is None:
            self.error = f"MCP server answered {self.status}"

    async def _respond_error(self, status: int, message: str) -> None:
        body = error_body(message)
        await self._send_start(
            status, [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        )
        self.finished = True
        await self._send_body(body, more=False)

    # ------------------------------------------------------------------ record

    def _record(self) -> None:
        failed = self.status >= 400 or self.error is not None and self.status != 499
        client = self.scope.get("client")
        attribution = self.runtime.access.attribution.extract(self.text_headers, self.body)
        record = {
            "created_at": self.created_at,
            "method": self.scope["method"],
            "path": self.scope["path"],
            "model": self.slug or None,
            "upstream_model": None,
            "status_code": self.status,
            "duration_ms": (time.perf_counter() - self.started) * 1000,
            "ttft_ms": None,
            "prompt_tokens": None,
            "completion_tokens": None,
            "cached_tokens": None,
            "tokens_per_second": None,
            "streamed": self.streamed,
            "client_addr": client[0] if client else None,
            "error": self.error,
            "request_bytes": self.request_bytes,
            "response_bytes": self.response_bytes,
            "api_key_id": self.key.id if self.key else None,
            "api_key_name": self.key.name if self.key else None,
            "client_name": attribution.client,
            "end_user": attribution.end_user,
            "session_id": attribution.session,
            "credentials_used": list(self.injection.injected) if self.injection and self.injection.injected else None,
            "capture": self._capture() if failed else None,
        }
        self.runtime.request_completed(record)

    def _capture(self) -> bytes | None:
        live = self.runtime.live
        if not live.capture_enabled:
            return None
        headers = dict(self.scope["headers"])
        request_body = CaptureBuffer(
            live.capture_max_bytes,
            _header(headers, b"content-type"),
            _header(headers, b"content-encoding"),
        )
        request_body.append(self.body)
        capture = build_capture(
            request_headers=self.scope["headers"],
            request_body=request_body,
            response_headers=self.response_headers,
            response_body=self.response_capture,
            redact_values=self.redactor.values,
        )
        return compress(capture)


def _header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value is not None else None
