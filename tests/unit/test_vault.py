"""core.vault: AES-256-GCM at rest, clear errors for a wrong or missing secret, and credential injection."""

from __future__ import annotations

import json

import pytest

from core.vault import (
    REDACTED,
    CredentialBinding,
    Redactor,
    UnknownCredentialError,
    Vault,
    VaultDecryptError,
    VaultError,
    VaultKeyError,
    apply_bindings,
    placeholder,
)

SECRET = "correct horse battery staple, at length!"  # ≥ 32 characters
OTHER_SECRET = "another perfectly long secret value 1234"
STORE = {"anthropic-prod": "sk-ant-REAL-1234567890", "openai-prod": "sk-proj-REAL-abcdef", "quote": 'p"a\\ss'}


def resolve(slug: str) -> str:
    return STORE[slug]


class TestVaultKey:
    @pytest.mark.parametrize("secret", [None, ""])
    def test_a_missing_secret_is_a_clear_error_naming_the_setting(self, secret):
        with pytest.raises(VaultKeyError, match="set MY_SECRET to a random secret of at least 32 characters"):
            Vault(secret, setting="MY_SECRET")

    def test_a_short_secret_says_how_short(self):
        with pytest.raises(VaultKeyError, match="SWITCHYARD_SECRET_KEY is 31 characters long; .* at least 32"):
            Vault("x" * 31)

    def test_thirty_two_characters_is_enough(self):
        Vault("x" * 32)


class TestEncryption:
    def test_round_trip(self):
        vault = Vault(SECRET)
        blob = vault.encrypt("sk-ant-secret ✓", aad="anthropic-prod")
        assert vault.decrypt(blob, aad="anthropic-prod") == "sk-ant-secret ✓"
        assert Vault(SECRET).decrypt(blob, aad="anthropic-prod") == "sk-ant-secret ✓"  # same secret, new instance

    def test_the_stored_form_is_versioned_and_hides_the_value(self):
        blob = Vault(SECRET).encrypt("sk-ant-secret", aad="a")
        assert blob[0] == 1
        assert b"sk-ant" not in blob
        assert len(blob) == 1 + 4 + 12 + len("sk-ant-secret") + 16

    def test_each_encryption_uses_a_fresh_nonce(self):
        vault = Vault(SECRET)
        assert vault.encrypt("same", aad="a") != vault.encrypt("same", aad="a")

    def test_wrong_secret_is_reported_as_such(self):
        blob = Vault(SECRET).encrypt("v", aad="anthropic-prod")
        with pytest.raises(VaultDecryptError, match="'anthropic-prod' was encrypted with a different"):
            Vault(OTHER_SECRET).decrypt(blob, aad="anthropic-prod")

    def test_tampering_is_detected(self):
        vault = Vault(SECRET)
        blob = bytearray(vault.encrypt("sk-ant-secret", aad="a"))
        blob[-1] ^= 0x01
        with pytest.raises(VaultDecryptError, match="failed its integrity check"):
            vault.decrypt(bytes(blob), aad="a")
        blob = bytearray(vault.encrypt("sk-ant-secret", aad="a"))
        blob[8] ^= 0x80  # inside the nonce
        with pytest.raises(VaultDecryptError, match="integrity"):
            vault.decrypt(bytes(blob), aad="a")

    def test_a_ciphertext_moved_to_another_credential_does_not_decrypt(self):
        vault = Vault(SECRET)
        blob = vault.encrypt("sk-ant-secret", aad="anthropic-prod")
        with pytest.raises(VaultDecryptError, match="integrity"):
            vault.decrypt(blob, aad="anthropic-dev")

    @pytest.mark.parametrize("blob", [b"", b"\x01short", b"\x02" + b"\x00" * 40])
    def test_truncated_or_unknown_formats(self, blob):
        with pytest.raises(VaultDecryptError, match="format"):
            Vault(SECRET).decrypt(blob, aad="a")


def header(result, name: bytes) -> list[bytes]:
    return [v for n, v in result.headers if n == name]


