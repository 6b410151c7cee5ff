"""The dashboard's one way to the server: a small typed HTTP client of the admin and gateway APIs.

The UI is a client of the API exactly like an automation script: every page state goes through
:class:`AdminClient` (admin API, as the signed-in user) or :class:`GatewayClient` (the inference API, with an
API key), never through the database layer, so the API stays the single source of truth and the dashboard
can run against any Switchyard it can reach. The server calls itself over loopback
(``SWITCHYARD_INTERNAL_URL``, else derived from ``SWITCHYARD_HOST``/``SWITCHYARD_PORT``).

Responses are parsed into frozen dataclasses that keep only the fields the UI uses and ignore the rest,
so the API can grow without breaking the dashboard. Endpoints that a server may not have yet (an older
version, a feature being built) raise :class:`NotFound`, which pages treat as "not available here";
a missing or expired sign-in raises :class:`NotSignedIn`.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import quote

import httpx

StatusFilter = str
"""Sent as ``status=``: a code (``200``), a class (``4xx``) or ``error`` (400 and above)."""


class ApiError(Exception):
    """The server answered with an error status; `message` is the API's own explanation when it gave one."""

    def __init__(self, status: int, message: str, problems: Sequence[str] = ()):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        #: field-level problems of a 400 (``"bindings[0].credential: no credential 'x'"``)
        self.problems = list(problems)

    @property
    def explanation(self) -> str:
        """The message with its field-level problems, for a person."""
        return "; ".join([self.message, *self.problems]) if self.problems else self.message


class NotFound(ApiError):
    """404: the endpoint (or the thing it names) does not exist on this server."""


class NotSignedIn(ApiError):
    """401: no session (or it expired); the dashboard sends the browser to /login."""


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


# --------------------------------------------------------------------------- response shapes: requests


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
    cost_usd: float | None = None
    cost_known: bool = False
    api_key_id: str | None = None
    api_key_name: str | None = None
    client_name: str | None = None
    end_user: str | None = None
    session_id: str | None = None
    policy_rule_id: str | None = None
    policy_action: str | None = None
    routed_model: str | None = None
    credentials_used: tuple[str, ...] = ()
    has_capture: bool = False
    request_bytes: int | None = None
    response_bytes: int | None = None

    @property
    def ok(self) -> bool:
        return self.status_code < 400

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RequestRow:
        return cls(
            id=int(data["id"]),
            created_at=_time(data["created_at"]),
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
            cost_usd=_float(data.get("cost_usd")),
            cost_known=bool(data.get("cost_known")),
            api_key_id=data.get("api_key_id"),
            api_key_name=data.get("api_key_name"),
            client_name=data.get("client_name"),
            end_user=data.get("end_user"),
            session_id=data.get("session_id"),
            policy_rule_id=data.get("policy_rule_id"),
            policy_action=data.get("policy_action"),
            routed_model=data.get("routed_model"),
            credentials_used=tuple(_credential_name(c) for c in data.get("credentials_used") or ()),
            has_capture=bool(data.get("has_capture")),
            request_bytes=_int(data.get("request_bytes")),
            response_bytes=_int(data.get("response_bytes")),
        )


@dataclass(frozen=True)
class RequestPage:
    """A page of the request log, newest first. Pass `next_cursor` as `before` for the next (older) page."""

    items: list[RequestRow]
    next_cursor: int | None
    etag: str | None = None


@dataclass(frozen=True)
class RequestQuery:
    """Search filters shared by the request list and its histogram (empty values are not sent)."""

    q: str = ""
    model: str = ""
    key: str = ""
    status: str = ""
    since: datetime | None = None
    until: datetime | None = None
    streamed: bool | None = None

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: v for k, v in (("q", self.q), ("model", self.model), ("key", self.key)) if v}
        if self.status:
            out["status"] = self.status
        if self.since is not None:
            out["since"] = self.since.isoformat()
        if self.until is not None:
            out["until"] = self.until.isoformat()
        if self.streamed is not None:
            out["streamed"] = "true" if self.streamed else "false"
        return out


@dataclass(frozen=True)
class CapturedBody:
    """One captured body: its text (possibly cut at the capture limit) or why it was not kept."""

    content_type: str
    size: int
    text: str | None
    truncated: bool = False
    omitted: str | None = None  # binary | multipart | encoded

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> CapturedBody | None:
        if not data:
            return None
        return cls(
            content_type=str(data.get("content_type") or ""),
            size=int(data.get("size") or 0),
            text=data.get("text"),
            truncated=bool(data.get("truncated")),
            omitted=data.get("omitted"),
        )


@dataclass(frozen=True)
class Capture:
    request_headers: tuple[tuple[str, str], ...]
    request_body: CapturedBody | None
    response_headers: tuple[tuple[str, str], ...]
    response_body: CapturedBody | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Capture:
        request, response = data.get("request") or {}, data.get("response") or {}
        return cls(
            request_headers=tuple((str(n), str(v)) for n, v in request.get("headers") or ()),
            request_body=CapturedBody.from_json(request.get("body")),
            response_headers=tuple((str(n), str(v)) for n, v in response.get("headers") or ()),
            response_body=CapturedBody.from_json(response.get("body")),
        )


@dataclass(frozen=True)
class RequestDetail:
    request: RequestRow
    capture: Capture | None
    capture_error: str | None = None


@dataclass(frozen=True)
class HistogramBucket:
    start: datetime
    count: int
    errors: int
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Histogram:
    since: datetime
    until: datetime
    bucket_seconds: float
    buckets: list[HistogramBucket]


