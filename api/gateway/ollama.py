"""The Ollama API on the gateway: ``/ollama/api/*`` on the main port (and ``/api/*`` on the Ollama listener).

Ollama clients (Open WebUI, the ``ollama`` libraries, editors) get every model Switchyard serves. Requests are
translated by :mod:`core.ollama` to the OpenAI-shaped API the model servers speak and proxied by
:class:`OllamaExchange`, a :class:`api.gateway.proxy.ProxyExchange` whose routing and relay translate:

* the model name (``:latest`` dropped) is resolved like any other (profiles, selectors, aliases, peers);
* local models start on demand through the swap engine; the Ollama API may evict models API clients loaded
  when the max-loaded cap is full (``origin = "ollama"``, see core.swap.capacity);
* ``stream: true`` (Ollama's default) answers NDJSON translated from the upstream's Server-Sent Events as they
  arrive; otherwise one JSON object;
* ``keep_alive``: ``0`` unloads the model once its requests are done, a duration or ``-1`` sets how long it
  stays loaded without requests; an empty prompt / message list only loads (or, with ``keep_alive: 0``,
  unloads) the model;
* every request is logged like the OpenAI ones (tokens and timings scraped from the upstream stream, which
  the translator reads too).

``/api/tags``, ``/api/show`` and ``/api/ps`` describe models from their GGUF metadata (library entry or the
config's ``-m`` file) and report the context the model runs with: the running llama-server's ``/props``
``n_ctx``, else ``-c``/``--ctx-size`` in its command (a library preset's context size ends up there), else
``capabilities.context``, else the file's trained context (llama-server's own default).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx
import msgspec

from api.gateway.asgi import ClientDisconnected, Receive, Scope, Send
from api.gateway.endpoints import Endpoint
from api.gateway.errors import Family, GatewayError
from api.gateway.proxy import ProxyExchange, _send_error, _send_json, authenticate_request
from core.capture import CaptureBuffer
from core.catalog import list_models
from core.library_models import configured_context, model_file
from core.ollama import (
    OllamaModel,
    OllamaRequestError,
    OllamaStreamTranslator,
    RequestKind,
    UpstreamCall,
    UpstreamResponseError,
    error_from_upstream,
    load_response,
    ps_response,
    show_response,
    strip_latest_tag,
    tags_response,
    translate_chat_request,
    translate_embed_request,
    translate_embeddings_request,
    translate_generate_request,
    translate_response,
    version_response,
)
from core.presets import apply_sampling_overrides
from core.routing import Target, needs_rewrite, resolve_target, rewrite_body
from core.swap.capacity import is_embedding_model
from core.swap.engine import Lease
from core.tokens import UsageScraper
from core.upstream.client import UpstreamProtocolError, UpstreamResponse

if TYPE_CHECKING:
    from api.runtime import Runtime
    from core.config.schema import ModelConfig
    from core.library import LibraryModel

PREFIX = "/ollama"
OLLAMA_ENDPOINT = Endpoint(Family.OLLAMA)
NDJSON = b"application/x-ndjson"

_TRANSLATE: dict[str, tuple[RequestKind, Callable[[Mapping[str, Any]], UpstreamCall]]] = {
    "/api/chat": ("chat", translate_chat_request),
    "/api/generate": ("generate", translate_generate_request),
    "/api/embed": ("embed", translate_embed_request),
    "/api/embeddings": ("embeddings", translate_embeddings_request),
}
_MODEL_MANAGEMENT = frozenset({"/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete"})
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
_background: set[asyncio.Task[Any]] = set()


class OllamaApp:
    """Raw ASGI app for ``/ollama/...``: the Ollama REST API over every model the gateway serves."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self._props: dict[str, tuple[float | None, int | None]] = {}  # model → (ready_at, n_ctx)

    @staticmethod
    def handles(path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"][len(PREFIX) :] or "/"
        method = scope["method"]
        if path == "/":  # clients probe the root: Ollama answers with this text
            await _send_text(send, 200, b"Ollama is running", head=method == "HEAD")
            return
        if method == "OPTIONS":
            await _preflight(scope, send)
            return
        if path in _TRANSLATE:
            if method != "POST":
                await _send_error(send, Family.OLLAMA, 405, f"method {method} not allowed; use POST")
                return
            kind, translate = _TRANSLATE[path]
            await OllamaExchange(self.runtime, scope, receive, send, kind, translate, self).run()
            return
        try:
            if path in _LISTINGS:  # model listings need a key like inference does; /api/version stays open
                authenticate_request(self.runtime, dict(scope["headers"]))
            if path == "/api/version" and method in ("GET", "HEAD"):
                body: Any = version_response()
            elif path == "/api/tags" and method in ("GET", "HEAD"):
                body = tags_response([await self.describe(m) for m in self.listed()])
            elif path == "/api/ps" and method == "GET":
                body = ps_response([await self.describe(m, running=True) for m in self.loaded()])
            elif path == "/api/show" and method == "POST":
                body = await self._show(await _read_json(receive))
            elif path in _MODEL_MANAGEMENT or path.startswith("/api/blobs/"):
                raise GatewayError(
                    501,
                    f"{path} is not supported: Switchyard serves the models of config.yaml and its model library; "
                    "download GGUF files with POST /api/downloads on the admin API",
                )
            elif path in ("/api/version", "/api/tags", "/api/ps", "/api/show"):
                raise GatewayError(405, f"method {method} not allowed on {path}")
            else:
                raise GatewayError(404, f"unknown Ollama endpoint {path}")
        except GatewayError as exc:
            await _send_error(send, Family.OLLAMA, exc.status, exc.message)
            return
        except ClientDisconnected:
            return
        await _send_json(send, 200, _encode(body))

    # ---------------------------------------------------------------- listings

    def listed(self) -> list[str]:
        """The model names Ollama clients see: the same list as ``/v1/models``."""
        return [record["id"] for record in list_models(self.runtime.config)]

    def loaded(self) -> list[str]:
        return [m for m, state in self.runtime.engine.states().items() if state == "ready"]

    async def _show(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise GatewayError(400, "request body must be a JSON object")
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise GatewayError(400, "model is required")
        name = strip_latest_tag(name.strip())
        config = self.runtime.config
        if resolve_target(config, name) is None and name not in config.selectors:
            raise GatewayError(404, f"model {name!r} not found")
        return show_response(await self.describe(name))

    async def describe(self, name: str, *, running: bool = False) -> OllamaModel:
        """What the listing endpoints say about `name`, with the context it runs (or will run) with."""
        runtime = self.runtime
        config = runtime.config
        real = config.real_model_id(name)
        model = config.models.get(real) if real else None
        if model is None:
            return OllamaModel(name=name, format="", capabilities=("completion",))
        entry = await self._entry_for(model)
        context = await self.context_length(model)
        extra: dict[str, Any] = {}
        if running:
            extra["expires_at"] = runtime.engine.idle_expiry(model.id)
        capabilities = _capabilities(model, entry)
        if entry is None:
            return OllamaModel(name=name, context_length=context, capabilities=capabilities, format="", **extra)
        return OllamaModel.from_library(entry, name=name, context_length=context, capabilities=capabilities, **extra)

    async def _entry_for(self, model: ModelConfig) -> LibraryModel | None:
        library = self.runtime.library
        if model.id in self.runtime.config.library_models:
            return library.entry(model.id)
        path = model_file(model)
        return await library.describe_file(path) if path else None

    async def context_length(self, model: ModelConfig) -> int | None:
        """The running server's ``n_ctx`` (llama-server ``/props``), else the configured context."""
        process = self.runtime.engine.processes.get(model.id)
        if process is not None and process.state.value == "ready":
            cached = self._props.get(model.id)
            if cached is not None and cached[0] == process.ready_at:
                n_ctx = cached[1]
            else:
                n_ctx = await self._props_n_ctx(process.base_url)
                self._props[model.id] = (process.ready_at, n_ctx)
            if n_ctx:
                return n_ctx
        return configured_context(model)

    async def _props_n_ctx(self, base_url: str) -> int | None:
        try:
            response = await self.runtime.http.get(base_url + "/props", timeout=2.0)
            settings = response.json().get("default_generation_settings") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        return n_ctx if isinstance(n_ctx, int) and not isinstance(n_ctx, bool) and n_ctx > 0 else None


def _capabilities(model: ModelConfig, entry: LibraryModel | None) -> tuple[str, ...]:
    if is_embedding_model(model) or (entry is not None and entry.is_embedding):
        return ("embedding",)
    caps = ["completion"]
    if "image" in model.capabilities.inputs or (entry is not None and entry.mmproj):
        caps.append("vision")
    if model.capabilities.tools or (entry is not None and entry.supports_tools):
        caps.append("tools")
    return tuple(caps)


class OllamaExchange(ProxyExchange):
    """One Ollama inference request: translated, proxied, translated back, logged."""

    origin = "ollama"

    def __init__(
        self,
        runtime: Runtime,
        scope: Scope,
        receive: Receive,
        send: Send,
        kind: RequestKind,
        translate: Callable[[Mapping[str, Any]], UpstreamCall],
        app: OllamaApp,
    ):
        # the translated body is JSON, whatever the client labelled its own
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"] + [
            (b"content-type", b"application/json")
        ]
        super().__init__(runtime, {**scope, "headers": headers}, receive, send, OLLAMA_ENDPOINT)
        self.kind = kind
        self._translate = translate
        self.call: UpstreamCall | None = None
        self.load_seconds = 0.0

    async def run(self) -> None:
        await super().run()
        call, target = self.call, self.target
        if call is None or target is None or target.kind != "local" or call.load_only or call.keep_alive is None:
            return
        engine = self.runtime.engine
        if call.unloads:  # after the answer: the client does not wait for the unload
            task = asyncio.create_task(engine.unload([target.model_id], reason="keep_alive: 0", when_idle=True))
            _background.add(task)
            task.add_done_callback(_background.discard)
        else:
            engine.set_keep_alive(target.model_id, call.keep_alive)

    # --------------------------------------------------------------- routing

    def _route(self, body: bytes) -> tuple[bytes, Target]:
        try:
            decoded = _decode(body) if body.strip() else None
        except msgspec.DecodeError as exc:
            raise GatewayError(400, f"request body is not valid JSON: {exc}") from None
        if decoded is None:
            raise GatewayError(400, "missing request body")
        try:
            call = self.call = self._translate(decoded)
        except OllamaRequestError as exc:
            raise GatewayError(400, str(exc)) from None
        name = strip_latest_tag(call.model)
        self.model = name
        self.streamed = call.stream and call.kind in ("chat", "generate") and not call.load_only
        if self.key is not None:
            self._check_key(self.key, name)
        target, routed = self._apply_policy(name, allow_selectors=True)
        self.target = target
        if call.load_only:
            return b"", target
        openai = dict(call.body)
        openai["model"] = routed
        if needs_rewrite(target):
            openai = rewrite_body(openai, target)
        overrides = self.runtime.library.sampling_for(target.model_id) if target.kind == "local" else None
        if overrides and call.kind in ("chat", "generate"):
            openai = apply_sampling_overrides(openai, overrides)
        return _encode(openai), target

    def _upstream_path(self) -> str:
        assert self.call is not None
        return self.call.path

    async def _acquire_local(self, target: Target) -> Lease | None:
        assert self.call is not None
        if self.call.load_only and self.call.unloads:
            return None  # unloading must not start the model first
        was_ready = self.runtime.engine.state_of(target.model_id) == "ready"
        started = time.perf_counter()
        lease = await super()._acquire_local(target)
        if not was_ready:
            self.load_seconds = time.perf_counter() - started
        return lease

    # --------------------------------------------------------------- answering

    async def _forward(self, body: bytes, target: Target, lease: Lease | None) -> None:
        call = self.call
        assert call is not None
        if not call.load_only:
            await super()._forward(body, target, lease)
            return
        engine = self.runtime.engine
        if call.unloads:
            if target.kind == "local":
                await engine.unload([target.model_id], reason="keep_alive: 0", when_idle=True)
            answer = load_response(call, unloaded=True)
        else:
            if target.kind == "local" and call.keep_alive is not None:
                engine.set_keep_alive(target.model_id, call.keep_alive)
            answer = load_response(call)
        await self._answer(200, answer)

    async def _relay(self, response: UpstreamResponse) -> None:
        call = self.call
        assert call is not None
        content_type = (response.header(b"content-type") or b"").decode("latin-1")
        encoding_header = response.header(b"content-encoding")
        encoding = encoding_header.decode("latin-1") if encoding_header else None
        scraper = self.scraper = UsageScraper(content_type, started_at=self.started, content_encoding=encoding)
        if response.status >= 400:
            raw = await self._read_upstream(response)
            scraper.feed(raw)
            error = error_from_upstream(response.status, raw)
            self.error = error["error"]
            await self._answer(response.status, error)
            return
        if call.stream and call.kind in ("chat", "generate"):
            await self._relay_stream(response, scraper)
            return
        raw = await self._read_upstream(response)
        scraper.feed(raw)
        try:
            upstream = _decode(raw)
            if not isinstance(upstream, dict):
                raise UpstreamResponseError("the model server's answer is not a JSON object")
            answer = translate_response(call, upstream, started_at=self.started, load_seconds=self.load_seconds)
        except (msgspec.DecodeError, UpstreamResponseError) as exc:
            raise GatewayError(502, f"the model server's answer could not be translated: {exc}") from None
        await self._answer(200, answer)

    async def _read_upstream(self, response: UpstreamResponse) -> bytes:
        try:
            return b"".join([chunk async for chunk in response.iter_body()])
        except UpstreamProtocolError as exc:
            raise GatewayError(502, f"the model server failed mid-response: {exc}") from None

    async def _relay_stream(self, response: UpstreamResponse, scraper: UsageScraper) -> None:
        call = self.call
        assert call is not None and call.kind in ("chat", "generate")
        translator = OllamaStreamTranslator(
            call.kind,
            call.model,
            started_at=self.started,
            load_seconds=self.load_seconds,  # type: ignore[arg-type]
        )
        headers = [(b"content-type", NDJSON), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        self._start_capture(NDJSON.decode(), headers)
        self.status = 200
        await self._send_start(200, headers)
        try:
            async for chunk in response.iter_body():
                scraper.feed(chunk)
                out = translator.feed(chunk)
                if out:
                    await self._send_out(out, more=True)
            tail = translator.finish()
        except UpstreamProtocolError as exc:
            self.error = f"upstream failed mid-response: {exc}"
            tail = translator.fail("the model server failed mid-stream")
        if translator.error and not self.error:
            self.error = translator.error
        await self._send_out(tail, more=False)

    async def _answer(self, status: int, payload: Mapping[str, Any]) -> None:
        body = _encode(payload)
        headers = [(b"content-type", b"application/json; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        self._start_capture("application/json", headers)
        self.status = status
        await self._send_start(status, headers)
        await self._send_out(body, more=False)

    def _start_capture(self, content_type: str, headers: list[tuple[bytes, bytes]]) -> None:
        self.response_headers = headers
        if self._capture_limit:
            self.response_capture = CaptureBuffer(self._capture_limit, content_type)

    async def _send_out(self, chunk: bytes, *, more: bool) -> None:
        self.response_size += len(chunk)
        if self.response_capture is not None:
            self.response_capture.append(chunk)
        await self._send_body(chunk, more=more)


_LISTINGS = frozenset({"/api/tags", "/api/ps", "/api/show"})


async def _read_json(receive: Receive) -> Any:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    raw = b"".join(chunks)
    if not raw.strip():
        raise GatewayError(400, "missing request body")
    try:
        return _decode(raw)
    except msgspec.DecodeError as exc:
        raise GatewayError(400, f"request body is not valid JSON: {exc}") from None


async def _send_text(send: Send, status: int, body: bytes, *, head: bool = False) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _preflight(scope: Scope, send: Send) -> None:
    headers = dict(scope["headers"])
    out = [
        (b"access-control-allow-origin", headers.get(b"origin", b"*")),
        (b"access-control-allow-methods", b"GET, POST, HEAD, OPTIONS"),
        (b"access-control-allow-headers", headers.get(b"access-control-request-headers", b"*")),
        (b"access-control-max-age", b"86400"),
        (b"content-length", b"0"),
    ]
    with contextlib.suppress(Exception):
        await send({"type": "http.response.start", "status": 204, "headers": out})
        await send({"type": "http.response.body", "body": b""})
