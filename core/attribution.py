"""Who a request is for: client, end user and session, read from request headers and JSON body fields.

Each of the three is a list of sources tried in order; the first that yields a non-empty value wins. A source is
a header (``header:x-session-id``) or a dotted JSON body path (``body:metadata.user_id``), optionally with a
regular expression: when it matches, the first non-empty group (or the whole match) is the value; when it does
not, the source yields nothing, unless ``fallback`` is set, in which case the whole value is used. Values are
trimmed and cut to 200 characters.

Defaults (:data:`DEFAULT_ATTRIBUTION`):

* session: ``X-Claude-Code-Session-Id``, ``X-Session-ID``, ``X-Litellm-Session-Id``, ``X-OpenWebUI-Chat-Id``,
  then the session id inside Claude Code's ``metadata.user_id``;
* end user: body ``user`` (OpenAI), body ``metadata.user_id`` (Anthropic; for Claude Code, its device/user part),
  ``X-OpenWebUI-User-Id``;
* client: the product token of ``User-Agent``, without a numeric version (``claude-cli/2.1.3 (external, cli)``
  → ``claude-cli``, ``OpenAI/Python 1.99.1`` → ``OpenAI/Python``).

What common clients send:

* **Claude Code** — ``User-Agent: claude-cli/<version> (external, cli)``; ``X-Claude-Code-Session-Id: <uuid>``
  (v2.1.86 and later); ``metadata.user_id`` either ``user_<sha256>_account_<uuid>_session_<uuid>`` (older) or
  the JSON text ``{"device_id": "...", "account_uuid": "...", "session_id": "<uuid>"}`` (v2.1.78 and later).
  The defaults give client ``claude-cli``, the session uuid, and the user hash / device id as end user.
* **OpenAI SDK** (Python ``OpenAI/Python 1.x``, Node ``OpenAI/JS 4.x``) — sends ``user`` only when the caller
  sets it (``client.chat.completions.create(..., user="alice")``); add a session with
  ``extra_headers={"X-Session-ID": "..."}``.
* **Open WebUI** — with ``ENABLE_FORWARD_USER_INFO_HEADERS=true`` it sends ``X-OpenWebUI-User-Name``,
  ``-User-Id``, ``-User-Email``, ``-User-Role`` and ``X-OpenWebUI-Chat-Id``; to log e-mail addresses instead of
  ids, put ``header:x-openwebui-user-email`` first in ``end_user``. Its User-Agent is its HTTP library's.
* **LiteLLM** — forwards ``user`` from its callers and sends ``X-Litellm-Session-Id`` when a session is set
  (``litellm_session_id``); clients of a LiteLLM proxy can set the header themselves.

Custom example (a team's own header, and a tenant id from a JSON field)::

    AttributionConfig(
        client=(AttributionSource("header", "x-app-name"), *DEFAULT_ATTRIBUTION.client),
        end_user=(AttributionSource("body", "metadata.tenant"),),
        session=DEFAULT_ATTRIBUTION.session,
    )

The body is read sparsely: only the top-level fields the sources name are decoded (msgspec skips the rest), so
attribution costs microseconds even on a large prompt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

MAX_VALUE_LENGTH = 200


@dataclass(frozen=True, slots=True)
class AttributionSource:
    kind: Literal["header", "body"]
    name: str  # header name (any case), or a dotted path into the JSON body
    pattern: str = ""  # optional regular expression; its first non-empty group (or whole match) is the value
    fallback: bool = False  # use the whole value when `pattern` does not match

    @classmethod
    def parse(cls, spec: str) -> AttributionSource:
        """``"header:x-session-id"`` or ``"body:metadata.user_id"`` (no pattern)."""
        kind, sep, name = spec.partition(":")
        if not sep or kind not in ("header", "body") or not name.strip():
            raise ValueError(f"attribution source {spec!r} must be 'header:<name>' or 'body:<dotted.path>'")
        return cls(kind, name.strip())  # type: ignore[arg-type]

    def problems(self) -> list[str]:
        out = []
        if self.kind not in ("header", "body"):
            out.append(f"kind must be 'header' or 'body', got {self.kind!r}")
        empty_segment = self.kind == "body" and any(not part.strip() for part in self.name.split("."))
        if not self.name.strip() or empty_segment:
            out.append(f"{self.kind} source needs a name, got {self.name!r}")
        if self.pattern:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                out.append(f"invalid pattern {self.pattern!r}: {exc}")
        return out


@dataclass(frozen=True, slots=True)
class AttributionConfig:
    client: tuple[AttributionSource, ...] = ()
    end_user: tuple[AttributionSource, ...] = ()
    session: tuple[AttributionSource, ...] = ()

    def problems(self) -> list[str]:
        """Everything wrong with the mapping (empty when valid), for the settings API's 4xx errors."""
        return [
            f"{role}[{index}]: {message}"
            for role in ("client", "end_user", "session")
            for index, source in enumerate(getattr(self, role))
            for message in source.problems()
        ]


