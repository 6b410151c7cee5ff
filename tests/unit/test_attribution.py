"""core.attribution: client, end user and session from headers and body fields, as common clients send them."""

from __future__ import annotations

import json

import msgspec
import pytest

from core.attribution import (
    DEFAULT_ATTRIBUTION,
    Attribution,
    AttributionConfig,
    AttributionExtractor,
    AttributionSource,
)

DEFAULT = AttributionExtractor()


def body(**fields) -> bytes:
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}).encode()


class TestCommonClients:
    def test_claude_code_with_session_header_and_json_metadata(self):
        user_id = json.dumps({"device_id": "dev-42", "account_uuid": "", "session_id": "54c1eb09-bc4c-4d2f"})
        headers = {"user-agent": "claude-cli/2.1.90 (external, cli)", "x-claude-code-session-id": "hdr-session"}
        result = DEFAULT.extract(headers, body(metadata={"user_id": user_id}))
        assert result == Attribution(client="claude-cli", end_user="dev-42", session="hdr-session")

    def test_older_claude_code_puts_the_session_inside_metadata_user_id(self):
        user_id = "user_0a1b2c3d_account_9f8e_session_57a121ec-f78c-48c3-a745-e3036a3ecc33"
        result = DEFAULT.extract(
            {"user-agent": "claude-cli/1.0.83 (external, cli)"}, body(metadata={"user_id": user_id})
        )
        assert result == Attribution(
            client="claude-cli", end_user="0a1b2c3d", session="57a121ec-f78c-48c3-a745-e3036a3ecc33"
        )

    def test_openai_sdk_with_user_and_session_header(self):
        result = DEFAULT.extract({"user-agent": "OpenAI/Python 1.99.1", "x-session-id": "s-1"}, body(user="alice"))
        assert result == Attribution(client="OpenAI/Python", end_user="alice", session="s-1")

    def test_anthropic_sdk_with_a_plain_metadata_user_id(self):
        result = DEFAULT.extract({"user-agent": "Anthropic/Python 0.60.0"}, body(metadata={"user_id": "bob"}))
        assert result == Attribution(client="Anthropic/Python", end_user="bob", session=None)

    def test_open_webui_forwarded_user_headers(self):
        headers = {
            "user-agent": "Python/3.11 aiohttp/3.11.18",
            "x-openwebui-user-id": "u-123",
            "x-openwebui-user-email": "carol@example.org",
            "x-openwebui-chat-id": "chat-9",
        }
        assert DEFAULT.extract(headers, body()) == Attribution(client="Python", end_user="u-123", session="chat-9")

    def test_litellm_session_header(self):
        headers = {"user-agent": "litellm/1.74.0", "x-litellm-session-id": "ll-7"}
        assert DEFAULT.extract(headers, body(user="dave")) == Attribution("litellm", "dave", "ll-7")


class TestSources:
    def test_the_first_source_with_a_value_wins(self):
        headers = {"x-session-id": "first", "x-litellm-session-id": "second"}
        assert DEFAULT.extract(headers).session == "first"
        assert DEFAULT.extract({"x-session-id": "  ", "x-litellm-session-id": "second"}).session == "second"

    def test_a_custom_mapping(self):
        extractor = AttributionExtractor(AttributionConfig(
            client=(AttributionSource("header", "X-App-Name"), *DEFAULT_ATTRIBUTION.client),
            end_user=(AttributionSource("body", "metadata.tenant.id"),),
            session=(AttributionSource.parse("header:x-conversation"),),
        ))  # fmt: skip
        result = extractor.extract(
            {"x-app-name": "billing-bot", "x-conversation": "c-1", "user-agent": "curl/8.5.0"},
            body(metadata={"tenant": {"id": 77}}, user="ignored"),
        )
        assert result == Attribution(client="billing-bot", end_user="77", session="c-1")

    def test_a_pattern_without_fallback_yields_nothing_when_it_does_not_match(self):
        extractor = AttributionExtractor(AttributionConfig(session=(AttributionSource("body", "user", r"^s:(\w+)"),)))
        assert extractor.extract({}, body(user="s:abc")).session == "abc"
        assert extractor.extract({}, body(user="plain")).session is None

    def test_values_are_trimmed_and_capped(self):
        assert DEFAULT.extract({"x-session-id": "  " + "x" * 500}).session == "x" * 200

    def test_objects_lists_and_booleans_are_not_values(self):
        assert DEFAULT.extract({}, body(user={"id": 1})).end_user is None
        assert DEFAULT.extract({}, body(user=True)).end_user is None

    def test_an_already_parsed_body_is_accepted(self):
        assert DEFAULT.extract({}, {"user": "erin"}).end_user == "erin"

    @pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b"--boundary\r\nContent-Disposition: form-data"])
    def test_a_body_that_is_not_a_json_object_only_disables_body_sources(self, raw):
        result = DEFAULT.extract({"user-agent": "curl/8.5.0", "x-session-id": "s"}, raw)
        assert result == Attribution(client="curl", end_user=None, session="s")

    def test_no_headers_no_body(self):
        assert DEFAULT.extract({}) == Attribution()


class TestValidation:
    def test_bad_sources_are_reported_by_role_and_index(self):
        config = AttributionConfig(
            client=(AttributionSource("header", ""),),
            session=(AttributionSource("body", "metadata..x"), AttributionSource("header", "x", pattern="(")),
        )
        assert len(config.problems()) == 3
        assert config.problems()[0].startswith("client[0]")
        with pytest.raises(ValueError, match=r"session\[1\]: invalid pattern"):
            AttributionExtractor(config)

    def test_parse_rejects_unknown_kinds(self):
        with pytest.raises(ValueError, match="must be 'header:<name>' or 'body:<dotted.path>'"):
            AttributionSource.parse("cookie:sid")

    def test_the_setting_round_trips_through_json(self):
        stored = msgspec.json.encode(DEFAULT_ATTRIBUTION)
        assert msgspec.json.decode(stored, type=AttributionConfig) == DEFAULT_ATTRIBUTION