# --------------------------------------------------------------------------- response shapes: models


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
class ModelStats:
    """Requests to one model over the statistics window (`GET /api/models`)."""

    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_per_second: float | None = None
    ttft_ms: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ModelStats:
        data = data or {}
        return cls(
            requests=int(data.get("requests") or 0),
            errors=int(data.get("errors") or 0),
            prompt_tokens=int(data.get("prompt_tokens") or 0),
            completion_tokens=int(data.get("completion_tokens") or 0),
            tokens_per_second=_float(data.get("tokens_per_second")),
            ttft_ms=_float(data.get("ttft_ms")),
        )


@dataclass(frozen=True)
class ModelSummary:
    """A local model with its live state and statistics (`GET /api/models`)."""

    id: str
    name: str
    description: str
    aliases: tuple[str, ...]
    state: str
    port: int | None
    pid: int | None
    uptime_seconds: float | None
    in_flight: int
    queued: int
    ttl: int
    last_load_seconds: float | None
    unlisted: bool
    stats: ModelStats

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelSummary:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            description=str(data.get("description") or ""),
            aliases=tuple(str(a) for a in data.get("aliases") or ()),
            state=str(data.get("state") or "unknown"),
            port=_int(data.get("port")),
            pid=_int(data.get("pid")),
            uptime_seconds=_float(data.get("uptime_seconds")),
            in_flight=int(data.get("in_flight") or 0),
            queued=int(data.get("queued") or 0),
            ttl=int(data.get("ttl") or 0),
            last_load_seconds=_float(data.get("last_load_seconds")),
            unlisted=bool(data.get("unlisted")),
            stats=ModelStats.from_json(data.get("stats")),
        )


@dataclass(frozen=True)
class ModelEvent:
    """One state change of a model server (load history), newest first."""

    at: datetime
    state: str
    previous: str | None
    load_seconds: float | None
    reason: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelEvent:
        return cls(
            at=_time(data["at"]),
            state=str(data.get("state") or ""),
            previous=data.get("previous"),
            load_seconds=_float(data.get("load_seconds")),
            reason=data.get("reason"),
        )


@dataclass(frozen=True)
class ModelDetail:
    model: ModelSummary
    since: datetime
    history: list[ModelEvent]


# --------------------------------------------------------------------------- response shapes: system


@dataclass(frozen=True)
class UpstreamHealth:
    name: str
    kind: str  # model | peer
    url: str
    reachable: bool
    status_code: int | None
    latency_ms: float | None
    error: str | None


@dataclass(frozen=True)
class SystemStatus:
    status: str  # ok | degraded
    uptime_seconds: float
    version: str
    database_dialect: str
    database_bytes: int | None
    log_queue_depth: int
    log_dropped: int
    upstreams: list[UpstreamHealth]
    models_configured: int
    models_running: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SystemStatus:
        database = data.get("database") or {}
        writer = data.get("request_log") or {}
        return cls(
            status=str(data.get("status") or "ok"),
            uptime_seconds=float(data.get("uptime_seconds") or 0.0),
            version=str((data.get("versions") or {}).get("switchyard") or ""),
            database_dialect=str(database.get("dialect") or ""),
            database_bytes=_int(database.get("size_bytes")),
            log_queue_depth=int(writer.get("queue_depth") or 0),
            log_dropped=int(writer.get("dropped") or 0),
            upstreams=[
                UpstreamHealth(
                    name=str(u.get("name") or ""),
                    kind=str(u.get("kind") or ""),
                    url=str(u.get("url") or ""),
                    reachable=bool(u.get("reachable")),
                    status_code=_int(u.get("status_code")),
                    latency_ms=_float(u.get("latency_ms")),
                    error=u.get("error"),
                )
                for u in data.get("upstreams") or ()
            ],
            models_configured=int(data.get("models_configured") or 0),
            models_running=int(data.get("models_running") or 0),
        )


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    vendor: str
    memory_used_bytes: int
    memory_total_bytes: int
    utilization_percent: float | None
    temperature_c: float | None
    power_watts: float | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GpuInfo:
        return cls(
            index=int(data.get("index") or 0),
            name=str(data.get("name") or ""),
            vendor=str(data.get("vendor") or ""),
            memory_used_bytes=int(data.get("memory_used_bytes") or 0),
            memory_total_bytes=int(data.get("memory_total_bytes") or 0),
            utilization_percent=_float(data.get("utilization_percent")),
            temperature_c=_float(data.get("temperature_c")),
            power_watts=_float(data.get("power_watts")),
        )


# --------------------------------------------------------------------------- response shapes: settings, config


@dataclass(frozen=True)
class LiveSettings:
    """The running gateway's live settings (`GET /api/settings`)."""

    retention_days: int
    capture_enabled: bool
    capture_max_bytes: int
    require_auth: bool
    protect_metrics: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LiveSettings:
        return cls(
            retention_days=int(data.get("retention_days") or 0),
            capture_enabled=bool(data.get("capture_enabled")),
            capture_max_bytes=int(data.get("capture_max_bytes") or 0),
            require_auth=bool(data.get("require_auth")),
            protect_metrics=bool(data.get("protect_metrics")),
        )


@dataclass(frozen=True)
class PruneReport:
    request_logs: int
    model_events: int
    sessions: int


@dataclass(frozen=True)
class CompactReport:
    dialect: str
    size_before: int | None
    size_after: int | None
    seconds: float


@dataclass(frozen=True)
class ConfigProblem:
    """A problem in a config text, at its line and column (1-based) when it has one."""

    path: str
    message: str
    line: int | None
    column: int | None
    severity: str  # error | warning

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConfigProblem:
        return cls(
            path=str(data.get("path") or ""),
            message=str(data.get("message") or ""),
            line=_int(data.get("line")),
            column=_int(data.get("column")),
            severity=str(data.get("severity") or "error"),
        )