# Claude Code's metadata.user_id: "user_<hex>_account_<id>_session_<uuid>", or JSON text with these keys
_CLAUDE_SESSION = r'session(?:_id"\s*:\s*"|_)([0-9A-Za-z-]+)'
_CLAUDE_USER = r'^user_([0-9a-f]+)_account|"device_id"\s*:\s*"([^"]+)"'
_PRODUCT = r"^([^\s/]+(?:/[^\s\d][^\s]*)?)"

DEFAULT_ATTRIBUTION = AttributionConfig(
    client=(AttributionSource("header", "user-agent", _PRODUCT),),
    end_user=(
        AttributionSource("body", "user"),
        AttributionSource("body", "metadata.user_id", _CLAUDE_USER, fallback=True),
        AttributionSource("header", "x-openwebui-user-id"),
    ),
    session=(
        AttributionSource("header", "x-claude-code-session-id"),
        AttributionSource("header", "x-session-id"),
        AttributionSource("header", "x-litellm-session-id"),
        AttributionSource("header", "x-openwebui-chat-id"),
        AttributionSource("body", "metadata.user_id", _CLAUDE_SESSION),
    ),
)


@dataclass(frozen=True, slots=True)
class Attribution:
    client: str | None = None
    end_user: str | None = None
    session: str | None = None


class _CompiledSource:
    __slots__ = ("fallback", "header", "path", "search")

    def __init__(self, source: AttributionSource):
        self.header = source.name.strip().lower() if source.kind == "header" else None
        self.path = tuple(source.name.strip().split(".")) if source.kind == "body" else ()
        self.search = re.compile(source.pattern).search if source.pattern else None
        self.fallback = source.fallback

    def value(self, headers: Mapping[str, str], body: Mapping[str, Any] | None) -> str | None:
        if self.header is not None:
            raw: Any = headers.get(self.header)
        else:
            raw = body
            for part in self.path:
                raw = raw.get(part) if isinstance(raw, Mapping) else None
        if raw is None or isinstance(raw, (dict, list, bool)):
            return None
        text = str(raw).strip()
        if not text:
            return None
        if self.search is not None:
            match = self.search(text)
            if match is not None:
                text = next((g for g in match.groups() if g), match.group(0)).strip()
            elif not self.fallback:
                return None
        return text[:MAX_VALUE_LENGTH] or None


class AttributionExtractor:
    """A compiled :class:`AttributionConfig`; build one when the setting changes."""

    __slots__ = ("_body_fields", "_client", "_decode", "_end_user", "_session")

    def __init__(self, config: AttributionConfig = DEFAULT_ATTRIBUTION):
        problems = config.problems()
        if problems:
            raise ValueError("; ".join(problems))
        self._client = tuple(_CompiledSource(s) for s in config.client)
        self._end_user = tuple(_CompiledSource(s) for s in config.end_user)
        self._session = tuple(_CompiledSource(s) for s in config.session)
        tops = sorted({s.path[0] for s in (*self._client, *self._end_user, *self._session) if s.path})
        self._body_fields = tuple(tops)
        if tops:
            fields = [(f"f{i}", Any, None) for i in range(len(tops))]
            rename = {f"f{i}": top for i, top in enumerate(tops)}
            struct = msgspec.defstruct("AttributionBody", fields, rename=rename)
            self._decode = msgspec.json.Decoder(struct).decode
        else:
            self._decode = None

    @property
    def body_fields(self) -> frozenset[str]:
        """Top-level body fields any source reads (the gateway decodes just these, once, with the model)."""
        return frozenset(self._body_fields)

    def extract(self, headers: Mapping[str, str], body: bytes | Mapping[str, Any] | None = None) -> Attribution:
        """Attribute one request. `headers` have lower-case names; `body` is the raw JSON or an already parsed dict.

        A body that is not a JSON object (multipart audio, garbage) only disables the body sources.
        """
        parsed = self._parse(body)
        return Attribution(
            client=_first(self._client, headers, parsed),
            end_user=_first(self._end_user, headers, parsed),
            session=_first(self._session, headers, parsed),
        )

    def _parse(self, body: bytes | Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        if body is None or isinstance(body, Mapping):
            return body
        if self._decode is None or not body:
            return None
        try:
            decoded = self._decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        return {top: getattr(decoded, f"f{i}") for i, top in enumerate(self._body_fields)}


def _first(
    sources: tuple[_CompiledSource, ...], headers: Mapping[str, str], body: Mapping[str, Any] | None
) -> str | None:
    for source in sources:
        value = source.value(headers, body)
        if value is not None:
            return value
    return None
