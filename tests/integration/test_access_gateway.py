"""API keys, limits, routing policies and credential injection enforced on real proxied requests."""

from __future__ import annotations

import json
import sqlite3
import zlib

import anthropic
import httpx
import openai
import pytest

from tests.integration.conftest import fake_cmd
from tests.servers import ADMIN_HEADERS, wait_until

SECRET_KEY = "switchyard-test-vault-secret-0123456789abcdef"
CREDENTIAL = "upstream-token-Zq81-very-secret"


@pytest.fixture
def gateway(gateway_factory):
    return gateway_factory(
        f"""
        models:
          echo:
            cmd: {fake_cmd()}
            aliases: [echo-alias]
          other:
            cmd: {fake_cmd()}
        groups:
          all: {{swap: false, exclusive: false, members: [echo, other]}}
        """,
        env={"SWITCHYARD_REQUIRE_AUTH": "true", "SWITCHYARD_SECRET_KEY": SECRET_KEY},
    )


def admin(gateway) -> httpx.Client:
    return httpx.Client(base_url=gateway.base_url, headers=ADMIN_HEADERS, timeout=30)


def make_key(gateway, **fields) -> str:
    response = admin(gateway).post("/api/keys", json={"name": fields.pop("name", "test"), **fields})
    assert response.status_code == 201, response.text
    return response.json()["secret"]


def chat(gateway, key: str | None, model: str = "echo", **body) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    payload = {"model": model, "messages": [{"role": "user", "content": "hi"}], **body}
    return httpx.post(gateway.base_url + "/v1/chat/completions", json=payload, headers=headers, timeout=30)