@dataclass(frozen=True)
class ConfigCheck:
    """The outcome of validating or saving a config text."""

    valid: bool
    problems: list[ConfigProblem]
    models: int | None = None
    saved: bool = False
    backup: str | None = None


@dataclass(frozen=True)
class ConfigText:
    text: str
    etag: str | None


@dataclass(frozen=True)
class LogLine:
    source: str
    text: str
    at: float


# --------------------------------------------------------------------------- response shapes: auth


@dataclass(frozen=True)
class AuthStatus:
    signup_open: bool
    signed_in: bool


@dataclass(frozen=True)
class WhoAmI:
    """The caller: a signed-in user (kind ``session``) or an admin key."""

    kind: str
    username: str


@dataclass(frozen=True)
class PasskeyInfo:
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None


# --------------------------------------------------------------------------- response shapes: access control


@dataclass(frozen=True)
class ApiKeyInfo:
    """An API key as the admin API shows it: never its secret, only the display prefix."""

    id: str
    name: str
    prefix: str
    source: str  # database | config | settings
    state: str  # active | revoked | expired
    scopes: tuple[str, ...]
    rpm_limit: int | None
    tpm_limit: int | None
    allowed_models: tuple[str, ...]
    allowed_relays: tuple[str, ...]
    system_prompt: str | None
    created_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiKeyInfo:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            prefix=str(data.get("prefix") or ""),
            source=str(data.get("source") or "database"),
            state=str(data.get("state") or "active"),
            scopes=tuple(data.get("scopes") or ()),
            rpm_limit=_int(data.get("rpm_limit")),
            tpm_limit=_int(data.get("tpm_limit")),
            allowed_models=tuple(data.get("allowed_models") or ()),
            allowed_relays=tuple(data.get("allowed_relays") or ()),
            system_prompt=data.get("system_prompt"),
            created_at=_opt_time(data.get("created_at")),
            expires_at=_opt_time(data.get("expires_at")),
            last_used_at=_opt_time(data.get("last_used_at")),
        )


@dataclass(frozen=True)
class NewApiKey:
    """A key just created: `secret` is shown this once and never again."""

    key: ApiKeyInfo
    secret: str


@dataclass(frozen=True)
class KeyDraft:
    """What `create_key`/`update_key` send. Limits of None mean unlimited; an empty model allow-list allows every
    model; an empty relay allow-list allows no MCP relay."""

    name: str
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    allowed_models: tuple[str, ...] = ()
    allowed_relays: tuple[str, ...] = ()
    system_prompt: str | None = None
    scopes: tuple[str, ...] = ("inference",)
    expires_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rpm_limit": self.rpm_limit,
            "tpm_limit": self.tpm_limit,
            "allowed_models": list(self.allowed_models),
            "allowed_relays": list(self.allowed_relays),
            "system_prompt": self.system_prompt or None,
            "scopes": list(self.scopes),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


@dataclass(frozen=True)
class ModelUsage:
    model: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@dataclass(frozen=True)
class KeyUsage:
    requests: int
    errors: int
    total_tokens: int
    cost_usd: float
    by_model: list[ModelUsage]


@dataclass(frozen=True)
class CredentialBinding:
    """Where a stored credential goes on an outbound request (``core.vault.CredentialBinding`` over JSON)."""

    credential: str
    mode: str = "header"  # header | placeholder
    header: str = ""
    template: str = "{secret}"
    in_body: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CredentialBinding:
        return cls(
            credential=str(data.get("credential") or ""),
            mode=str(data.get("mode") or "header"),
            header=str(data.get("header") or ""),
            template=str(data.get("template") or "{secret}"),
            in_body=bool(data.get("in_body")),
        )


@dataclass(frozen=True)
class HeaderCondition:
    name: str
    pattern: str = "*"


@dataclass(frozen=True)
class RuleMatch:
    """Conditions of a policy rule (globs or ``re:`` patterns); empty ones always hold."""

    path: str = ""
    model: str = ""
    key_ids: tuple[str, ...] = ()
    headers: tuple[HeaderCondition, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RuleMatch:
        data = data or {}
        return cls(
            path=str(data.get("path") or ""),
            model=str(data.get("model") or ""),
            key_ids=tuple(data.get("key_ids") or ()),
            headers=tuple(
                HeaderCondition(str(h.get("name") or ""), str(h.get("pattern") or "*"))
                for h in data.get("headers") or ()
            ),
        )


@dataclass(frozen=True)
class RouteTarget:
    kind: str  # local | peer | upstream
    value: str = ""
    model: str = ""
    base_url: str = ""
    auth_passthrough: bool = False
    insecure_tls: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RouteTarget | None:
        if not data:
            return None
        return cls(
            kind=str(data.get("kind") or "local"),
            value=str(data.get("value") or ""),
            model=str(data.get("model") or ""),
            base_url=str(data.get("base_url") or ""),
            auth_passthrough=bool(data.get("auth_passthrough")),
            insecure_tls=bool(data.get("insecure_tls")),
        )


@dataclass(frozen=True)
class PolicyRule:
    """A routing policy rule. As a draft for `create_rule`/`update_rule`, `id` may be empty (the server names it)
    and `hits` is ignored."""

    id: str
    name: str = ""
    enabled: bool = True
    match: RuleMatch = RuleMatch()
    action: str = "continue"  # continue | rewrite | reject | route
    rewrite_model: str = ""
    reject_status: int = 403
    reject_message: str = "request rejected by policy"
    target: RouteTarget | None = None
    bindings: tuple[CredentialBinding, ...] = ()
    max_body_bytes: int | None = None
    position: int = 0
    hits: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PolicyRule:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            enabled=bool(data.get("enabled", True)),
            match=RuleMatch.from_json(data.get("match")),
            action=str(data.get("action") or "continue"),
            rewrite_model=str(data.get("rewrite_model") or ""),
            reject_status=int(data.get("reject_status") or 403),
            reject_message=str(data.get("reject_message") or ""),
            target=RouteTarget.from_json(data.get("target")),
            bindings=tuple(CredentialBinding.from_json(b) for b in data.get("bindings") or ()),
            max_body_bytes=_int(data.get("max_body_bytes")),
            position=int(data.get("position") or 0),
            hits=int(data.get("hits") or 0),
        )

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        for ignored in ("id", "position", "hits"):
            body.pop(ignored)
        body["match"]["key_ids"] = list(self.match.key_ids)
        body["match"]["headers"] = [asdict(h) for h in self.match.headers]
        body["bindings"] = [asdict(b) for b in self.bindings]
        return body


