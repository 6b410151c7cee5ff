"""API key material, and the in-memory key table the gateway authenticates against.

A Switchyard key looks like ``sy-`` followed by 40 URL-safe characters (240 random bits). The secret is shown
once, when it is created; what is stored is :func:`hash_key` of it plus a short display prefix (``sy-AbCdEfG``)
so an admin can tell keys apart without being able to recover one.

Why a fast keyed hash and not argon2: a slow password hash exists to make guessing a *low-entropy* secret
expensive. A generated key has 240 bits of entropy, so no amount of hashing speed makes a guess feasible, while a
slow hash would cost tens of milliseconds on every request. HMAC-SHA256 takes about a microsecond and lets the
table find a key by dictionary lookup on its hash (no per-record comparison, so no timing side channel worth the
name: an attacker who learns which hash bucket was probed learns nothing about the secret). The HMAC key (the
"pepper") defaults to a fixed domain label; pass a server-side secret to make a leaked database alone useless for
even checking a candidate key. The same pepper must be used to create and to look up keys.

Keys from the config's ``apiKeys`` (llama-swap's plaintext keys) are accepted too, as records with no limits.

Header maps given to this module use lower-case names, as ASGI delivers them.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

KEY_PREFIX = "sy-"
SECRET_RANDOM_BYTES = 30  # 30 bytes → 40 URL-safe base64 characters
DISPLAY_PREFIX_LENGTH = 10
DEFAULT_PEPPER = b"switchyard api key v1"
RELAY_KEY_HEADER = "x-switchyard-api-key"
#: where a client may present its key, in the order they are tried
KEY_SOURCES = (RELAY_KEY_HEADER, "authorization", "x-api-key")

SCOPE_INFERENCE = "inference"
SCOPE_ADMIN = "admin"


def generate_key() -> tuple[str, str]:
    """A new secret and its display prefix: ``("sy-<40 url-safe chars>", "sy-<7 chars>")``."""
    secret = KEY_PREFIX + secrets.token_urlsafe(SECRET_RANDOM_BYTES)
    return secret, display_prefix(secret)


def display_prefix(secret: str) -> str:
    """The part of a key safe to show: the first 10 characters, or a third of a short (config) key."""
    return secret[: min(DISPLAY_PREFIX_LENGTH, len(secret) // 3)]


def hash_key(secret: str, pepper: bytes = DEFAULT_PEPPER) -> str:
    """HMAC-SHA256 of the secret under `pepper`, as 64 hex characters (see the module docstring for why)."""
    return hmac.new(pepper, secret.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """One API key as the gateway sees it; maps one-to-one to a database row.

    * ``allowed_models``: glob patterns (``qwen*``, ``gpt-4o``); empty allows every model.
    * ``allowed_relays``: glob patterns of MCP relay slugs; empty allows **no** relay. Relays inject stored
      credentials, so they are opt-in per key (``("*",)`` allows all).
    * ``rpm_limit`` / ``tpm_limit``: requests / tokens per minute; ``None`` or 0 means unlimited.
    * ``expires_at``: an aware datetime; a naive one is read as UTC (SQLite returns naive values).
    """

    id: str
    name: str
    prefix: str
    key_hash: str
    revoked: bool = False
    expires_at: datetime | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    allowed_models: tuple[str, ...] = ()
    allowed_relays: tuple[str, ...] = ()
    system_prompt: str | None = None
    scopes: frozenset[str] = frozenset({SCOPE_INFERENCE})
    from_config: bool = False

    def allows_model(self, model: str) -> bool:
        return not self.allowed_models or _glob_set(self.allowed_models)(model)

    def allows_relay(self, slug: str) -> bool:
        return bool(self.allowed_relays) and _glob_set(self.allowed_relays)(slug)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and _aware(self.expires_at) <= _aware(now)


def config_key_record(secret: str, index: int, pepper: bytes = DEFAULT_PEPPER) -> ApiKeyRecord:
    """A record for a plaintext key from the config's ``apiKeys``: no limits, every model, inference only.

    Its id is derived from the key's hash, so it stays the same when the list is reordered.
    """
    digest = hash_key(secret, pepper)
    return ApiKeyRecord(
        id=f"config:{digest[:12]}",
        name=f"apiKeys[{index}]",
        prefix=display_prefix(secret),
        key_hash=digest,
        from_config=True,
    )


class AuthFailure(StrEnum):
    MISSING = "missing"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    EXPIRED = "expired"


_FAILURE_MESSAGES = {
    AuthFailure.MISSING: "an API key is required: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
    AuthFailure.UNKNOWN: "invalid API key",
    AuthFailure.REVOKED: "this API key has been revoked",
    AuthFailure.EXPIRED: "this API key has expired",
}


@dataclass(frozen=True, slots=True)
class Authentication:
    """The outcome of :meth:`KeyTable.authenticate`: a record, or why there is none."""

    record: ApiKeyRecord | None
    failure: AuthFailure | None = None

    @property
    def ok(self) -> bool:
        return self.record is not None and self.failure is None

    @property
    def message(self) -> str:
        """A message fit for the client (it never echoes the key)."""
        return _FAILURE_MESSAGES[self.failure] if self.failure else ""


class KeyTable:
    """An immutable snapshot of every usable key, indexed by hash.

    Build a new one whenever an admin changes a key and swap the reference; lookups never touch the database.
    Revoked and expired records stay in the table so the client is told why its key stopped working.
    A database key whose hash equals a config key's wins.
    """

    __slots__ = ("_by_hash", "_by_id", "_pepper")

    def __init__(
        self, records: Iterable[ApiKeyRecord] = (), config_keys: Iterable[str] = (), *, pepper: bytes = DEFAULT_PEPPER
    ):
        self._pepper = pepper
        by_hash: dict[str, ApiKeyRecord] = {}
        for index, secret in enumerate(config_keys):
            record = config_key_record(secret, index, pepper)
            by_hash[record.key_hash] = record
        for record in records:
            by_hash[record.key_hash] = record
        self._by_hash = by_hash
        self._by_id = {record.id: record for record in by_hash.values()}

    def __len__(self) -> int:
        return len(self._by_hash)

    def lookup(self, secret: str) -> ApiKeyRecord | None:
        """The record for a presented secret, whatever its state (revoked, expired)."""
        return self._by_hash.get(hash_key(secret, self._pepper))

    def get(self, key_id: str) -> ApiKeyRecord | None:
        return self._by_id.get(key_id)

    def authenticate(self, secret: str | None, now: datetime | None = None) -> Authentication:
        if not secret:
            return Authentication(None, AuthFailure.MISSING)
        record = self.lookup(secret)
        if record is None:
            return Authentication(None, AuthFailure.UNKNOWN)
        if record.revoked:
            return Authentication(record, AuthFailure.REVOKED)
        if record.expired(now or datetime.now(UTC)):
            return Authentication(record, AuthFailure.EXPIRED)
        return Authentication(record)


@dataclass(frozen=True, slots=True)
class PresentedKey:
    """A key a client sent, and where: the gateway strips `header` before forwarding upstream."""

    key: str
    header: str  # lower-case header name that carried it
    scheme: str  # "bearer", "basic" or "header"


def extract_presented_key(headers: Mapping[str, str], sources: Iterable[str] = KEY_SOURCES) -> PresentedKey | None:
    """The key a client presented, trying `sources` in order (header names, lower case).

    * ``x-switchyard-api-key: <key>`` — the dedicated header (MCP relays require it; it also leaves
      ``Authorization`` free to carry an upstream credential when a route passes auth through);
    * ``Authorization: Bearer <key>`` (OpenAI SDKs, Claude Code with ``ANTHROPIC_AUTH_TOKEN``);
    * ``Authorization: Basic base64(user:key)`` — the password is the key; an empty password falls back to the
      user name (``curl -u KEY:``);
    * ``x-api-key: <key>`` (Anthropic SDKs, Claude Code with ``ANTHROPIC_API_KEY``).

    An ``Authorization`` header with another scheme, or an empty value, is skipped.
    """
    for source in sources:
        value = headers.get(source)
        if not value:
            continue
        if source != "authorization":
            value = value.strip()
            if value:
                return PresentedKey(value, source, "header")
            continue
        scheme, _, credentials = value.strip().partition(" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if not credentials:
            continue
        if scheme == "bearer":
            return PresentedKey(credentials, source, "bearer")
        if scheme == "basic":
            key = _basic_password(credentials)
            if key:
                return PresentedKey(key, source, "basic")
    return None


def _basic_password(credentials: str) -> str | None:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return password or user or None


@functools.lru_cache(maxsize=4096)
def _glob_set(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """One predicate for a tuple of case-sensitive globs (``*`` also matches ``/``), compiled once per tuple."""
    exact = frozenset(p for p in patterns if not _has_wildcard(p))
    wild = [fnmatch.translate(p) for p in patterns if _has_wildcard(p)]
    if not wild:
        return exact.__contains__
    regex = re.compile("|".join(f"(?:{w})" for w in wild))
    return lambda value: value in exact or regex.match(value) is not None


def _has_wildcard(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
