"""AccessStore: API keys, routing policy, credentials, MCP relays and sampling overrides as in-memory snapshots.

The gateway's hot path authenticates, limits and routes every request without touching the database: it reads
the plain attributes of one :class:`AccessStore` (``key_table``, ``policy``, ``relays``, ``sampling_overrides``,
``rate_limiter``, ``attribution``) and calls :meth:`AccessStore.resolve_secret` for injected credentials, which
decrypts a credential once and keeps the plaintext in memory only.

Every snapshot is immutable and replaced whole by :meth:`AccessStore.reload`, which the admin API calls after
each change (and the runtime after a config reload, because the config's ``apiKeys`` are part of the key table),
so a change applies to the next request. A request already in flight keeps the snapshot it started with.

What the hot path counts (rule hits, when a key or a credential was last used) is kept in memory and written to
the database by a background task every ``flush_interval`` seconds. The same task notices changes made by another
gateway worker process or node sharing the database (each admin change, live settings included, bumps a version
row in ``app_settings``), reloads, and calls ``on_external_change`` so the runtime reloads its live settings too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.db.access import ApiKey, Credential, McpRelay, PolicyRuleRow, SamplingOverrideRow
from api.db.models import AppSetting
from core.attribution import DEFAULT_ATTRIBUTION, AttributionConfig, AttributionExtractor, AttributionSource
from core.keys import SCOPE_ADMIN, SCOPE_INFERENCE, ApiKeyRecord, KeyTable, display_prefix, hash_key
from core.policy import CompiledPolicy, PolicyRule, RouteTarget, RuleHits, RuleMatch, SamplingOverrides, validate_rule
from core.ratelimit import RateLimiter
from core.vault import CredentialBinding, Vault, VaultError, VaultKeyError

log = logging.getLogger("switchyard.access")

ADMIN_TOKEN_KEY_ID = "settings:admin-token"
ADMIN_TOKEN_SETTING = "SWITCHYARD_ADMIN_TOKEN"
SECRET_KEY_SETTING = "SWITCHYARD_SECRET_KEY"
DEFAULT_FLUSH_INTERVAL = 5.0
_VERSION_KEY = "access_version"


@dataclass(frozen=True, slots=True)
class RelayRecord:
    """An MCP relay as the gateway sees it: where ``/mcp-relays/{slug}`` goes and which credentials it injects."""

    slug: str
    name: str
    upstream_url: str
    bindings: tuple[CredentialBinding, ...] = ()
    enabled: bool = True


# ------------------------------------------------------------------------------------------- row ↔ core types


def key_record(row: ApiKey) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        key_hash=row.key_hash,
        revoked=row.revoked_at is not None,
        expires_at=row.expires_at,
        rpm_limit=row.rpm_limit,
        tpm_limit=row.tpm_limit,
        allowed_models=tuple(row.allowed_models or ()),
        allowed_relays=tuple(row.allowed_relays or ()),
        system_prompt=row.system_prompt or None,
        scopes=frozenset(row.scopes or (SCOPE_INFERENCE,)),
    )


def admin_token_record(token: str) -> ApiKeyRecord:
    """The bootstrap ``SWITCHYARD_ADMIN_TOKEN`` as a key: admin and inference scopes, no limits, no relays."""
    return ApiKeyRecord(
        id=ADMIN_TOKEN_KEY_ID,
        name=ADMIN_TOKEN_SETTING,
        prefix=display_prefix(token),
        key_hash=hash_key(token),
        scopes=frozenset({SCOPE_ADMIN, SCOPE_INFERENCE}),
        from_config=True,
    )


def bindings_from_json(value: Iterable[Mapping[str, Any]] | None) -> tuple[CredentialBinding, ...]:
    return msgspec.convert(list(value or ()), tuple[CredentialBinding, ...])


def rule_from_row(row: PolicyRuleRow) -> PolicyRule:
    """The ``core.policy.PolicyRule`` a row stores (raises ``msgspec.ValidationError`` for a corrupt row)."""
    params = row.params or {}
    target = params.get("target")
    return PolicyRule(
        id=row.id,
        position=row.position,
        enabled=row.enabled,
        name=row.name or "",
        match=msgspec.convert(row.match or {}, RuleMatch),
        action=row.action,  # type: ignore[arg-type]
        rewrite_model=params.get("rewrite_model", ""),
        reject_status=params.get("reject_status", 403),
        reject_message=params.get("reject_message", "request rejected by policy"),
        target=msgspec.convert(target, RouteTarget) if target else None,
        bindings=bindings_from_json(row.bindings),
        max_body_bytes=row.max_body_bytes,
    )


def rule_columns(rule: PolicyRule) -> dict[str, Any]:
    """The column values that store `rule` (everything but hits and timestamps)."""
    params: dict[str, Any] = {}
    if rule.action == "rewrite":
        params["rewrite_model"] = rule.rewrite_model
    elif rule.action == "reject":
        params["reject_status"] = rule.reject_status
        params["reject_message"] = rule.reject_message
    elif rule.action == "route" and rule.target is not None:
        params["target"] = msgspec.to_builtins(rule.target)
    return {
        "id": rule.id,
        "position": rule.position,
        "enabled": rule.enabled,
        "name": rule.name,
        "match": msgspec.to_builtins(rule.match),
        "action": rule.action,
        "params": params,
        "bindings": msgspec.to_builtins(rule.bindings),
        "max_body_bytes": rule.max_body_bytes,
    }


def relay_record(row: McpRelay) -> RelayRecord:
    return RelayRecord(
        slug=row.slug,
        name=row.name or row.slug,
        upstream_url=row.upstream_url,
        bindings=bindings_from_json(row.bindings),
        enabled=row.enabled,
    )


def attribution_config(mapping: Mapping[str, Any] | None) -> AttributionConfig:
    """The attribution mapping stored in the runtime settings as a ``core.attribution.AttributionConfig``.

    ``None`` means the built-in defaults; a role (``client``, ``end_user``, ``session``) the mapping leaves out
    keeps its default, and an empty list turns that role off. A source is ``{"kind", "name", "pattern",
    "fallback"}`` or the short form ``"header:x-session-id"`` / ``"body:metadata.user_id"``. Raises ``ValueError``
    (with every problem) for a mapping that does not convert or validate.
    """
    if mapping is None:
        return DEFAULT_ATTRIBUTION
    unknown = sorted(set(mapping) - {"client", "end_user", "session"})
    if unknown:
        raise ValueError(f"unknown attribution role(s) {', '.join(unknown)}; use client, end_user and session")
    roles: dict[str, tuple[AttributionSource, ...]] = {}
    for role in ("client", "end_user", "session"):
        if role not in mapping:
            roles[role] = getattr(DEFAULT_ATTRIBUTION, role)
            continue
        sources = mapping[role]
        if sources is None:
            sources = []
        if not isinstance(sources, list):
            raise ValueError(f"{role}: expected a list of sources")  # noqa: TRY004 - reported as a 400
        converted = []
        for index, source in enumerate(sources):
            try:
                if isinstance(source, str):
                    converted.append(AttributionSource.parse(source))
                else:
                    converted.append(msgspec.convert(source, AttributionSource))
            except (ValueError, msgspec.ValidationError) as exc:
                raise ValueError(f"{role}[{index}]: {exc}") from None
        roles[role] = tuple(converted)
    config = AttributionConfig(**roles)
    problems = config.problems()
    if problems:
        raise ValueError("; ".join(problems))
    return config


# ------------------------------------------------------------------------------------------------ the store


class AccessStore:
    """The access-control state of one gateway process (see the module docstring).

    `vault_secret` is ``SWITCHYARD_SECRET_KEY``; without a usable one the store still works, but every credential
    operation raises :class:`core.vault.VaultKeyError` with a message naming the setting. `admin_token` is the
    bootstrap ``SWITCHYARD_ADMIN_TOKEN``; `config_keys` the config's ``apiKeys``. `attribution_source` returns
    the stored attribution mapping (the runtime settings' ``attribution``); the compiled extractor follows it.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        vault_secret: str | None,
        *,
        admin_token: str | None = None,
        config_keys: Iterable[str] = (),
        attribution_source: Callable[[], Mapping[str, Any] | None] | None = None,
        rate_limiter: RateLimiter | None = None,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        on_external_change: Callable[[], Awaitable[Any]] | None = None,
    ):
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._engine = engine
        self._key_records: tuple[ApiKeyRecord, ...] = ()
        self._admin_token = admin_token or None
        self._config_keys = tuple(config_keys)
        self._attribution_source = attribution_source or (lambda: None)
        self.flush_interval = flush_interval
        self._on_external_change = on_external_change
        try:
            self._vault: Vault | None = Vault(vault_secret, setting=SECRET_KEY_SETTING)
            self.vault_error: str | None = None
        except VaultKeyError as exc:
            self._vault = None
            self.vault_error = str(exc)

        # --- snapshots read by the hot path (replaced whole, never mutated)
        self.hits = RuleHits()
        self.key_table = self._build_key_table(())
        self.policy = CompiledPolicy((), self.hits)
        self.relays: dict[str, RelayRecord] = {}
        self.sampling_overrides: dict[str, SamplingOverrides] = {}
        self.rate_limiter = rate_limiter or RateLimiter()

        self._ciphertexts: dict[str, bytes] = {}
        self._plaintexts: dict[str, str] = {}  # decrypted on first use, memory only
        self._keys_used: dict[str, datetime] = {}
        self._credentials_used: dict[str, datetime] = {}
        self._hits_in_flight: dict[str, int] = {}
        self._attribution_mapping: Any = object()
        self._attribution = AttributionExtractor(DEFAULT_ATTRIBUTION)
        self._version: str | None = None
        self._reload_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.loaded = False

    # ------------------------------------------------------------------ hot path

    @property
    def vault(self) -> Vault:
        """The credential vault; raises :class:`VaultKeyError` naming ``SWITCHYARD_SECRET_KEY`` when it is unset."""
        if self._vault is None:
            raise VaultKeyError(self.vault_error or f"{SECRET_KEY_SETTING} is not set")
        return self._vault

    def resolve_secret(self, slug: str) -> str:
        """The decrypted value of credential `slug`, for ``core.vault.apply_bindings``.

        Raises ``KeyError`` for an unknown slug, :class:`VaultKeyError` without a usable secret setting and
        :class:`core.vault.VaultDecryptError` when the stored value does not decrypt (another secret, altered
        data). Marks the credential as used (written to ``last_used_at`` by the next flush).
        """
        value = self._plaintexts.get(slug)
        if value is None:
            blob = self._ciphertexts[slug]
            value = self.vault.decrypt(blob, slug)
            self._plaintexts[slug] = value
        self._credentials_used[slug] = datetime.now(UTC)
        return value

    def note_key_used(self, key_id: str) -> None:
        """Record that a key authenticated a request now (written to ``last_used_at`` by the next flush)."""
        self._keys_used[key_id] = datetime.now(UTC)

    @property
    def attribution(self) -> AttributionExtractor:
        """The compiled attribution mapping; recompiled when the runtime settings' mapping object changes."""
        mapping = self._attribution_source()
        if mapping is not self._attribution_mapping:
            self._attribution_mapping = mapping
            try:
                self._attribution = AttributionExtractor(attribution_config(mapping))
            except ValueError as exc:
                log.warning("stored attribution mapping is invalid, using the defaults: %s", exc)
                self._attribution = AttributionExtractor(DEFAULT_ATTRIBUTION)
        return self._attribution

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load every snapshot and start the background flush."""
        await self.reload()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="access-flush")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()

    async def reload(self, *, config_keys: Iterable[str] | None = None, changed: bool = False) -> None:
        """Rebuild every snapshot from the database.

        `config_keys` replaces the config's ``apiKeys`` (after a config reload). `changed=True` (the admin API)
        also bumps the version other worker processes poll, so they reload too.
        """
        if config_keys is not None:
            self._config_keys = tuple(config_keys)
        async with self._reload_lock:
            async with self._sessions() as session:
                if changed:
                    async with session.begin():
                        self._version = await bump_access_version(session)
                else:
                    self._version = await _read_version(session)
                keys = (await session.scalars(select(ApiKey))).all()
                rules = (await session.scalars(select(PolicyRuleRow))).all()
                credentials = (await session.execute(select(Credential.slug, Credential.ciphertext))).all()
                relays = (await session.scalars(select(McpRelay))).all()
                overrides = (await session.scalars(select(SamplingOverrideRow))).all()
            self._apply(keys, rules, credentials, relays, overrides)
            self.loaded = True

    def _apply(
        self,
        keys: Iterable[ApiKey],
        rules: Iterable[PolicyRuleRow],
        credentials: Iterable[Any],
        relays: Iterable[McpRelay],
        overrides: Iterable[SamplingOverrideRow],
    ) -> None:
        previous_ids = {record.id for record in self._key_records}
        records = [key_record(row) for row in keys]
        self.key_table = self._build_key_table(records)
        for gone in previous_ids - {record.id for record in records}:
            self.rate_limiter.forget(gone)

        compiled: list[PolicyRule] = []
        for row in rules:
            try:
                rule = rule_from_row(row)
            except (msgspec.ValidationError, TypeError, ValueError) as exc:
                log.error("policy rule %s is unreadable and is skipped: %s", row.id, exc)
                continue
            problems = validate_rule(rule)
            if problems:
                log.error("policy rule %s is invalid and is skipped: %s", row.id, "; ".join(map(str, problems)))
                continue
            compiled.append(rule)
        self.policy = CompiledPolicy(compiled, self.hits)

        ciphertexts = {slug: bytes(blob) for slug, blob in credentials}
        self._plaintexts = {
            slug: value
            for slug, value in self._plaintexts.items()
            if ciphertexts.get(slug) == self._ciphertexts.get(slug)
        }
        self._ciphertexts = ciphertexts

        relay_table = {}
        for row in relays:
            try:
                relay_table[row.slug] = relay_record(row)
            except msgspec.ValidationError as exc:
                log.error("MCP relay %s is unreadable and is skipped: %s", row.slug, exc)
        self.relays = relay_table

        override_table = {}
        for row in overrides:
            try:
                override_table[row.model] = msgspec.convert(row.values or {}, SamplingOverrides)
            except msgspec.ValidationError as exc:
                log.error("sampling overrides of %s are unreadable and are skipped: %s", row.model, exc)
        self.sampling_overrides = override_table

    def _build_key_table(self, records: Iterable[ApiKeyRecord]) -> KeyTable:
        records = list(records)
        self._key_records = tuple(records)
        if self._admin_token:
            records.append(admin_token_record(self._admin_token))  # last: the bootstrap token is always admin
        return KeyTable(records, self._config_keys)

    # ------------------------------------------------------------------ counters

    def pending_hits(self) -> dict[str, int]:
        """Hits counted in memory and not yet in the database's ``hits`` column, by rule id."""
        pending = dict(self._hits_in_flight)
        for rule_id, count in self.hits.peek().items():
            pending[rule_id] = pending.get(rule_id, 0) + count
        return pending

    def pending_key_use(self, key_id: str) -> datetime | None:
        return self._keys_used.get(key_id)

    def pending_credential_use(self, slug: str) -> datetime | None:
        return self._credentials_used.get(slug)

    async def flush(self) -> None:
        """Add the counted rule hits to the stored totals and write last-used times; never loses a count."""
        hits = self.hits.drain()
        keys, self._keys_used = self._keys_used, {}
        credentials, self._credentials_used = self._credentials_used, {}
        if not (hits or keys or credentials):
            return
        self._hits_in_flight = hits
        try:
            async with self._engine.begin() as connection:
                if hits:
                    rules = PolicyRuleRow.__table__
                    await connection.execute(
                        rules.update()
                        .where(rules.c.id == bindparam("rule_id"))
                        .values(hits=rules.c.hits + bindparam("count")),
                        [{"rule_id": rule_id, "count": count} for rule_id, count in hits.items()],
                    )
                if keys:
                    table = ApiKey.__table__
                    await connection.execute(
                        table.update().where(table.c.id == bindparam("key_id")).values(last_used_at=bindparam("at")),
                        [{"key_id": key_id, "at": at} for key_id, at in keys.items()],
                    )
                if credentials:
                    table = Credential.__table__
                    await connection.execute(
                        table.update().where(table.c.slug == bindparam("cred")).values(last_used_at=bindparam("at")),
                        [{"cred": slug, "at": at} for slug, at in credentials.items()],
                    )
        except Exception:
            # put the counts back so the next flush writes them
            for rule_id, count in hits.items():
                for _ in range(count):
                    self.hits.record(rule_id)
            for key_id, at in keys.items():
                self._keys_used.setdefault(key_id, at)
            for slug, at in credentials.items():
                self._credentials_used.setdefault(slug, at)
            raise
        finally:
            self._hits_in_flight = {}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except Exception:
                log.exception("could not write access counters; retrying at the next flush")
            try:
                async with self._sessions() as session:
                    version = await _read_version(session)
                if version != self._version:
                    await self.reload()
                    if self._on_external_change is not None:
                        await self._on_external_change()
            except Exception:
                log.exception("could not check for changes made by another worker or node")


async def _read_version(session: AsyncSession) -> str:
    row = await session.scalar(select(AppSetting).where(AppSetting.key == _VERSION_KEY))
    return str(row.value.get("version", "")) if row is not None else ""


async def bump_access_version(session: AsyncSession) -> str:
    """Store a new random version token. A token, not a counter: two workers bumping at once still differ."""
    row = await session.scalar(select(AppSetting).where(AppSetting.key == _VERSION_KEY))
    now = datetime.now(UTC)
    version = secrets.token_hex(8)
    if row is None:
        session.add(AppSetting(key=_VERSION_KEY, value={"version": version}, updated_at=now))
    else:
        row.value = {"version": version}
        row.updated_at = now
    return version


__all__ = [
    "ADMIN_TOKEN_KEY_ID",
    "AccessStore",
    "RelayRecord",
    "VaultError",
    "attribution_config",
    "bump_access_version",
    "key_record",
    "relay_record",
    "rule_columns",
    "rule_from_row",
]