@dataclass(frozen=True)
class CredentialInfo:
    """A stored credential, never its value; `problem` says why it cannot be used now (None when it can)."""

    slug: str
    name: str
    description: str
    updated_at: datetime
    last_used_at: datetime | None
    rules: tuple[str, ...]
    relays: tuple[str, ...]
    problem: str | None


@dataclass(frozen=True)
class McpRelayInfo:
    slug: str
    name: str
    upstream_url: str
    bindings: tuple[CredentialBinding, ...]
    enabled: bool
    path: str


@dataclass(frozen=True)
class AttributionSource:
    kind: str  # header | body
    name: str
    pattern: str = ""
    fallback: bool = False


ATTRIBUTION_ROLES = ("client", "end_user", "session")


@dataclass(frozen=True)
class AttributionMapping:
    """Sources tried in order for each role (client, end user, session); `customized` lists the changed roles."""

    client: tuple[AttributionSource, ...]
    end_user: tuple[AttributionSource, ...]
    session: tuple[AttributionSource, ...]
    customized: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttributionMapping:
        def sources(role: str) -> tuple[AttributionSource, ...]:
            return tuple(
                AttributionSource(
                    str(s.get("kind") or "header"),
                    str(s.get("name") or ""),
                    str(s.get("pattern") or ""),
                    bool(s.get("fallback")),
                )
                for s in data.get(role) or ()
            )

        return cls(sources("client"), sources("end_user"), sources("session"), tuple(data.get("customized") or ()))


@dataclass(frozen=True)
class Article:
    """Readable text of a web page (`GET /api/article`), one entry per paragraph."""

    url: str
    title: str
    paragraphs: list[str]


# --------------------------------------------------------------------------- the admin client


