"""core.keys: key material, the in-memory key table, and where clients put their key."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from core.keys import (
    RELAY_KEY_HEADER,
    ApiKeyRecord,
    AuthFailure,
    KeyTable,
    config_key_record,
    display_prefix,
    extract_presented_key,
    generate_key,
    hash_key,
)

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def record_for(secret: str, **fields) -> ApiKeyRecord:
    fields.setdefault("id", "k1")
    fields.setdefault("name", "test key")
    return ApiKeyRecord(prefix=display_prefix(secret), key_hash=hash_key(secret), **fields)


class TestKeyMaterial:
    def test_generated_key_is_sy_plus_40_url_safe_chars_with_a_10_char_prefix(self):
        secret, prefix = generate_key()
        assert secret.startswith("sy-")
        body = secret[3:]
        assert len(body) == 40
        assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        assert prefix == secret[:10]

    def test_generated_keys_differ(self):
        assert len({generate_key()[0] for _ in range(50)}) == 50

    def test_hash_is_stable_hex_and_depends_on_the_pepper(self):
        digest = hash_key("sy-abc")
        assert digest == hash_key("sy-abc")
        assert len(digest) == 64 and int(digest, 16) >= 0
        assert digest != hash_key("sy-abd")
        assert digest != hash_key("sy-abc", pepper=b"server secret")

    def test_display_prefix_shows_at_most_a_third_of_a_short_key(self):
        assert display_prefix("sy-" + "0123456789" * 4) == "sy-0123456"
        assert display_prefix("hunter22") == "hu"


class TestKeyTable:
    def test_a_valid_key_authenticates_to_its_record(self):
        secret, _ = generate_key()
        table = KeyTable([record_for(secret, rpm_limit=5)])
        auth = table.authenticate(secret, NOW)
        assert auth.ok and auth.failure is None
        assert auth.record.id == "k1" and auth.record.rpm_limit == 5

    def test_unknown_missing_revoked_and_expired_keys_fail_with_a_reason(self):
        live, revoked, expired = generate_key()[0], generate_key()[0], generate_key()[0]
        table = KeyTable([
            record_for(live, id="live"),
            record_for(revoked, id="revoked", revoked=True),
            record_for(expired, id="expired", expires_at=NOW - timedelta(seconds=1)),
        ])  # fmt: skip
        assert table.authenticate("sy-nope", NOW).failure is AuthFailure.UNKNOWN
        assert table.authenticate(None, NOW).failure is AuthFailure.MISSING
        assert table.authenticate("", NOW).failure is AuthFailure.MISSING
        assert table.authenticate(revoked, NOW).failure is AuthFailure.REVOKED
        assert table.authenticate(expired, NOW).failure is AuthFailure.EXPIRED
        assert table.authenticate(live, NOW).ok
        assert "revoked" in table.authenticate(revoked, NOW).message
        assert "sy-nope" not in table.authenticate("sy-nope", NOW).message

    def test_expiry_is_exclusive_and_naive_datetimes_read_as_utc(self):
        secret, _ = generate_key()
        naive_expiry = datetime(2030, 6, 1, 12, 0)  # what SQLite hands back
        table = KeyTable([record_for(secret, expires_at=naive_expiry)])
        assert table.authenticate(secret, NOW - timedelta(microseconds=1)).ok
        assert table.authenticate(secret, NOW).failure is AuthFailure.EXPIRED

    def test_config_api_keys_are_accepted_as_unlimited_inference_records(self):
        table = KeyTable([], config_keys=["my-llama-swap-key", "other"])
        auth = table.authenticate("my-llama-swap-key", NOW)
        assert auth.ok
        record = auth.record
        assert record.from_config and record.name == "apiKeys[0]"
        assert record.rpm_limit is None and record.allows_model("anything")
        assert record.has_scope("inference") and not record.has_scope("admin")
        assert record.id == config_key_record("my-llama-swap-key", 5).id  # the id does not depend on the position
        assert table.get(record.id) is record
        assert len(table) == 2

    def test_a_database_key_wins_over_an_identical_config_key(self):
        table = KeyTable([record_for("shared-secret", id="db", revoked=True)], config_keys=["shared-secret"])
        assert table.authenticate("shared-secret", NOW).failure is AuthFailure.REVOKED

    def test_table_hashes_with_its_pepper(self):
        secret = "sy-peppered"
        record = ApiKeyRecord(id="p", name="p", prefix="sy-pe", key_hash=hash_key(secret, b"pepper"))
        assert KeyTable([record], pepper=b"pepper").authenticate(secret, NOW).ok
        assert not KeyTable([record]).authenticate(secret, NOW).ok


class TestAllowLists:
    def test_empty_model_list_allows_every_model(self):
        assert record_for("x").allows_model("whatever")

    def test_model_globs_and_exact_names(self):
        record = record_for("x", allowed_models=("qwen*", "gpt-4o", "llama-3.?-8b"))
        assert record.allows_model("qwen3-32b")
        assert record.allows_model("gpt-4o")
        assert record.allows_model("llama-3.1-8b")
        assert not record.allows_model("gpt-4o-mini")
        assert not record.allows_model("Qwen3")  # case-sensitive, as model ids are

    def test_relays_are_opt_in(self):
        assert not record_for("x").allows_relay("github")
        assert record_for("x", allowed_relays=("*",)).allows_relay("github")
        scoped = record_for("x", allowed_relays=("git*",))
        assert scoped.allows_relay("github") and not scoped.allows_relay("jira")


class TestPresentedKey:
    def test_bearer(self):
        found = extract_presented_key({"authorization": "Bearer sy-abc"})
        assert (found.key, found.header, found.scheme) == ("sy-abc", "authorization", "bearer")

    def test_bearer_scheme_is_case_insensitive(self):
        assert extract_presented_key({"authorization": "bearer   sy-abc "}).key == "sy-abc"

    def test_x_api_key(self):
        found = extract_presented_key({"x-api-key": "sy-abc"})
        assert (found.key, found.header, found.scheme) == ("sy-abc", "x-api-key", "header")

    def test_basic_uses_the_password_or_else_the_user(self):
        as_password = base64.b64encode(b"anyone:sy-pass").decode()
        as_user = base64.b64encode(b"sy-user:").decode()
        found = extract_presented_key({"authorization": f"Basic {as_password}"})
        assert (found.key, found.scheme) == ("sy-pass", "basic")
        assert extract_presented_key({"authorization": f"Basic {as_user}"}).key == "sy-user"

    def test_the_dedicated_header_wins_so_authorization_can_carry_an_upstream_key(self):
        found = extract_presented_key({"authorization": "Bearer sk-upstream", RELAY_KEY_HEADER: "sy-mine"})
        assert (found.key, found.header) == ("sy-mine", RELAY_KEY_HEADER)

    def test_authorization_is_tried_before_x_api_key(self):
        assert extract_presented_key({"authorization": "Bearer a", "x-api-key": "b"}).key == "a"

    def test_other_schemes_and_broken_basic_fall_through_to_x_api_key(self):
        assert extract_presented_key({"authorization": "Digest abc", "x-api-key": "sy-k"}).key == "sy-k"
        assert extract_presented_key({"authorization": "Basic !!!notbase64", "x-api-key": "sy-k"}).key == "sy-k"

    @pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer "}, {"x-api-key": "  "}, {"authorization": ""}])
    def test_nothing_presented(self, headers):
        assert extract_presented_key(headers) is None

    def test_sources_restrict_where_a_key_is_read(self):
        headers = {"authorization": "Bearer sy-a"}
        assert extract_presented_key(headers, sources=(RELAY_KEY_HEADER,)) is None