class TestHeaderBindings:
    def test_sets_a_header_from_its_template_replacing_the_clients(self):
        binding = CredentialBinding("openai-prod", header="Authorization", template="Bearer {secret}")
        result = apply_bindings(
            [(b"authorization", b"Bearer sy-client"), (b"accept", b"*/*")], b"{}", [binding], resolve
        )
        assert header(result, b"authorization") == [b"Bearer sk-proj-REAL-abcdef"]
        assert header(result, b"accept") == [b"*/*"]
        assert result.injected == ("openai-prod",)

    def test_later_bindings_for_the_same_header_win(self):
        bindings = [CredentialBinding("openai-prod", header="x-api-key"), CredentialBinding("anthropic-prod",
                    header="x-api-key")]  # fmt: skip
        result = apply_bindings([], b"", bindings, resolve)
        assert header(result, b"x-api-key") == [b"sk-ant-REAL-1234567890"]

    def test_an_unknown_credential_is_a_clear_error(self):
        with pytest.raises(UnknownCredentialError, match="'gone' is bound to this route but does not exist"):
            apply_bindings([], b"", [CredentialBinding("gone", header="x-api-key")], resolve)

    def test_a_secret_with_a_line_break_is_never_put_in_a_header(self):
        def bad(slug: str) -> str:
            return "abc\r\nx-injected: 1"

        with pytest.raises(VaultError, match="line break"):
            apply_bindings([], b"", [CredentialBinding("c", header="x-api-key")], bad)

    def test_binding_validation(self):
        assert CredentialBinding("ok-slug.v2", header="x-api-key").problems() == []
        problems = CredentialBinding("bad slug", header="bad header", template="Bearer").problems()
        assert len(problems) == 3


class TestPlaceholders:
    def test_header_placeholders_of_bound_credentials_are_replaced(self):
        binding = CredentialBinding("anthropic-prod", mode="placeholder")
        sent = [(b"x-api-key", placeholder("anthropic-prod").encode())]
        result = apply_bindings(sent, b"{}", [binding], resolve)
        assert header(result, b"x-api-key") == [b"sk-ant-REAL-1234567890"]
        assert result.injected == ("anthropic-prod",) and result.unresolved == ()

    def test_placeholders_of_unbound_credentials_are_left_and_reported(self):
        binding = CredentialBinding("anthropic-prod", mode="placeholder")
        sent = [(b"x-api-key", placeholder("openai-prod").encode())]
        result = apply_bindings(sent, b"{}", [binding], resolve)
        assert header(result, b"x-api-key") == [placeholder("openai-prod").encode()]
        assert result.unresolved == ("openai-prod",) and result.injected == ()

    def test_body_placeholders_need_in_body_and_are_json_escaped(self):
        body = json.dumps({"token": placeholder("quote"), "other": placeholder("openai-prod")}).encode()
        not_in_body = apply_bindings([], body, [CredentialBinding("quote", mode="placeholder")], resolve)
        assert not_in_body.body == body and set(not_in_body.unresolved) == {"quote", "openai-prod"}
        result = apply_bindings([], body, [CredentialBinding("quote", mode="placeholder", in_body=True)], resolve)
        assert json.loads(result.body) == {"token": 'p"a\\ss', "other": placeholder("openai-prod")}
        assert result.injected == ("quote",) and result.unresolved == ("openai-prod",)

    def test_a_body_without_placeholders_is_returned_as_is(self):
        body = b'{"messages": []}'
        result = apply_bindings([], body, [CredentialBinding("quote", mode="placeholder", in_body=True)], resolve)
        assert result.body is body and result.injected == ()
        assert not result.redactor

    def test_each_secret_is_resolved_once(self):
        calls = []

        def counting(slug: str) -> str:
            calls.append(slug)
            return STORE[slug]

        bindings = [CredentialBinding("openai-prod", mode="placeholder", in_body=True),
                    CredentialBinding("openai-prod", header="authorization", template="Bearer {secret}")]  # fmt: skip
        p = placeholder("openai-prod").encode()
        apply_bindings([(b"x-a", p), (b"x-b", p)], b'{"a": "' + p + b'"}', bindings, counting)
        assert calls == ["openai-prod"]


class TestRedaction:
    def test_injected_values_never_survive_redaction(self):
        bindings = [CredentialBinding("openai-prod", header="authorization", template="Bearer {secret}"),
                    CredentialBinding("quote", mode="placeholder", in_body=True)]  # fmt: skip
        body = json.dumps({"pw": placeholder("quote")}).encode()
        result = apply_bindings([], body, bindings, resolve)
        log_line = f"headers={result.headers!r} body={result.body.decode()}"
        redacted = result.redactor.redact(log_line)
        assert "sk-proj-REAL" not in redacted and 'p\\"a\\\\ss' not in redacted
        assert REDACTED in redacted
        assert b'p\\"a' not in result.redactor.redact_bytes(result.body)

    def test_longest_value_first_and_merge(self):
        redactor = Redactor(["abc", "abcdef"]).merged(Redactor(["xyz"]))
        assert redactor.redact("abcdef abc xyz ok") == f"{REDACTED} {REDACTED} {REDACTED} ok"

    def test_an_empty_redactor_changes_nothing(self):
        assert Redactor([""]).redact("text") == "text"
        assert Redactor().redact_bytes(b"bytes") == b"bytes"