class AdminClient:
    """Async client of one Switchyard's admin API. Use as ``async with AdminClient() as api: ...``.

    `headers` are sent with every call: the dashboard forwards the signed-in browser's session cookie and its
    CSRF token here (``ui_reflex.session``), so every call is made as that user.
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

    # ------------------------------------------------------------- sign-in

    async def auth_status(self) -> AuthStatus:
        """`GET /api/auth/status`: whether sign-up is still open and whether these credentials are signed in."""
        body = (await self._send("GET", "/api/auth/status")).json()
        return AuthStatus(signup_open=bool(body.get("signup_open")), signed_in=bool(body.get("signed_in")))

    async def whoami(self) -> WhoAmI:
        """`GET /api/auth/me`; raises NotSignedIn without a live session."""
        body = (await self._send("GET", "/api/auth/me")).json()
        return WhoAmI(kind=str(body.get("kind") or ""), username=str((body.get("user") or {}).get("username") or ""))

    async def passkeys(self) -> list[PasskeyInfo]:
        body = (await self._send("GET", "/api/auth/passkeys")).json()
        return [
            PasskeyInfo(
                int(p["id"]), str(p.get("name") or ""), _time(p["created_at"]), _opt_time(p.get("last_used_at"))
            )
            for p in body
        ]

    async def delete_passkey(self, passkey_id: int) -> None:
        await self._send("DELETE", f"/api/auth/passkeys/{passkey_id}")

    # ------------------------------------------------------------- request log

    async def list_requests(
        self,
        *,
        limit: int = 50,
        before: int | None = None,
        query: RequestQuery | None = None,
        model: str | None = None,
        status: StatusFilter | None = None,
        if_none_match: str | None = None,
    ) -> RequestPage | None:
        """`GET /api/requests`, newest first; None when `if_none_match` still matches (304)."""
        query = query or RequestQuery()
        if model or status:
            query = RequestQuery(**{**asdict(query), "model": model or query.model, "status": status or query.status})
        params: dict[str, Any] = {"limit": limit, **query.params()}
        if before is not None:
            params["before"] = before
        headers = {"If-None-Match": if_none_match} if if_none_match else None
        response = await self._send("GET", "/api/requests", params=params, headers=headers)
        if response.status_code == 304:
            return None
        body = response.json()
        rows = [RequestRow.from_json(item) for item in body.get("items", [])]
        return RequestPage(items=rows, next_cursor=body.get("next_cursor"), etag=response.headers.get("etag"))

    async def request_histogram(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        buckets: int = 60,
        query: RequestQuery | None = None,
    ) -> Histogram:
        """`GET /api/requests/histogram`: requests, errors and tokens in `buckets` equal time slices."""
        params: dict[str, Any] = {**(query or RequestQuery()).params(), "buckets": buckets}
        params.pop("since", None), params.pop("until", None)
        if since is not None:
            params["since"] = since.isoformat()
        if until is not None:
            params["until"] = until.isoformat()
        body = (await self._send("GET", "/api/requests/histogram", params=params)).json()
        return Histogram(
            since=_time(body["since"]),
            until=_time(body["until"]),
            bucket_seconds=float(body.get("bucket_seconds") or 0.0),
            buckets=[
                HistogramBucket(
                    _time(b["start"]),
                    int(b.get("count") or 0),
                    int(b.get("errors") or 0),
                    int(b.get("prompt_tokens") or 0),
                    int(b.get("completion_tokens") or 0),
                )
                for b in body.get("buckets") or ()
            ],
        )

    async def request_detail(self, request_id: int) -> RequestDetail:
        """`GET /api/requests/{id}`: one request with its capture (headers and bounded bodies, redacted)."""
        body = (await self._send("GET", f"/api/requests/{int(request_id)}")).json()
        capture = body.get("capture")
        return RequestDetail(
            request=RequestRow.from_json(body["request"]),
            capture=Capture.from_json(capture) if isinstance(capture, Mapping) else None,
            capture_error=body.get("capture_error"),
        )

    # ------------------------------------------------------------- models

    async def list_models(self) -> list[ModelEntry]:
        """The local models (`GET /api/models`), as entries of a model list.

        The gateway's own `/v1/models` answers API keys, not sign-ins, when keys are required; the admin API's
        list covers the models this server runs (peers' models are listed by `GatewayClient.models`).
        """
        return [
            ModelEntry(m.id, m.name, m.description, "model", m.state == "ready", m.aliases)
            for m in await self.local_models()
        ]

    async def running(self) -> list[RunningModel]:
        """`GET /running`: the local model server processes and their state (raises NotFound on older servers)."""
        response = await self._send("GET", "/running")
        return [RunningModel.from_json(item) for item in response.json().get("running", [])]

    async def local_models(self, *, hours: float = 24) -> list[ModelSummary]:
        """`GET /api/models`: local models with state, port, uptime and request statistics over `hours`."""
        body = (await self._send("GET", "/api/models", params={"hours": hours})).json()
        return [ModelSummary.from_json(item) for item in body.get("models", [])]

    async def model_detail(self, model_id: str, *, history: int = 100, hours: float = 24) -> ModelDetail:
        """`GET /api/models/{id}`: one model with its load/unload history, newest first."""
        body = (
            await self._send("GET", f"/api/models/{_quote(model_id)}", params={"history": history, "hours": hours})
        ).json()
        return ModelDetail(
            model=ModelSummary.from_json(body["model"]),
            since=_time(body["since"]),
            history=[ModelEvent.from_json(e) for e in body.get("history") or ()],
        )

    async def model_config(self, model_id: str) -> str:
        """`GET /api/models/{id}/config`: the model's entry in the config, as YAML."""
        return str((await self._send("GET", f"/api/models/{_quote(model_id)}/config")).json().get("yaml") or "")

    async def unload_model(self, model_id: str) -> None:
        """`POST /api/models/unload/{id}`: stop one model's server."""
        await self._send("POST", f"/api/models/unload/{_quote(model_id)}")

    async def unload_all(self) -> None:
        """`POST /api/models/unload`: stop every running model server."""
        await self._send("POST", "/api/models/unload")

    async def load_model(self, model_id: str) -> None:
        """`POST /api/models/{id}/load`: start a model's server and wait until it is ready."""
        await self._send("POST", f"/api/models/{_quote(model_id)}/load", timeout=None)

    # ------------------------------------------------------------- system

    async def system_status(self) -> SystemStatus:
        """`GET /api/system`: health, upstream reachability, versions, database size, log writer."""
        return SystemStatus.from_json((await self._send("GET", "/api/system")).json())

    async def gpus(self) -> list[GpuInfo]:
        """`GET /api/gpu`: the latest sample of every GPU (empty on a machine without one)."""
        return [GpuInfo.from_json(g) for g in (await self._send("GET", "/api/gpu")).json().get("gpus") or ()]

    # ------------------------------------------------------------- settings and maintenance

    async def live_settings(self) -> LiveSettings:
        return LiveSettings.from_json((await self._send("GET", "/api/settings")).json())

    async def change_settings(self, **changes: Any) -> LiveSettings:
        """`PATCH /api/settings` with some of retention_days, capture_enabled, capture_max_bytes, require_auth,
        protect_metrics; the server validates them all or changes nothing."""
        return LiveSettings.from_json((await self._send("PATCH", "/api/settings", json=changes)).json())

    async def prune(self, older_than_days: int | None = None) -> PruneReport:
        body = {} if older_than_days is None else {"older_than_days": older_than_days}
        data = (await self._send("POST", "/api/maintenance/prune", json=body, timeout=None)).json()
        return PruneReport(int(data["request_logs"]), int(data["model_events"]), int(data["sessions"]))

    async def compact(self) -> CompactReport:
        data = (await self._send("POST", "/api/maintenance/compact", timeout=None)).json()
        return CompactReport(
            str(data.get("dialect") or ""),
            _int(data.get("size_before")),
            _int(data.get("size_after")),
            float(data.get("seconds") or 0),
        )

    # ------------------------------------------------------------- config file

    async def config_text(self) -> ConfigText:
        """`GET /api/config`: the config file as text, with its ETag (for a conditional save)."""
        response = await self._send("GET", "/api/config")
        return ConfigText(response.text, response.headers.get("etag"))

    async def validate_config(self, text: str) -> ConfigCheck:
        """`POST /api/config/validate`: every problem of `text` with its line and column; changes nothing."""
        body = (await self._send("POST", "/api/config/validate", content=text.encode("utf-8"))).json()
        return ConfigCheck(
            valid=bool(body.get("valid")),
            problems=[ConfigProblem.from_json(p) for p in body.get("problems") or ()],
            models=_int(body.get("models")),
        )

    async def save_config(self, text: str, *, if_match: str | None = None) -> ConfigCheck:
        """`PUT /api/config`: validate, back up, save and hot-reload. A text with errors changes nothing and comes
        back with ``saved=False`` and its problems; a stale `if_match` raises ApiError 412."""
        headers = {"If-Match": if_match} if if_match else None
        response = await self._send(
            "PUT", "/api/config", content=text.encode("utf-8"), headers=headers, accept={422}, timeout=60.0
        )
        body = response.json()
        return ConfigCheck(
            valid=response.status_code != 422,
            problems=[ConfigProblem.from_json(p) for p in body.get("problems") or ()],
            models=_int(body.get("models")),
            saved=bool(body.get("saved")),
            backup=body.get("backup"),
        )

    # ------------------------------------------------------------- API keys

    async def list_keys(self) -> list[ApiKeyInfo]:
        return [ApiKeyInfo.from_json(k) for k in (await self._send("GET", "/api/keys")).json()]

    async def get_key(self, key_id: str) -> ApiKeyInfo:
        return ApiKeyInfo.from_json((await self._send("GET", f"/api/keys/{_quote(key_id)}")).json())

    async def create_key(self, draft: KeyDraft) -> NewApiKey:
        """`POST /api/keys`: the answer is the only time the key's secret is shown."""
        body = (await self._send("POST", "/api/keys", json=draft.to_json())).json()
        return NewApiKey(ApiKeyInfo.from_json(body), str(body["secret"]))

    async def update_key(self, key_id: str, draft: KeyDraft) -> ApiKeyInfo:
        body = draft.to_json()
        return ApiKeyInfo.from_json((await self._send("PATCH", f"/api/keys/{_quote(key_id)}", json=body)).json())

    async def revoke_key(self, key_id: str) -> ApiKeyInfo:
        return ApiKeyInfo.from_json((await self._send("POST", f"/api/keys/{_quote(key_id)}/revoke")).json())

    async def delete_key(self, key_id: str) -> None:
        await self._send("DELETE", f"/api/keys/{_quote(key_id)}")

    async def key_usage(self, key_id: str, *, since: datetime | None = None) -> KeyUsage:
        params = {"since": since.isoformat()} if since else None
        body = (await self._send("GET", f"/api/keys/{_quote(key_id)}/usage", params=params)).json()
        return KeyUsage(
            requests=int(body.get("requests") or 0),
            errors=int(body.get("errors") or 0),
            total_tokens=int(body.get("total_tokens") or 0),
            cost_usd=float(body.get("cost_usd") or 0.0),
            by_model=[
                ModelUsage(
                    model=str(m.get("model") or "—"),
                    requests=int(m.get("requests") or 0),
                    errors=int(m.get("errors") or 0),
                    prompt_tokens=int(m.get("prompt_tokens") or 0),
                    completion_tokens=int(m.get("completion_tokens") or 0),
                    cost_usd=float(m.get("cost_usd") or 0.0),
                )
                for m in body.get("by_model") or ()
            ],
        )

    # ------------------------------------------------------------- routing policies

    async def list_rules(self) -> list[PolicyRule]:
        return [PolicyRule.from_json(r) for r in (await self._send("GET", "/api/policies")).json()]

    async def create_rule(self, rule: PolicyRule, *, position: int | None = None) -> PolicyRule:
        body = rule.to_json()
        if rule.id:
            body["id"] = rule.id
        if position is not None:
            body["position"] = position
        return PolicyRule.from_json((await self._send("POST", "/api/policies", json=body)).json())

    async def update_rule(self, rule: PolicyRule) -> PolicyRule:
        return PolicyRule.from_json(
            (await self._send("PATCH", f"/api/policies/{_quote(rule.id)}", json=rule.to_json())).json()
        )

    async def set_rule_enabled(self, rule_id: str, enabled: bool) -> PolicyRule:
        body = {"enabled": enabled}
        return PolicyRule.from_json((await self._send("PATCH", f"/api/policies/{_quote(rule_id)}", json=body)).json())

    async def reorder_rules(self, ids: Sequence[str]) -> list[PolicyRule]:
        body = (await self._send("POST", "/api/policies/reorder", json={"ids": list(ids)})).json()
        return [PolicyRule.from_json(r) for r in body]

    async def delete_rule(self, rule_id: str) -> None:
        await self._send("DELETE", f"/api/policies/{_quote(rule_id)}")

    # ------------------------------------------------------------- credential vault

    async def list_credentials(self) -> list[CredentialInfo]:
        return [
            CredentialInfo(
                slug=str(c["slug"]),
                name=str(c.get("name") or ""),
                description=str(c.get("description") or ""),
                updated_at=_time(c["updated_at"]),
                last_used_at=_opt_time(c.get("last_used_at")),
                rules=tuple((c.get("references") or {}).get("rules") or ()),
                relays=tuple((c.get("references") or {}).get("relays") or ()),
                problem=c.get("problem"),
            )
            for c in (await self._send("GET", "/api/credentials")).json()
        ]

    async def create_credential(self, slug: str, secret: str, *, name: str = "", description: str = "") -> None:
        body = {"slug": slug, "secret": secret, "name": name, "description": description}
        await self._send("POST", "/api/credentials", json=body)

    async def replace_credential_secret(self, slug: str, secret: str) -> None:
        await self._send("PATCH", f"/api/credentials/{_quote(slug)}", json={"secret": secret})

    async def delete_credential(self, slug: str, *, confirm: bool = False) -> None:
        """Delete a credential; one that rules or relays still bind needs `confirm` (else ApiError 409)."""
        params = {"confirm": "true"} if confirm else None
        await self._send("DELETE", f"/api/credentials/{_quote(slug)}", params=params)

    # ------------------------------------------------------------- MCP relays

    async def list_relays(self) -> list[McpRelayInfo]:
        return [
            McpRelayInfo(
                slug=str(r["slug"]),
                name=str(r.get("name") or ""),
                upstream_url=str(r.get("upstream_url") or ""),
                bindings=tuple(CredentialBinding.from_json(b) for b in r.get("bindings") or ()),
                enabled=bool(r.get("enabled", True)),
                path=str(r.get("path") or ""),
            )
            for r in (await self._send("GET", "/api/mcp-relays")).json()
        ]

    async def create_relay(
        self, slug: str, upstream_url: str, *, name: str = "", bindings: Sequence[CredentialBinding] = ()
    ) -> None:
        body = {"slug": slug, "upstream_url": upstream_url, "name": name, "bindings": [asdict(b) for b in bindings]}
        await self._send("POST", "/api/mcp-relays", json=body)

    async def set_relay_enabled(self, slug: str, enabled: bool) -> None:
        await self._send("PATCH", f"/api/mcp-relays/{_quote(slug)}", json={"enabled": enabled})

    async def delete_relay(self, slug: str) -> None:
        await self._send("DELETE", f"/api/mcp-relays/{_quote(slug)}")

    async def relay_snippet(self, slug: str) -> dict[str, Any]:
        """The Claude Code ``.mcp.json`` entry for a relay (the key comes from ``$SWITCHYARD_API_KEY``)."""
        return dict((await self._send("GET", f"/api/mcp-relays/{_quote(slug)}/snippet")).json())

    # ------------------------------------------------------------- attribution

    async def attribution(self) -> AttributionMapping:
        return AttributionMapping.from_json((await self._send("GET", "/api/settings/attribution")).json())

    async def set_attribution(self, mapping: Mapping[str, Sequence[AttributionSource]]) -> AttributionMapping:
        """`PUT /api/settings/attribution`: replace the sources of the roles given (others keep their defaults)."""
        body = {role: [asdict(s) for s in sources] for role, sources in mapping.items()}
        return AttributionMapping.from_json((await self._send("PUT", "/api/settings/attribution", json=body)).json())

    async def reset_attribution(self) -> None:
        await self._send("DELETE", "/api/settings/attribution")

    # ------------------------------------------------------------- articles (speech playground)

    async def article(self, url: str) -> Article:
        """`GET /api/article`: the readable paragraphs of a public web page, extracted by the server."""
        body = (await self._send("GET", "/api/article", params={"url": url}, timeout=40.0)).json()
        return Article(
            url=str(body.get("url") or url),
            title=str(body.get("title") or ""),
            paragraphs=[str(p) for p in body.get("paragraphs") or ()],
        )

    # ------------------------------------------------------------- live streams

    async def events(self, *, idle_timeout: float = 60.0, heartbeat: float | None = None) -> AsyncIterator[LiveEvent]:
        """Follow `GET /api/events` (server-sent events) until the server closes it.

        Yields every event including heartbeats (every `heartbeat` seconds when given, else the server's
        default), so a caller wakes up regularly even when nothing happens.
        Raises NotFound when the server has no event stream, Unreachable when it goes away, and
        ``httpx.ReadTimeout`` when nothing (not even a heartbeat) arrives for `idle_timeout` seconds.
        """
        params = {"heartbeat": f"{heartbeat:g}"} if heartbeat else None
        async for event in self._sse("/api/events", params, idle_timeout):
            yield event

    async def log_lines(
        self, source: str, *, history: bool = True, idle_timeout: float = 60.0
    ) -> AsyncIterator[LogLine]:
        """Follow `GET /api/log-events` for one source ('' for all, 'proxy', 'upstream' or a model id)."""
        params = {"source": source, "history": "true" if history else "false"}
        async for event in self._sse("/api/log-events", params, idle_timeout):
            if event.type == "log":
                yield LogLine(
                    str(event.data.get("source") or ""),
                    str(event.data.get("text") or ""),
                    float(event.data.get("at") or 0),
                )

    async def _sse(self, path: str, params: Mapping[str, str] | None, idle_timeout: float) -> AsyncIterator[LiveEvent]:
        timeout = httpx.Timeout(10.0, read=idle_timeout)
        try:
            async with self._http.stream(
                "GET", path, params=params, headers={"Accept": "text/event-stream"}, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error_for(response)
                async for event in parse_sse(response.aiter_lines()):
                    yield event
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            raise Unreachable(str(exc) or type(exc).__name__) from exc

    # ------------------------------------------------------------- plumbing

    async def _send(
        self,
        method: str,
        path: str,
        *,
        timeout: float | None | object = ...,
        accept: frozenset[int] | set[int] = frozenset(),
        **kwargs: Any,
    ) -> httpx.Response:
        return await _send(self._http, self.base_url, method, path, timeout=timeout, accept=accept, **kwargs)


# --------------------------------------------------------------------------- the gateway client


@dataclass(frozen=True)
class ChatChunk:
    """A piece of a streamed chat reply: new text, and the usage/timings once the server sends them."""

    text: str = ""
    completion_tokens: int | None = None
    tokens_per_second: float | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class GeneratedImage:
    """An image from `/v1/images/generations`: inline base64 (with its media type) or a URL."""

    b64: str = ""
    url: str = ""
    media_type: str = "image/png"


@dataclass(frozen=True)
class SpeechAudio:
    data: bytes
    media_type: str


class GatewayClient:
    """The inference API (`/v1/...`) as a client with an API key sees it: the playground's way to the models."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.base_url = (base_url or default_base_url()).rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(30.0, read=600.0),
            transport=transport,
            trust_env=False,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def models(self) -> list[ModelEntry]:
        response = await _send(self._http, self.base_url, "GET", "/v1/models")
        return [ModelEntry.from_json(item) for item in response.json().get("data", [])]

    async def chat_stream(
        self,
        model: str,
        messages: Sequence[Mapping[str, str]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[ChatChunk]:
        """`POST /v1/chat/completions` with ``stream: true``: the reply's pieces as they arrive.

        Leaving the loop early (``break``, or the task being cancelled) closes the connection, which makes the
        gateway cancel the generation upstream.
        """
        body: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if max_tokens:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        try:
            async with self._http.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error_for(response)
                async for line in response.aiter_lines():
                    chunk = parse_chat_line(line)
                    if chunk is not None:
                        yield chunk
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            raise Unreachable(str(exc) or type(exc).__name__) from exc

    async def generate_images(self, model: str, prompt: str, *, size: str, n: int = 1) -> list[GeneratedImage]:
        """`POST /v1/images/generations` asking for base64 images."""
        body = {"model": model, "prompt": prompt, "size": size, "n": n, "response_format": "b64_json"}
        data = (await _send(self._http, self.base_url, "POST", "/v1/images/generations", json=body)).json()
        out = []
        for item in data.get("data") or ():
            b64 = str(item.get("b64_json") or "")
            out.append(GeneratedImage(b64=b64, url=str(item.get("url") or ""), media_type=_image_type(b64)))
        return out

    async def voices(self, model: str) -> list[str]:
        """`GET /v1/audio/voices?model=`: the voices a speech model offers (empty when it does not say)."""
        try:
            data = (await _send(self._http, self.base_url, "GET", "/v1/audio/voices", params={"model": model})).json()
        except ApiError:
            return []
        voices = data.get("voices", data.get("data", [])) if isinstance(data, Mapping) else data
        names = []
        for voice in voices or ():
            name = voice.get("id") or voice.get("name") if isinstance(voice, Mapping) else voice
            if name:
                names.append(str(name))
        return names

    async def speech(self, model: str, text: str, *, voice: str = "", response_format: str = "mp3") -> SpeechAudio:
        """`POST /v1/audio/speech`: the audio of `text`."""
        body: dict[str, Any] = {"model": model, "input": text, "response_format": response_format}
        if voice:
            body["voice"] = voice
        response = await _send(self._http, self.base_url, "POST", "/v1/audio/speech", json=body)
        media_type = response.headers.get("content-type", "").split(";")[0].strip() or f"audio/{response_format}"
        return SpeechAudio(response.content, media_type)

    async def transcribe(self, model: str, filename: str, data: bytes, media_type: str) -> str:
        """`POST /v1/audio/transcriptions` (multipart): the text of an audio file."""
        response = await _send(
            self._http,
            self.base_url,
            "POST",
            "/v1/audio/transcriptions",
            data={"model": model, "response_format": "json"},
            files={"file": (filename or "audio", data, media_type or "application/octet-stream")},
        )
        try:
            body = response.json()
        except ValueError:
            return response.text
        return str(body.get("text") or "") if isinstance(body, Mapping) else str(body)


def parse_chat_line(line: str) -> ChatChunk | None:
    """One ``data:`` line of an OpenAI chat stream as a ChatChunk (None for other lines and ``[DONE]``)."""
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if not payload or payload == "[DONE]":
        return None
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("error"), Mapping):
        raise ApiError(500, str(data["error"].get("message") or "the model server reported an error"))
    text, finish = "", None
    for choice in data.get("choices") or ():
        delta = choice.get("delta") or {}
        text += str(delta.get("content") or "")
        finish = choice.get("finish_reason") or finish
    usage = data.get("usage") or {}
    timings = data.get("timings") or {}
    return ChatChunk(
        text=text,
        completion_tokens=_int(usage.get("completion_tokens")),
        tokens_per_second=_float(timings.get("predicted_per_second")),
        finish_reason=finish,
    )


# --------------------------------------------------------------------------- shared plumbing


@dataclass(frozen=True)
class LiveEvent:
    """One server-sent event from `/api/events` (request.completed, model.state, gpu.sample, heartbeat, …)."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)


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


async def _send(
    http: httpx.AsyncClient,
    base_url: str,
    method: str,
    path: str,
    *,
    timeout: float | None | object = ...,
    accept: frozenset[int] | set[int] = frozenset(),
    **kwargs: Any,
) -> httpx.Response:
    if timeout is not ...:
        kwargs["timeout"] = timeout
    try:
        response = await http.request(method, path, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
        raise Unreachable(f"cannot reach {base_url}: {exc}") from exc
    except httpx.TimeoutException as exc:
        raise Unreachable(f"{method} {path} timed out") from exc
    except httpx.TransportError as exc:  # a connection reset or broken mid-answer
        raise Unreachable(f"lost the connection to {base_url}: {exc!r}") from exc
    if response.status_code >= 400 and response.status_code not in accept:
        raise _error_for(response)
    return response


def _error_for(response: httpx.Response) -> ApiError:
    message = response.reason_phrase or "error"
    problems: list[str] = []
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
        extra = body.get("extra")
        if isinstance(extra, list):
            for item in extra:
                if isinstance(item, Mapping) and item.get("message"):
                    problems.append(f"{item.get('key') or 'value'}: {item['message']}")
    cls: type[ApiError] = ApiError
    if response.status_code == 404:
        cls = NotFound
    elif response.status_code == 401:
        cls = NotSignedIn
    return cls(response.status_code, message, problems)


def _credential_name(entry: Any) -> str:
    if isinstance(entry, Mapping):
        return str(entry.get("slug") or entry.get("credential") or entry.get("name") or json.dumps(dict(entry)))
    return str(entry)


def _image_type(b64: str) -> str:
    if b64.startswith("/9j/"):
        return "image/jpeg"
    if b64.startswith("UklGR"):
        return "image/webp"
    return "image/png"


def _quote(segment: str) -> str:
    return quote(segment, safe="")


def _time(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _opt_time(value: Any) -> datetime | None:
    return None if value in (None, "") else _time(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
