"""The gateway's ASGI application: every inference endpoint, proxied byte for byte.

Path of one request:

1. read the body (bounded by the size limit: 413),
2. read the model from the JSON body, a multipart field or the query string (see endpoints.py),
3. resolve it — active profile pins, selectors, local model / alias / peer / remote API,
4. for a local model, ask the swap engine for a ready server (it may start, swap or queue),
5. stream the upstream response back as it arrives while a scraper reads usage and timing
   and a bounded capture keeps the first bytes of each body,
6. put one record on the request-log queue (never waits for the database).

A client that disconnects cancels the upstream request and frees its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from api.gateway.asgi import BodyTooLarge, ClientConnection, ClientDisconnected, Receive, Scope, Send
from api.gateway.endpoints import (
    ENDPOINTS,
    PASSTHROUGH,
    Endpoint,
    RequestFields,
    multipart_field,
    query_field,
    read_json_fields,
)
from api.gateway.errors import Family, GatewayError, error_body, sse_error_event
from core.capture import CaptureBuffer, build_capture
from core.catalog import known_model_ids, list_models
from core.keys import ApiKeyRecord, extract_presented_key
from core.policy import Decision, RequestFacts, RouteTarget, body_shape, inject_system_prompt
from core.presets import apply_sampling_overrides
from core.routing import Target, direct_target, needs_rewrite, path_for_base, resolve_target, rewrite_body
from core.selectors import ModelDisabled, NoSelectorTarget, apply_profile
from core.swap.capacity import CapacityError
from core.swap.engine import GatewayShuttingDown, Lease
from core.swap.scheduler import ConcurrencyLimitError, ModelUnloadedError, UnknownModelError
from core.tokens import UsageScraper
from core.upstream.client import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamResponse,
    with_body_deadline,
)
from core.upstream.process import UpstreamStartError
from core.vault import Redactor, VaultError, apply_bindings

if TYPE_CHECKING:
    from api.runtime import Runtime


HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"host", b"content-length", b"accept-encoding",
    }
)  # fmt: skip
CLIENT_AUTH = frozenset({b"authorization", b"x-api-key", b"x-switchyard-api-key"})
RESPONSE_DROP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"trailer", b"server", b"date"}
)
LOADING_STATE_PATHS = frozenset({"/v1/chat/completions"})
_HTTP_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DEFAULT_ALLOWED_HEADERS = b"Content-Type, Authorization, Accept, X-Requested-With"
GATEWAY_PATHS = frozenset(ENDPOINTS) | {"/v1/models"}

_decode_any = msgspec.json.Decoder().decode
_decode_fields = msgspec.json.Decoder(RequestFields).decode
_encode = msgspec.json.Encoder().encode


def split_upstream_path(runtime: Runtime, rest: str) -> tuple[str, str] | None:
    """Split `<model>/<path>` where model ids may contain slashes: the longest known prefix wins."""
    config = runtime.config
    profile = runtime.active_profile_config
    segments = rest.split("/")
    for end in range(len(segments), 0, -1):
        candidate = "/".join(segments[:end])
        known = (
            config.real_model_id(candidate) is not None
            or config.resolve_peer_model(candidate) is not None
            or (profile is not None and candidate in profile.pins)
        )
        if known:
            return candidate, "/" + "/".join(segments[end:])
    return None


def authenticate_request(runtime: Runtime, headers: dict[bytes, bytes]) -> tuple[ApiKeyRecord | None, bytes | None]:
    """The valid Switchyard key a request presents and the header that carried it, or (None, None).

    Keys are required when the require-auth setting is on, and always when the config lists `apiKeys`
    (as in llama-swap); then a missing or bad key raises a 401 GatewayError. When neither applies, a
    request without a valid key passes anonymously.
    """
    presented_headers = {}
    for name in (b"authorization", b"x-api-key", b"x-switchyard-api-key"):
        value = headers.get(name)
        if value is not None:
            presented_headers[name.decode()] = value.decode("latin-1")
    presented = extract_presented_key(presented_headers)
    required = runtime.live.require_auth or bool(runtime.config.api_keys)
    if presented is None:
        if required:
            raise GatewayError(
                401, "missing API key: send it as Authorization: Bearer <key> or x-api-key", code="missing_api_key"
            )
        return None, None
    result = runtime.access.key_table.authenticate(presented.key)
    if result.ok and result.record is not None:
        runtime.access.note_key_used(result.record.id)
        return result.record, presented.header.encode("latin-1")
    if required:
        raise GatewayError(401, result.message, code="invalid_api_key")
    return None, None


class GatewayApp:
    """Raw ASGI app for the inference endpoints (no framework on the hot path)."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @staticmethod
    def handles(path: str) -> bool:
        return path in GATEWAY_PATHS or path.startswith("/upstream/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "OPTIONS":
            await self._preflight(scope, send)
            return
        if path.startswith("/upstream/"):
            split = split_upstream_path(self.runtime, path[len("/upstream/") :])
            if split is None:
                await _send_error(send, Family.OPENAI, 404, "no model matches this /upstream/ path", "model_not_found")
                return
            await ProxyExchange(self.runtime, scope, receive, send, PASSTHROUGH, passthrough=split).run()
            return
        if path == "/v1/models":
            if method != "GET":
                await _send_error(send, Family.OPENAI, 405, "method not allowed; use GET")
                return
            await self._list_models(send)
            return
        endpoint = ENDPOINTS[path]
        if method not in endpoint.methods:
            allowed = ", ".join(sorted(endpoint.methods))
            await _send_error(send, endpoint.family, 405, f"method {method} not allowed; use {allowed}")
            return
        await ProxyExchange(self.runtime, scope, receive, send, endpoint).run()

    async def _preflight(self, scope: Scope, send: Send) -> None:
        """CORS preflight as llama-swap answers it: echo the origin and the requested header names that are
        valid HTTP tokens, or a default list when none were asked for."""
        headers = dict(scope["headers"])
        requested = headers.get(b"access-control-request-headers", b"")
        allowed = b", ".join(n for n in (p.strip() for p in requested.split(b",")) if _HTTP_TOKEN.fullmatch(n))
        out = [
            (b"access-control-allow-origin", headers.get(b"origin", b"*")),
            (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            (b"access-control-allow-headers", allowed if requested else _DEFAULT_ALLOWED_HEADERS),
            (b"access-control-max-age", b"86400"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": out})
        await send({"type": "http.response.body", "body": b""})

    async def _list_models(self, send: Send) -> None:
        runtime = self.runtime
        running = {m for m, state in runtime.engine.states().items() if state in ("ready", "starting")}
        body = _encode({"object": "list", "data": list_models(runtime.config, running)})
        await _send_json(send, 200, body)


class ProxyExchange(ClientConnection):
    """One proxied request/response, from body to log record."""

    #: who asks, for the swap engine's max-loaded cap (core.swap.capacity): API requests never evict under it
    origin = "api"

    def __init__(
        self,
        runtime: Runtime,
        scope: Scope,
        receive: Receive,
        send: Send,
        endpoint: Endpoint,
        *,
        passthrough: tuple[str, str] | None = None,
    ):
        self.runtime = runtime
        self.scope = scope
        self.receive = receive
        self._send = send
        self.endpoint = endpoint
        self.family = endpoint.family
        #: for /upstream/<model>/<path>: (model name, path to forward)
        self.passthrough = passthrough
        self.started = time.perf_counter()
        self.created_at = datetime.now(UTC)
        self.headers: dict[bytes, bytes] = dict(scope["headers"])
        self.status = 0
        self.model: str | None = None
        self.target: Target | None = None
        self.selector: tuple[str, str] | None = None  # (selector id, chosen target) to release
        self.streamed = False
        self.error: str | None = None
        self.scraper: UsageScraper | None = None
        self.request_size = 0
        self.response_size = 0
        self.response_headers: list[tuple[bytes, bytes]] = []
        live = runtime.live
        capture_limit = live.capture_max_bytes if live.capture_enabled else 0
        self.request_capture: CaptureBuffer | None = None
        self.response_capture: CaptureBuffer | None = None
        self._capture_limit = capture_limit
        self.response_started = False
        self.client_gone = False
        # access (issue 5)
        self.key: ApiKeyRecord | None = None
        self.key_header: bytes | None = None  # the header that carried a valid Switchyard key
        self.decision: Decision | None = None
        self.injected: tuple[str, ...] = ()
        self.redactor: Redactor | None = None
        self.rate_headers: dict[str, str] = {}
        self.attribution_body: dict[str, Any] | bytes | None = None

    async def run(self) -> None:
        lease: Lease | None = None
        watcher: asyncio.Task[None] | None = None
        try:
            body = await self._read_body()
            watcher = asyncio.create_task(self._watch_disconnect(asyncio.current_task()))  # type: ignore[arg-type]
            self._authenticate()
            body, target = self._route(body)
            if target.kind == "local":
                lease = await self._acquire_local(target)
            await self._forward(body, target, lease)
        except GatewayError as exc:
            self.status = exc.status
            self.error = exc.message
            if self.client_gone:
                pass
            elif not self.response_started:
                headers = exc.headers
                origin = self.text_headers.get("origin")
                if origin:  # a browser client may read the gateway's own errors (proxied answers carry the upstream's)
                    headers = {**(headers or {}), "access-control-allow-origin": origin}
                await _send_error(self._send, self.family, exc.status, exc.message, exc.code, headers)
            else:  # a loading stream is open: end it with an error event
                with contextlib.suppress(ClientDisconnected):
                    await self._send_body(sse_error_event(self.family, exc.message), more=False)
        except asyncio.CancelledError:
            if not self.client_gone:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            self.status = 499  # nginx's "client closed request"
            self.error = self.error or "client disconnected"
        except ClientDisconnected:
            self.status = 499
            self.error = self.error or "client disconnected"
        finally:
            if watcher is not None:
                watcher.cancel()
            if lease is not None:
                self.runtime.engine.release(lease)
            if self.selector is not None:
                self.runtime.selectors.release(*self.selector)
            self._record()

    # ------------------------------------------------------------------ input

    async def _read_body(self) -> bytes:
        limit = self.runtime.settings.max_body_bytes
        try:
            body = await self._receive_body(limit, self.headers.get(b"content-length"))
        except BodyTooLarge as exc:
            raise GatewayError(413, str(exc)) from None
        self.request_size = len(body)
        if self._capture_limit:
            content_type = self.headers.get(b"content-type", b"").decode("latin-1") or None
            self.request_capture = CaptureBuffer(self._capture_limit, content_type)
            self.request_capture.append(body)
        return body

    def _authenticate(self) -> None:
        """Find the Switchyard key the client presented; 401 when one is required and missing or bad."""
        key, header = authenticate_request(self.runtime, self.headers)
        if key is not None:
            self.key = key
            self.key_header = header

    def _route(self, body: bytes) -> tuple[bytes, Target]:
        """Find the model the request names, apply the key's limits and the routing policy, and pick the target.

        The body is decoded at most once more, only when something must change in it (filters, a rewritten
        model, sampling overrides, a key's system prompt), and encoded once.
        """
        source = self.endpoint.model_from
        fields = None
        if source == "path":
            assert self.passthrough is not None
            name: str | None = self.passthrough[0]
            self._refuse_other_model(body, name)
        elif source == "json":
            fields = read_json_fields(body)
            self.streamed = bool(fields.stream)
            name = fields.model
        elif source == "multipart":
            content_type = self.headers.get(b"content-type", b"").decode("latin-1")
            name = multipart_field(body, content_type, "model")
            self.streamed = multipart_field(body, content_type, "stream") in ("true", "1")
        else:
            name = query_field(self.scope.get("query_string") or b"", "model")
        if not name:
            where = {"json": "the JSON body", "multipart": "a form field", "query": "the query string"}[source]
            raise GatewayError(
                404,
                f"no model given in {where}; available models: {', '.join(known_model_ids(self.runtime.config))}",
                code="model_not_found",
            )
        self.model = name
        self._attribution_source(body, fields)
        key = self.key
        if key is not None:
            self._check_key(key, name)
        target, routed_name = self._apply_policy(name, allow_selectors=source != "path")
        self.target = target
        if source == "json":
            body = self._rewrite_json(body, target, routed_name)
        return body, target

    def _attribution_source(self, body: bytes, fields: RequestFields | None) -> None:
        wanted = self.runtime.access.attribution.body_fields
        if not wanted or fields is None:
            self.attribution_body = None
        elif wanted <= {"user", "metadata"}:
            self.attribution_body = {"user": fields.user, "metadata": fields.metadata}
        else:
            self.attribution_body = body  # a custom mapping reads other fields: decoded at record time

    def _check_key(self, key: ApiKeyRecord, model: str) -> None:
        if not key.allows_model(model):
            raise GatewayError(403, f"this API key may not use model {model!r}", code="model_not_allowed")
        if key.rpm_limit or key.tpm_limit:
            decision = self.runtime.access.rate_limiter.check(key.id, rpm=key.rpm_limit, tpm=key.tpm_limit)
            self.rate_headers = decision.headers()
            if not decision.allowed:
                raise GatewayError(429, decision.message, code="rate_limit_exceeded", headers=self.rate_headers)

    def _apply_policy(self, name: str, *, allow_selectors: bool) -> tuple[Target, str]:
        """Evaluate routing rules; returns the target and the model name after any rewrite."""
        policy = self.runtime.access.policy
        if not len(policy):
            return self._resolve(name, allow_selectors=allow_selectors), name
        key = self.key
        facts = RequestFacts(
            path=self.scope["path"], model=name, key_id=key.id if key else None, headers=self.text_headers,
            body_size=self.request_size,
        )  # fmt: skip
        decision = self.decision = policy.evaluate(facts)
        if decision.injects_credentials and key is None:
            raise GatewayError(
                401,
                "this route injects stored credentials and needs a valid Switchyard API key",
                code="missing_api_key",
            )
        if decision.action == "reject":
            raise GatewayError(
                decision.reject_status or 403, decision.reject_message or "rejected by policy", code="policy_rejected"
            )
        routed = decision.model or name
        if decision.action == "route" and decision.target is not None:
            return self._policy_target(routed, decision.target), routed
        return self._resolve(routed, allow_selectors=allow_selectors), routed

    def _policy_target(self, name: str, route: RouteTarget) -> Target:
        config = self.runtime.config
        if route.kind == "upstream":
            return direct_target(
                name, route.base_url, model=route.model, pass_auth=route.auth_passthrough, insecure=route.insecure_tls
            )
        wanted = route.model or (route.value if route.kind == "local" else name)
        if route.kind == "peer":
            peer = config.peers.get(route.value)
            target = resolve_target(config, f"{route.value}/{wanted}") if peer is not None else None
            if target is not None and (route.auth_passthrough or route.insecure_tls):
                # the rule can turn passthrough and skipped verification on for this route; the peer's own
                # passAuth / insecure settings stay on when set
                target = replace(
                    target,
                    pass_auth=target.pass_auth or route.auth_passthrough,
                    insecure=target.insecure or route.insecure_tls,
                )
        else:
            target = resolve_target(config, wanted)
        if target is None:
            raise GatewayError(
                502,
                f"routing rule {self.decision.rule_id if self.decision else ''} points at {route.kind} {route.value!r}, which is not configured",
            )
        return target

    def _rewrite_json(self, body: bytes, target: Target, routed_name: str) -> bytes:
        shape = body_shape(self.scope["path"])
        overrides = self.runtime.access.sampling_overrides.get(target.model_id) if shape else None
        preset = self.runtime.library.sampling_for(target.model_id) if target.kind == "local" else None
        prompt = self.key.system_prompt if self.key is not None and shape else None
        rewrite = needs_rewrite(target) or routed_name != self.model
        if not (rewrite or preset or (overrides and not overrides.empty) or prompt):
            return body
        data = _decode_any(body)
        if not isinstance(data, dict):
            return body
        if rewrite:
            rewrite_body(data, target)
        if preset:  # a library model's preset first; an admin's per-model override wins over it
            apply_sampling_overrides(data, preset)
        if overrides is not None and shape is not None:
            overrides.apply(data, shape)
        if prompt and shape is not None:
            inject_system_prompt(data, prompt, shape)
        return _encode(data)

    def _refuse_other_model(self, body: bytes, served: str) -> None:
        """`/upstream/<model>/...` with a JSON body naming another model: refused before anything starts."""
        if not body.lstrip().startswith(b"{"):
            return
        try:
            named = _decode_fields(body).model
        except msgspec.MsgspecError:
            return
        if not named or named == served:
            return
        config = self.runtime.config
        real = config.real_model_id(served)
        model = config.models.get(real) if real else None
        if real is not None and (config.real_model_id(named) == real or (model and named == model.use_model_name)):
            return
        raise GatewayError(
            400,
            f"this path serves model {served!r} but the request body names {named!r}; "
            f"send it to /upstream/{named}/... or /v1/...",
            code="model_mismatch",
        )

    def _resolve(self, name: str, *, allow_selectors: bool) -> Target:
        runtime = self.runtime
        config = runtime.config
        try:
            routed = apply_profile(runtime.active_profile_config, name)
        except ModelDisabled as exc:
            raise GatewayError(404, str(exc), code="model_disabled") from None
        if allow_selectors and runtime.selectors.is_selector(routed):
            try:
                chosen = runtime.selectors.choose(routed, runtime.engine.states())
            except NoSelectorTarget as exc:
                raise GatewayError(503, str(exc), code="no_selector_target") from None
            self.selector = (routed, chosen)
            routed = chosen
        target = resolve_target(config, routed)
        if target is None:
            raise GatewayError(
                404,
                f"model {name!r} not found; available models: {', '.join(known_model_ids(config))}",
                code="model_not_found",
            )
        return target

    # ---------------------------------------------------------------- acquire

    async def _acquire_local(self, target: Target) -> Lease | None:
        engine = self.runtime.engine
        assert target.model is not None
        if self.passthrough is not None and self._ignored_passthrough_path():
            # ignored paths (static assets, UI polling) never trigger a swap
            if engine.state_of(target.model_id) != "ready":
                raise GatewayError(503, f"model {target.model_id} is not loaded (path ignored by upstream.ignorePaths)")
            return None
        if (
            self.streamed
            and target.model.send_loading_state
            and self.scope["path"] in LOADING_STATE_PATHS
            and engine.state_of(target.model_id) != "ready"
        ):
            return await self._acquire_with_loading_stream(target)
        return await self._acquire(target)

    def _ignored_passthrough_path(self) -> bool:
        assert self.passthrough is not None
        rest = self.passthrough[1]
        return any(pattern.search(rest) for pattern in self.runtime.config.upstream_ignore_paths)

    async def _acquire(self, target: Target) -> Lease:
        try:
            return await self.runtime.engine.acquire(target.model_id, origin=self.origin)
        except CapacityError as exc:
            raise GatewayError(503, str(exc), code="max_loaded", headers={"retry-after": "5"}) from None
        except ConcurrencyLimitError as exc:
            raise GatewayError(429, str(exc), code="concurrency_limit", headers={"retry-after": "1"}) from None
        except UpstreamStartError as exc:
            raise GatewayError(502, str(exc), code="upstream_start_failed") from None
        except (GatewayShuttingDown, ModelUnloadedError) as exc:
            raise GatewayError(503, str(exc), code="unavailable") from None
        except UnknownModelError as exc:
            raise GatewayError(404, str(exc), code="model_not_found") from None

    async def _acquire_with_loading_stream(self, target: Target) -> Lease:
        """Open the SSE stream now and show load progress in the reasoning field (llama-swap's sendLoadingState)."""
        await self._send_start(200, [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                                     (b"x-accel-buffering", b"no")])  # fmt: skip
        self.status = 200
        started = time.perf_counter()
        await self._send_body(loading_event(f"Switchyard is loading model {target.model_id}\n"), more=True)

        async def tick() -> None:
            while True:
                await asyncio.sleep(0.75)
                await self._send_body(loading_event("."), more=True)

        ticker = asyncio.create_task(tick())
        try:
            lease = await self._acquire(target)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError, ClientDisconnected):
                await ticker
        await self._send_body(loading_event(f"\nDone! ({time.perf_counter() - started:.2f}s)\n\n"), more=True)
        return lease

    # ---------------------------------------------------------------- forward

    def _outbound(self, target: Target, lease: Lease | None) -> tuple[str, str, list[tuple[bytes, bytes]]]:
        """(base URL, path with query, headers) of the upstream request."""
        scope = self.scope
        if target.pass_auth:
            # the client's own credentials go through; a Switchyard key never does
            strip = HOP_BY_HOP | {b"x-switchyard-api-key"}
            if self.key_header is not None:
                strip = strip | {self.key_header}
        else:
            strip = HOP_BY_HOP | CLIENT_AUTH
        headers: list[tuple[bytes, bytes]] = [(k, v) for k, v in scope["headers"] if k not in strip]
        headers.append((b"accept-encoding", b"identity"))
        if target.api_key and not target.pass_auth:
            headers.append((b"authorization", b"Bearer " + target.api_key.encode()))
            headers.append((b"x-api-key", target.api_key.encode()))
        query = scope.get("query_string")
        path = self._upstream_path()
        if query:
            path += "?" + query.decode("latin-1")
        if target.kind == "local":
            assert target.model is not None
            return (lease.base_url if lease is not None else target.model.proxy), path, headers
        return target.base_url, path_for_base(target.base_url, path), headers

    def _inject_credentials(
        self, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """Apply the routing decision's credential bindings (stored secrets → outbound header or placeholder)."""
        decision = self.decision
        if decision is None or not decision.bindings:
            return headers, body
        try:
            result = apply_bindings(headers, body, decision.bindings, self.runtime.access.resolve_secret)
        except VaultError as exc:
            raise GatewayError(503, f"credential injection failed: {exc}", code="credential_unavailable") from None
        self.injected = result.injected
        self.redactor = result.redactor
        for slug in result.injected:
            self.runtime.metrics.credential_injections.labels(credential=slug).inc()
        return result.headers, result.body

    def _upstream_path(self) -> str:
        """The path the upstream receives (subclasses that translate a request send it elsewhere)."""
        return self.passthrough[1] if self.passthrough is not None else self.scope["path"]

    async def _forward(self, body: bytes, target: Target, lease: Lease | None) -> None:
        base, path, headers = self._outbound(target, lease)
        headers, body = self._inject_credentials(headers, body)
        header_timeout = target.timeouts.response_header or self.runtime.settings.upstream_header_timeout
        try:
            async with asyncio.timeout(header_timeout if header_timeout > 0 else None):
                response = await self.runtime.upstreams.send(
                    self.scope["method"], base, path, headers, body, timeouts=target.timeouts, insecure=target.insecure
                )
        except TimeoutError:
            raise GatewayError(504, f"upstream sent no response headers within {header_timeout:g}s") from None
        except (UpstreamConnectError, UpstreamProtocolError) as exc:
            raise GatewayError(502, f"could not reach the upstream for model {target.display_id}: {exc}") from None
        try:
            await self._relay(with_body_deadline(response, target.timeouts.body))
        finally:
            await response.aclose()

    async def _relay(self, response: UpstreamResponse) -> None:
        content_type = (response.header(b"content-type") or b"").decode("latin-1")
        encoding_header = response.header(b"content-encoding")
        encoding = encoding_header.decode("latin-1") if encoding_header else None
        scraper = self.scraper = UsageScraper(content_type, started_at=self.started, content_encoding=encoding)
        capture = None
        if self._capture_limit:
            capture = self.response_capture = CaptureBuffer(self._capture_limit, content_type or None, encoding)
        self.response_headers = [(k, v) for k, v in response.headers if k not in RESPONSE_DROP]
        if self.response_started:
            # a loading stream already sent headers: only an SSE body can follow
            if response.status >= 400:
                text = b"".join([c async for c in response.iter_body()])[:500].decode("utf-8", "replace")
                if self.redactor:  # the upstream may echo an injected credential
                    text = self.redactor.redact(text)
                raise GatewayError(response.status, f"upstream answered {response.status}: {text}")
        else:
            self.status = response.status
            headers = self.response_headers
            is_stream = "text/event-stream" in content_type or response.header(b"content-length") is None
            if is_stream and response.header(b"x-accel-buffering") is None:
                headers = [*headers, (b"x-accel-buffering", b"no")]
            if self.rate_headers:
                headers = [*headers, *((k.encode(), v.encode()) for k, v in self.rate_headers.items())]
            await self._send_start(self.status, headers)
        try:
            async for chunk in response.iter_body():
                scraper.feed(chunk)
                self.response_size += len(chunk)
                if capture is not None:
                    capture.append(chunk)
                await self._send_body(chunk, more=True)
        except UpstreamProtocolError as exc:
            # the model server died or closed the connection mid-response
            self.error = f"upstream failed mid-response: {exc}"
            if "text/event-stream" in content_type:
                with contextlib.suppress(ClientDisconnected):
                    await self._send_body(sse_error_event(self.family, "the model server failed mid-stream"), more=True)
        await self._send_body(b"", more=False)
        if self.status >= 400 and not self.error:
            usage = scraper.finish()
            self.error = usage.error_message or f"upstream answered {self.status}"

    # ----------------------------------------------------------------- record

    def _record(self) -> None:
        duration_ms = (time.perf_counter() - self.started) * 1000
        usage = self.scraper.finish() if self.scraper is not None else None
        client = self.scope.get("client")
        target = self.target
        cost = None
        if usage is not None and target is not None and target.kind != "local":
            cost = self.runtime.pricing.estimate(target.upstream_model_name, usage)
        capture = None
        if self.request_capture is not None:
            capture = build_capture(
                request_headers=self.scope["headers"],
                request_body=self.request_capture,
                response_headers=self.response_headers,
                response_body=self.response_capture,
                redact_values=self.redactor.values if self.redactor else (),
            )
        key = self.key
        if key is not None and usage is not None and usage.total_tokens and (key.tpm_limit or key.rpm_limit):
            self.runtime.access.rate_limiter.record_tokens(key.id, usage.total_tokens)
        attribution = self.runtime.access.attribution.extract(self.text_headers, self.attribution_body)
        decision = self.decision
        record = {
            "created_at": self.created_at,
            "method": self.scope["method"],
            "path": self.scope["path"],
            "model": self.model,
            "upstream_model": target.display_id if target else None,
            "status_code": self.status,
            "duration_ms": duration_ms,
            "ttft_ms": usage.ttft_ms if usage else None,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "cached_tokens": usage.cached_tokens if usage else None,
            "cache_creation_tokens": usage.cache_creation_tokens if usage else None,
            "reasoning_tokens": usage.reasoning_tokens if usage else None,
            "tokens_per_second": usage.tokens_per_second if usage else None,
            "streamed": self.streamed,
            "client_addr": client[0] if client else None,
            # an upstream's error text may echo an injected credential
            "error": self.redactor.redact(self.error) if self.error and self.redactor else self.error,
            "request_bytes": self.request_size,
            "response_bytes": self.response_size,
            # a local model costs nothing per token; remote ones are priced from the catalog
            "cost_usd": cost.usd if cost else (0.0 if target and target.kind == "local" else None),
            "cost_known": cost.known if cost else bool(target and target.kind == "local"),
            "capture": capture,
            "api_key_id": key.id if key else None,
            "api_key_name": key.name if key else None,
            "client_name": attribution.client,
            "end_user": attribution.end_user,
            "session_id": attribution.session,
            "policy_rule_id": decision.rule_id if decision else None,
            "policy_action": decision.action if decision and decision.rule_id else None,
            "routed_model": decision.model if decision and decision.rewritten else None,
            "credentials_used": list(self.injected) or None,
        }
        self.runtime.request_completed(record)


def loading_event(text: str) -> bytes:
    return b"data: " + _encode({"choices": [{"index": 0, "delta": {"reasoning_content": text}}]}) + b"\n\n"


async def _send_json(send: Send, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    for name, value in (extra or {}).items():
        headers.append((name.encode(), value.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(
    send: Send,
    family: Family,
    status: int,
    message: str,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    with contextlib.suppress(Exception):
        await _send_json(send, status, error_body(family, status, message, code), headers)
