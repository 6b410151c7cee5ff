"""The dashboard's one way to the server: a small typed HTTP client of the admin and gateway APIs.

The UI is a client of the API exactly like an automation script: every page state goes through
:class:`AdminClient`, never through the database layer, so the API stays the single source of truth and
the dashboard can run against any Switchyard it can reach. The server calls itself over loopback
(``SWITCHYARD_INTERNAL_URL``, else derived from ``SWITCHYARD_HOST``/``SWITCHYARD_PORT``).

Responses are parsed into frozen dataclasses that keep only the fields the UI uses and ignore the rest,
so the API can grow without breaking the dashboard. Endpoints that a server may not have yet (an older
version, a feature being built) raise :class:`NotFound`, which pages treat as "not available here".
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Self

import httpx

StatusFilter = Literal["ok", "error"]
"""``ok``: status code below 400; ``error``: 400 and above (sent to the API as ``status=``)."""


class ApiError(Exception):
    """The server answered with an error status; `message` is the API's own explanation when it gave one."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class NotFound(ApiError):
    """404: the endpoint (or the thing it names) does not exist on this server."""


class Unreachable(ApiError):
    """The server could not be reached at all (connection refused, timeout)."""

    def __init__(self, message: str):
        super().__init__(0, message)


def default_base_url() -> str:
    """Loopback URL of this server: ``SWITCHYARD_INTERNAL_URL`` or ``http://<host>:<port>`` from the settings."""
    explicit = os.environ.get("SWITCHYARD_INTERNAL_URL")
    if explicit:
        return explicit.rstrip("/")
    host = os.environ.get("SWITCHYARD_HOST", "127.0.0.1")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{os.environ.get('SWITCHYARD_PORT', '3000')}"


# --------------------------------------------------------------------------- response shapes


@dataclass(frozen=True)
class RequestRow:
    """One logged request, as `GET /api/requests` returns it."""

    id: int
    created_at: datetime
    method: str
    path: str
    model: str | None
    upstream_model: str | None
    status_code: int
    duration_ms: float
    ttft_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None
    tokens_per_second: float | None
    streamed: bool
    client_addr: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code < 400

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RequestRow:
        created = datetime.fromisoformat(str(data["created_at"]))
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        return cls(
            id=int(data["id"]),
            created_at=created,
            method=str(data.get("method") or ""),
            path=str(data.get("path") or ""),
            model=data.get("model"),
            upstream_model=data.get("upstream_model"),
            status_code=int(data["status_code"]),
            duration_ms=float(data.get("duration_ms") or 0.0),
            ttft_ms=_float(data.get("ttft_ms")),
            prompt_tokens=_int(data.get("prompt_tokens")),
            completion_tokens=_int(data.get("completion_tokens")),
            cached_tokens=_int(data.get("cached_tokens")),
            tokens_per_second=_float(data.get("tokens_per_second")),
            streamed=bool(data.get("streamed")),
            client_addr=data.get("client_addr"),
            error=data.get("error"),
        )


@dataclass(frozen=True)
class RequestPage:
    """A page of the request log, newest first. Pass `next_cursor` as `before` for the next (older) page."""

    items: list[RequestRow]
    next_cursor: int | None
    etag: str | None = None


@dataclass(frozen=True)
class ModelEntry:
    """A model as `GET /v1/models` lists it (local models, aliases, peers' models, selectors)."""

    id: str
    name: str
    description: str
    kind: str  # model | alias | peer | selector
    loaded: bool
    aliases: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelEntry:
        meta = data.get("meta") or {}
        internal = meta.get("llamaswap") or {}
        status = data.get("status")
        value = status.get("value") if isinstance(status, Mapping) else status
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            description=str(data.get("description") or ""),
            kind=str(internal.get("type") or "model"),
            loaded=value == "loaded",
            aliases=tuple(str(a) for a in internal.get("aliases") or ()),
        )


@dataclass(frozen=True)
class RunningModel:
    """A local model server process as `GET /running` reports it."""

    model: str
    state: str  # starting | ready | stopping | stopped | failed …
    in_flight: int = 0
    queued: int = 0
    ttl: int | None = None
    last_load_seconds: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunningModel:
        return cls(
            model=str(data["model"]),
            state=str(data.get("state") or "unknown"),
            in_flight=int(data.get("in_flight") or 0),
            queued=int(data.get("queued") or 0),
            ttl=_int(data.get("ttl")),
            last_load_seconds=_float(data.get("last_load_seconds")),
        )


