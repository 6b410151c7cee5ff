"""AccessStore against a real migrated SQLite database: snapshots, the vault, counters and cross-worker reloads."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from api.access_store import ADMIN_TOKEN_KEY_ID, AccessStore, rule_columns
from api.db.access import ApiKey, Credential, McpRelay, PolicyRuleRow, SamplingOverrideRow
from api.db.engine import make_alchemy_config
from api.db.migrate import upgrade
from core.keys import SCOPE_ADMIN, generate_key, hash_key
from core.policy import PolicyRule, RequestFacts, RuleMatch
from core.vault import CredentialBinding, Vault, VaultDecryptError, VaultKeyError

SECRET = "s" * 40
NOW = datetime.now(UTC)


@pytest.fixture
async def engine(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'access.db'}"
    await asyncio.to_thread(upgrade, url)
    engine = make_alchemy_config(url).get_engine()
    yield engine
    await engine.dispose()


async def add(engine: AsyncEngine, *rows) -> None:
    async with async_sessionmaker(engine)() as session, session.begin():
        session.add_all(rows)


def api_key(key_id: str, secret: str, **fields) -> ApiKey:
    values = {"allowed_models": [], "allowed_relays": [], "scopes": ["inference"], **fields}
    return ApiKey(id=key_id, name=key_id, prefix=secret[:10], key_hash=hash_key(secret), created_at=NOW, **values)


def rule_row(rule: PolicyRule) -> PolicyRuleRow:
    return PolicyRuleRow(**rule_columns(rule), hits=0, created_at=NOW, updated_at=NOW)


async def test_snapshots_hold_database_config_and_bootstrap_keys(engine):
    db_secret, _ = generate_key()
    await add(engine, api_key("key_db", db_secret, rpm_limit=5, allowed_models=["qwen*"]))
    store = AccessStore(engine, SECRET, admin_token="sy-bootstrap-admin-token", config_keys=["plain-config-key"])
    await store.reload()

    record = store.key_table.authenticate(db_secret).record
    assert (record.id, record.rpm_limit, record.allows_model("qwen3"), record.allows_model("gpt-4o")) == (
        "key_db", 5, True, False,
    )  # fmt: skip
    assert store.key_table.authenticate("plain-config-key").record.from_config
    admin = store.key_table.authenticate("sy-bootstrap-admin-token").record
    assert admin.id == ADMIN_TOKEN_KEY_ID and admin.has_scope(SCOPE_ADMIN)

    await store.reload(config_keys=["another-config-key"])  # a config reload replaces the config's apiKeys
    assert not store.key_table.authenticate("plain-config-key").ok
    assert store.key_table.authenticate("another-config-key").ok


async def test_revocation_and_expiry_reach_the_key_table_on_reload(engine):
    revoked, _ = generate_key()
    expired, _ = generate_key()
    await add(
        engine,
        api_key("key_revoked", revoked, revoked_at=NOW),
        api_key("key_expired", expired, expires_at=NOW - timedelta(seconds=1)),
    )
    store = AccessStore(engine, SECRET)
    await store.reload()
    assert store.key_table.authenticate(revoked).message == "this API key has been revoked"
    assert store.key_table.authenticate(expired).message == "this API key has expired"


async def test_policy_relays_and_overrides_are_compiled_from_rows(engine):
    await add(
        engine,
        Credential(
            slug="tok",
            name="",
            description="",
            ciphertext=Vault(SECRET).encrypt("v", "tok"),
            created_at=NOW,
            updated_at=NOW,
        ),
        rule_row(PolicyRule(id="second", position=1, action="reject", reject_status=451, reject_message="no")),
        rule_row(
            PolicyRule(
                id="first", position=0, match=RuleMatch(model="old-*"), action="rewrite", rewrite_model="new-model"
            )
        ),
        McpRelay(
            slug="gh",
            name="GitHub",
            upstream_url="http://127.0.0.1:1/mcp",
            enabled=True,
            created_at=NOW,
            bindings=[{"credential": "tok", "header": "authorization", "template": "Bearer {secret}"}],
        ),
        SamplingOverrideRow(model="org/m", values={"temperature": 0.1, "top_k": 20}),
    )
    store = AccessStore(engine, SECRET)
    await store.reload()

    assert [rule.id for rule in store.policy.rules] == ["first", "second"]
    decision = store.policy.evaluate(RequestFacts(path="/v1/chat/completions", model="old-7b"))
    assert (decision.action, decision.model, decision.rule_id) == ("rewrite", "new-model", "first")
    decision = store.policy.evaluate(RequestFacts(path="/v1/chat/completions", model="other"))
    assert (decision.action, decision.reject_status) == ("reject", 451)
    relay = store.relays["gh"]
    assert relay.bindings == (CredentialBinding("tok", header="authorization", template="Bearer {secret}"),)
    assert store.sampling_overrides["org/m"].temperature == 0.1 and store.sampling_overrides["org/m"].top_k == 20


async def test_an_unreadable_rule_is_skipped_not_fatal(engine):
    bad = rule_row(PolicyRule(id="bad", action="reject"))
    bad.match = {"path": "re:("}  # an invalid regex written behind the API's back
    await add(engine, bad, rule_row(PolicyRule(id="good", action="reject", reject_status=418)))
    store = AccessStore(engine, SECRET)
    await store.reload()
    assert [rule.id for rule in store.policy.rules] == ["good"]


async def test_resolve_secret_decrypts_once_and_follows_changes(engine):
    vault = Vault(SECRET)
    await add(engine, Credential(slug="tok", name="", description="", ciphertext=vault.encrypt("first", "tok"),
                                 created_at=NOW, updated_at=NOW))  # fmt: skip
    store = AccessStore(engine, SECRET)
    await store.reload()
    assert store.resolve_secret("tok") == "first"
    with pytest.raises(KeyError):
        store.resolve_secret("missing")

    async with async_sessionmaker(engine)() as session, session.begin():
        row = await session.scalar(select(Credential).where(Credential.slug == "tok"))
        row.ciphertext = vault.encrypt("second", "tok")
    await store.reload()
    assert store.resolve_secret("tok") == "second"  # the cached plaintext went with the old ciphertext


async def test_without_a_usable_secret_setting_credentials_fail_with_the_setting_named(engine):
    await add(engine, Credential(slug="tok", name="", description="", ciphertext=Vault(SECRET).encrypt("v", "tok"),
                                 created_at=NOW, updated_at=NOW))  # fmt: skip
    for secret in (None, "too-short"):
        store = AccessStore(engine, secret)
        await store.reload()
        with pytest.raises(VaultKeyError, match="SWITCHYARD_SECRET_KEY"):
            store.resolve_secret("tok")
    store = AccessStore(engine, "another-secret-that-is-long-enough-000")
    await store.reload()
    with pytest.raises(VaultDecryptError, match="different SWITCHYARD_SECRET_KEY"):
        store.resolve_secret("tok")


async def test_flush_adds_hits_and_last_used_times_to_the_database(engine):
    secret, _ = generate_key()
    await add(engine, api_key("key_a", secret), rule_row(PolicyRule(id="r1", action="continue")))
    store = AccessStore(engine, SECRET)
    await store.reload()
    for _ in range(3):
        store.policy.evaluate(RequestFacts(path="/v1/chat/completions"))
    store.note_key_used("key_a")
    assert store.pending_hits() == {"r1": 3}

    await store.flush()
    store.policy.evaluate(RequestFacts(path="/v1/chat/completions"))
    await store.flush()

    async with async_sessionmaker(engine)() as session:
        assert (await session.get(PolicyRuleRow, "r1")).hits == 4
        assert (await session.get(ApiKey, "key_a")).last_used_at is not None
    assert store.pending_hits() == {}


async def test_hits_survive_a_failed_flush(engine):
    await add(engine, rule_row(PolicyRule(id="r1", action="continue")))
    store = AccessStore(engine, SECRET)
    await store.reload()
    store.policy.evaluate(RequestFacts(path="/x"))
    async with engine.begin() as connection:  # the database goes away under the store's feet
        await connection.execute(text("ALTER TABLE policy_rules RENAME TO policy_rules_elsewhere"))
    with pytest.raises(OperationalError):
        await store.flush()
    assert store.pending_hits() == {"r1": 1}
    async with engine.begin() as connection:
        await connection.execute(text("ALTER TABLE policy_rules_elsewhere RENAME TO policy_rules"))
    await store.flush()
    async with async_sessionmaker(engine)() as session:
        assert (await session.get(PolicyRuleRow, "r1")).hits == 1


async def test_a_change_made_by_another_worker_is_picked_up_by_the_background_task(engine):
    writer = AccessStore(engine, SECRET)
    reader = AccessStore(engine, SECRET, flush_interval=0.05)
    await writer.reload()
    await reader.start()
    try:
        secret, _ = generate_key()
        await add(engine, api_key("key_new", secret))
        await writer.reload(changed=True)  # what the admin API does after a change
        for _ in range(100):
            if reader.key_table.authenticate(secret).ok:
                break
            await asyncio.sleep(0.02)
        assert reader.key_table.authenticate(secret).ok
    finally:
        await reader.stop()


async def test_attribution_follows_the_runtime_setting(engine):
    mapping = {"session": ["header:x-my-session"]}
    current = {"value": None}
    store = AccessStore(engine, SECRET, attribution_source=lambda: current["value"])
    headers = {"x-session-id": "default-header", "x-my-session": "custom"}
    assert store.attribution.extract(headers).session == "default-header"
    current["value"] = mapping
    assert store.attribution.extract(headers).session == "custom"