def echo(gateway, key: str, model: str = "echo", headers: dict | None = None, **body) -> dict:
    """An /v1/embeddings call: the fake upstream echoes what it received."""
    response = httpx.post(
        gateway.base_url + "/v1/embeddings", json={"model": model, "input": "x", **body},
        headers={"authorization": f"Bearer {key}", **(headers or {})}, timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()


def rows(gateway) -> list[dict]:
    with sqlite3.connect(gateway.workdir / "switchyard.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("select * from request_logs order by id")]


class TestKeys:
    def test_a_key_is_required_and_accepted_three_ways(self, gateway):
        missing = chat(gateway, None)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
        assert chat(gateway, "sy-not-a-real-key").status_code == 401
        key = make_key(gateway)
        assert chat(gateway, key).status_code == 200
        sdk = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
        assert sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}]).choices
        basic = httpx.post(
            gateway.base_url + "/v1/embeddings", json={"model": "echo", "input": "x"}, auth=("user", key)
        )
        assert basic.status_code == 200
        x_api_key = httpx.post(
            gateway.base_url + "/v1/embeddings", json={"model": "echo", "input": "x"}, headers={"x-api-key": key}
        )
        echoed = x_api_key.json()
        # the Switchyard key never reaches the upstream
        assert "x-api-key" not in echoed["headers"] and "authorization" not in echoed["headers"]

    def test_anthropic_clients_get_anthropic_shaped_auth_errors(self, gateway):
        client = anthropic.Anthropic(base_url=gateway.base_url, api_key="sy-wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as info:
            client.messages.create(model="echo", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        assert info.value.body["error"]["type"] == "authentication_error"

    def test_revoked_key_stops_working_on_the_next_request(self, gateway):
        api = admin(gateway)
        created = api.post("/api/keys", json={"name": "soon gone"}).json()
        assert chat(gateway, created["secret"]).status_code == 200
        assert api.post(f"/api/keys/{created['id']}/revoke").status_code in (200, 201)
        assert chat(gateway, created["secret"]).status_code == 401

    def test_model_allow_list_gives_403(self, gateway):
        key = make_key(gateway, allowed_models=["echo*"])
        assert chat(gateway, key, "echo").status_code == 200
        assert chat(gateway, key, "echo-alias").status_code == 200
        forbidden = chat(gateway, key, "other")
        assert forbidden.status_code == 403 and "may not use model 'other'" in forbidden.json()["error"]["message"]

    def test_requests_per_minute_limit_gives_429_on_the_right_request(self, gateway):
        key = make_key(gateway, rpm_limit=3)
        statuses = [chat(gateway, key).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = chat(gateway, key)
        assert limited.headers["retry-after"].isdigit() and int(limited.headers["retry-after"]) >= 1
        assert limited.headers["x-ratelimit-limit-requests"] == "3"
        assert limited.headers["x-ratelimit-remaining-requests"] == "0"
        assert limited.json()["error"]["type"] == "rate_limit_error"
        ok_headers = chat(gateway, make_key(gateway, name="fresh", rpm_limit=5)).headers
        assert ok_headers["x-ratelimit-remaining-requests"] == "4"

    def test_anthropic_clients_get_anthropic_shaped_rate_limits(self, gateway):
        key = make_key(gateway, rpm_limit=1)
        body = {"model": "echo", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
        assert httpx.post(gateway.base_url + "/v1/messages", json=body, headers=headers).status_code == 200
        client = anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)
        with pytest.raises(anthropic.RateLimitError) as info:
            client.messages.create(**body)
        assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "rate_limit_error"
        assert int(info.value.response.headers["retry-after"]) >= 1

    def test_tokens_per_minute_limit_counts_scraped_usage(self, gateway):
        # the fake upstream reports 7 prompt + 5 completion = 12 tokens per answer
        key = make_key(gateway, tpm_limit=20)
        assert chat(gateway, key).status_code == 200  # 12 used
        assert chat(gateway, key).status_code == 200  # 24 used: over the limit from now on
        limited = chat(gateway, key)
        assert limited.status_code == 429 and "tokens per minute" in limited.json()["error"]["message"]
        assert limited.headers["x-ratelimit-limit-tokens"] == "20"

    def test_system_prompt_is_injected_into_openai_and_anthropic_shapes(self, gateway):
        key = make_key(gateway, system_prompt="You are terse.")
        echoed = httpx.post(
            gateway.base_url + "/v1/responses", json={"model": "echo", "input": "x", "instructions": "Be kind."},
            headers={"authorization": f"Bearer {key}"}, timeout=30,
        ).json()  # fmt: skip
        assert (
            echoed["json"]["instructions"].startswith("You are terse.") and "Be kind." in echoed["json"]["instructions"]
        )
        echoed = httpx.post(
            gateway.base_url + "/v1/messages",
            json={"model": "echo", "max_tokens": 5, "system": "Reply in French.", "messages": [{"role": "user", "content": "x"}]},
            headers={"x-api-key": key}, timeout=30,
        ).json()  # fmt: skip
        assert echoed["json"]["system"].startswith("You are terse.") and echoed["json"]["system"].endswith(
            "Reply in French."
        )


class TestPolicies:
    def test_rewrite_reject_and_route(self, gateway):
        api = admin(gateway)
        for rule in (
            {"name": "old names", "match": {"model": "gpt-3.5*"}, "action": "rewrite", "rewrite_model": "echo"},
            {"name": "no legal", "match": {"model": "legal-*"}, "action": "reject", "reject_status": 451,
             "reject_message": "legal models are not served here"},
            {"name": "team ops", "match": {"headers": [{"name": "x-team", "pattern": "ops"}]}, "action": "route",
             "target": {"kind": "local", "value": "other"}},
        ):  # fmt: skip
            assert api.post("/api/policies", json=rule).status_code == 201, rule
        key = make_key(gateway)
        rewritten = echo(gateway, key, "gpt-3.5-turbo")
        assert rewritten["json"]["model"] == "echo"  # what the upstream received
        rejected = chat(gateway, key, "legal-eagle")
        assert rejected.status_code == 451 and rejected.json()["error"]["message"] == "legal models are not served here"
        routed = echo(gateway, key, "echo", headers={"x-team": "ops"})
        assert routed["json"]["model"] == "other"
        wait_until(lambda: len(rows(gateway)) >= 3, message="rows")
        logged = rows(gateway)
        assert (logged[0]["policy_action"], logged[0]["routed_model"], logged[0]["upstream_model"]) == (
            "rewrite",
            "echo",
            "echo",
        )
        assert logged[1]["policy_action"] == "reject" and logged[1]["status_code"] == 451
        assert logged[2]["policy_action"] == "route" and logged[2]["upstream_model"] == "other"
        hits = {p["name"]: p["hits"] for p in api.get("/api/policies").json()}
        wait_until(lambda: {p["name"]: p["hits"] for p in api.get("/api/policies").json()}["no legal"] >= 1, timeout=15,
                   message="hit counts flushed")  # fmt: skip
        assert hits.keys() == {"old names", "no legal", "team ops"}

    def test_per_rule_body_limit_is_413(self, gateway):
        admin(gateway).post(
            "/api/policies", json={"name": "small", "match": {"path": "/v1/embeddings"}, "max_body_bytes": 200}
        )
        key = make_key(gateway)
        response = httpx.post(gateway.base_url + "/v1/embeddings", json={"model": "echo", "input": "x" * 500},
                              headers={"authorization": f"Bearer {key}"})  # fmt: skip
        assert response.status_code == 413

    def test_sampling_overrides_apply_live(self, gateway):
        api = admin(gateway)
        key = make_key(gateway)
        assert api.put("/api/sampling-overrides/echo", json={"temperature": 0.1, "top_k": 5}).status_code in (200, 201)
        echoed = httpx.post(
            gateway.base_url + "/v1/chat/completions",
            json={"model": "echo", "temperature": 1.5, "messages": [], "stream": False, "x_fake": {}},
            headers={"authorization": f"Bearer {key}"},
        )  # fmt: skip
        assert echoed.status_code == 200
        seen = echo(gateway, key, "echo", temperature=1.5)  # embeddings have no sampling: untouched
        assert seen["json"]["temperature"] == 1.5
        completion = httpx.post(
            gateway.base_url + "/v1/completions", json={"model": "echo", "prompt": "x", "temperature": 1.5},
            headers={"authorization": f"Bearer {key}"},
        ).json()  # fmt: skip
        assert completion["json"]["temperature"] == 0.1 and completion["json"]["top_k"] == 5


class TestCredentials:
    def test_injected_credential_reaches_the_upstream_and_nowhere_else(self, gateway):
        api = admin(gateway)
        assert (
            api.post("/api/credentials", json={"slug": "svc", "name": "Service", "secret": CREDENTIAL}).status_code
            == 201
        )
        rule = {"name": "inject", "match": {"model": "echo"}, "action": "continue",
                "bindings": [{"credential": "svc", "header": "x-upstream-token", "template": "Token {secret}"},
                             {"credential": "svc", "mode": "placeholder", "in_body": True}]}  # fmt: skip
        assert api.post("/api/policies", json=rule).status_code == 201, api.post("/api/policies", json=rule).text
        key = make_key(gateway)
        echoed = echo(gateway, key, "echo", input="use {{switchyard:credential:svc}} please")
        assert echoed["headers"]["x-upstream-token"] == f"Token {CREDENTIAL}"
        assert echoed["json"]["input"] == f"use {CREDENTIAL} please"
        wait_until(lambda: rows(gateway), message="row")
        [row] = rows(gateway)
        assert json.loads(row["credentials_used"]) == ["svc"]
        assert CREDENTIAL not in json.dumps({k: v for k, v in row.items() if k != "capture"}, default=str)
        assert CREDENTIAL.encode() not in zlib.decompress(row["capture"])
        assert CREDENTIAL.encode() not in (gateway.workdir / "switchyard.db").read_bytes()
        for path in ("/api/credentials", "/api/policies", "/api/requests", f"/api/requests/{row['id']}"):
            assert CREDENTIAL not in api.get(path).text, path

    def test_an_upstream_error_echoing_the_credential_is_stored_redacted(self, gateway):
        api = admin(gateway)
        api.post("/api/credentials", json={"slug": "svc", "secret": CREDENTIAL})
        rule = {"match": {"model": "echo"}, "bindings": [{"credential": "svc", "mode": "placeholder", "in_body": True}]}
        assert api.post("/api/policies", json=rule).status_code == 201
        failed = chat(
            gateway, make_key(gateway), x_fake={"status": 401, "message": "bad token {{switchyard:credential:svc}}"}
        )
        assert failed.status_code == 401
        wait_until(lambda: rows(gateway), message="row")
        [row] = rows(gateway)
        assert row["error"] == "bad token [redacted]"
        assert CREDENTIAL not in api.get("/api/requests").text

    def test_attribution_fills_client_user_and_session(self, gateway):
        key = make_key(gateway)
        httpx.post(
            gateway.base_url + "/v1/embeddings", json={"model": "echo", "input": "x", "user": "alice"},
            headers={"authorization": f"Bearer {key}", "x-session-id": "s-42", "user-agent": "MyTool/1.2"},
        )  # fmt: skip
        wait_until(lambda: rows(gateway), message="row")
        [row] = rows(gateway)
        assert (row["end_user"], row["session_id"]) == ("alice", "s-42")
        assert row["client_name"] and "MyTool" in row["client_name"]
        assert row["api_key_name"] == "test" and row["api_key_id"]


def test_a_credential_injecting_route_needs_a_key_even_with_require_auth_off(gateway_factory):
    gateway = gateway_factory(
        f"models:\n  echo:\n    cmd: {fake_cmd()}\n",
        env={"SWITCHYARD_REQUIRE_AUTH": "false", "SWITCHYARD_SECRET_KEY": SECRET_KEY},
    )
    api = admin(gateway)
    api.post("/api/credentials", json={"slug": "svc", "secret": CREDENTIAL})
    rule = {"match": {"model": "echo"}, "bindings": [{"credential": "svc", "header": "x-upstream-token"}]}
    assert api.post("/api/policies", json=rule).status_code == 201
    assert chat(gateway, None, "nothing-injected-here").status_code == 404  # open: no key needed elsewhere
    refused = chat(gateway, None)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "missing_api_key"
    assert chat(gateway, make_key(gateway)).status_code == 200


def test_require_auth_is_switched_live_from_the_settings(gateway):
    api = admin(gateway)
    assert chat(gateway, None).status_code == 401
    assert api.patch("/api/settings", json={"require_auth": False}).json()["require_auth"] is False
    assert chat(gateway, None).status_code == 200  # open now, on the very next request
    assert api.get("/api/settings").status_code == 200  # the admin API stays protected: ADMIN_HEADERS needed
    assert httpx.get(gateway.base_url + "/api/settings").status_code == 401
    assert api.patch("/api/settings", json={"require_auth": True}).status_code == 200
    assert chat(gateway, None).status_code == 401