@dataclass(frozen=True)
class LiveEvent:
    """One server-sent event from `/api/events` (request.completed, model.state, gpu.sample, heartbeat, …)."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)


LoadMethod = Literal["load endpoint", "warm-up request"]


# --------------------------------------------------------------------------- the client


class AdminClient:
    """Async client of one Switchyard server. Use as ``async with AdminClient() as api: ...``.

    `headers` are sent with every call (the signed-in session's cookie and CSRF token will go here).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.base_url = (base_url or default_base_url()).rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=dict(headers or {}),
            timeout=timeout,
            transport=transport,
            trust_env=False,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------- request log

    async def list_requests(
        self,
        *,
        limit: int = 50,
        before: int | None = None,
        model: str | None = None,
        status: StatusFilter | None = None,
        if_none_match: str | None = None,
    ) -> RequestPage | None:
        """`GET /api/requests`, newest first; None when `if_none_match` still matches (304).

        `status` is sent as ``status=ok|error``. Rows that do not match it are also dropped here, so the
        filter holds even against a server that ignores the parameter (its pages may then be shorter).
        """
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        if model:
            params["model"] = model
        if status:
            params["status"] = status
        headers = {"If-None-Match": if_none_match} if if_none_match else None
        response = await self._send("GET", "/api/requests", params=params, headers=headers)
        if response.status_code == 304:
            return None
        body = response.json()
        rows = [RequestRow.from_json(item) for item in body.get("items", [])]
        if status is not None:
            rows = [row for row in rows if row.ok == (status == "ok")]
        return RequestPage(items=rows, next_cursor=body.get("next_cursor"), etag=response.headers.get("etag"))

    # ------------------------------------------------------------- models

    async def list_models(self) -> list[ModelEntry]:
        """`GET /v1/models`: every model a client may name, with loaded/unloaded status."""
        response = await self._send("GET", "/v1/models")
        return [ModelEntry.from_json(item) for item in response.json().get("data", [])]

    async def running(self) -> list[RunningModel]:
        """`GET /running`: the local model server processes and their state (raises NotFound on older servers)."""
        response = await self._send("GET", "/running")
        return [RunningModel.from_json(item) for item in response.json().get("running", [])]

    async def unload_model(self, model_id: str) -> None:
        """`POST /api/models/unload/{id}`: stop one model's server."""
        await self._send("POST", f"/api/models/unload/{_quote(model_id)}")

    async def unload_all(self) -> None:
        """`POST /api/models/unload`: stop every running model server."""
        await self._send("POST", "/api/models/unload")

    async def load_model(self, model_id: str) -> LoadMethod:
        """Start a model's server and wait until it is ready.

        Uses `POST /api/models/{id}/load` when the server has it; on a server without that endpoint (404)
        it falls back to a one-token chat completion, which makes the swap engine load the model the same
        way a client would. Returns which of the two did it.
        """
        try:
            await self._send("POST", f"/api/models/{_quote(model_id)}/load", timeout=None)
            return "load endpoint"
        except NotFound:
            pass
        body = {"model": model_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        await self._send("POST", "/v1/chat/completions", json=body, timeout=None)
        return "warm-up request"

    # ------------------------------------------------------------- live events

    async def events(self, *, idle_timeout: float = 60.0) -> AsyncIterator[LiveEvent]:
        """Follow `GET /api/events` (server-sent events) until the server closes it.

        Yields every event including heartbeats, so a caller wakes up regularly even when nothing happens.
        Raises NotFound when the server has no event stream, Unreachable when it goes away, and
        ``httpx.ReadTimeout`` when nothing (not even a heartbeat) arrives for `idle_timeout` seconds.
        """
        timeout = httpx.Timeout(10.0, read=idle_timeout)
        try:
            async with self._http.stream(
                "GET", "/api/events", headers={"Accept": "text/event-stream"}, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error_for(response)
                async for event in parse_sse(response.aiter_lines()):
                    yield event
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            raise Unreachable(str(exc) or type(exc).__name__) from exc

    # ------------------------------------------------------------- plumbing

    async def _send(self, method: str, path: str, *, timeout: float | None | object = ..., **kwargs: Any):
        if timeout is not ...:
            kwargs["timeout"] = timeout
        try:
            response = await self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
            raise Unreachable(f"cannot reach {self.base_url}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise Unreachable(f"{method} {path} timed out") from exc
        if response.status_code >= 400:
            raise _error_for(response)
        return response


async def parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[LiveEvent]:
    """Server-sent events from text lines (WHATWG rules: `event:`/`data:` fields, blank line ends an event).

    The data of each event is JSON; data that is not JSON arrives as ``{"text": ...}``.
    """
    event_type = "message"
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    payload = json.loads(text)
                except ValueError:
                    payload = {"text": text}
                yield LiveEvent(event_type, payload if isinstance(payload, dict) else {"value": payload})
            event_type, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event_type = value or "message"
        elif name == "data":
            data.append(value)


def _error_for(response: httpx.Response) -> ApiError:
    message = response.reason_phrase or "error"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("message") or body.get("error")
        if isinstance(detail, dict):
            detail = detail.get("message")
        if detail:
            message = str(detail)
    cls = NotFound if response.status_code == 404 else ApiError
    return cls(response.status_code, message)


def _quote(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="")


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
