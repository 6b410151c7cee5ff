"""The access-control admin API through the real gateway process: keys, policies, credentials, settings, CLI."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import create_engine, insert

from api.db.models import RequestLog
from core.keys import display_prefix, hash_key
from core.vault import Vault
from tests.servers import ADMIN_HEADERS, ROOT, GatewayProcess, free_port_block, wait_until

SECRET_KEY = "test-vault-secret-0123456789abcdefghij"
CONFIG = "models: {}\n"


@pytest.fixture
def gateway(gateway_factory):
    return gateway_factory(CONFIG, env={"SWITCHYARD_SECRET_KEY": SECRET_KEY})


def admin(gateway) -> httpx.Client:
    return httpx.Client(base_url=gateway.base_url, headers=ADMIN_HEADERS, timeout=10)


def database_bytes(gateway) -> bytes:
    """Everything SQLite holds for the gateway: the database file and its write-ahead log."""
    files = [gateway.workdir / "switchyard.db", gateway.workdir / "switchyard.db-wal"]
    return b"".join(path.read_bytes() for path in files if path.exists())


def query(gateway, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(gateway.workdir / "switchyard.db") as connection:
        return connection.execute(sql, params).fetchall()


# ------------------------------------------------------------------------------------------------------- keys


def test_key_secret_is_shown_once_and_stored_only_as_a_hash(gateway):
    api = admin(gateway)
    created = api.post("/api/keys", json={"name": "laptop"})
    assert created.status_code == 201
    key = created.json()
    secret = key["secret"]
    assert secret.startswith("sy-") and len(secret) == 43 and secret.startswith(key["prefix"])

    listed = api.get("/api/keys")
    shown = api.get(f"/api/keys/{key['id']}")
    assert listed.status_code == shown.status_code == 200
    assert secret not in listed.text and secret not in shown.text and "secret" not in shown.json()
    assert [k["id"] for k in listed.json() if k["source"] == "database"] == [key["id"]]

    [(key_hash, prefix)] = query(gateway, "select key_hash, prefix from api_keys where id = ?", key["id"])
    assert (key_hash, prefix) == (hash_key(secret), key["prefix"])
    assert secret.encode() not in database_bytes(gateway)


def test_key_limits_allow_lists_and_prompt_are_edited_in_place(gateway):
    api = admin(gateway)
    key = api.post("/api/keys", json={"name": "ci", "rpm_limit": 60, "allowed_models": ["qwen*"]}).json()
    assert (key["rpm_limit"], key["tpm_limit"], key["allowed_models"], key["scopes"]) == (
        60,
        None,
        ["qwen*"],
        ["inference"],
    )

    patched = api.patch(
        f"/api/keys/{key['id']}",
        json={"name": "ci-runner", "tpm_limit": 10000, "rpm_limit": 0, "allowed_relays": ["github"],
              "system_prompt": "Answer briefly.", "scopes": ["inference", "admin"]},
    )  # fmt: skip
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["name"], body["rpm_limit"], body["tpm_limit"]) == ("ci-runner", None, 10000)  # 0 = unlimited
    assert (body["allowed_models"], body["allowed_relays"]) == (["qwen*"], ["github"])  # untouched / changed
    assert (body["system_prompt"], body["scopes"]) == ("Answer briefly.", ["admin", "inference"])
    assert api.get(f"/api/keys/{key['id']}").json() == body


def test_revoked_and_expired_keys_say_so_and_deleted_ones_are_gone(gateway):
    api = admin(gateway)
    revoked = api.post("/api/keys", json={"name": "old"}).json()
    expiring = api.post("/api/keys", json={"name": "temp"}).json()

    answer = api.post(f"/api/keys/{revoked['id']}/revoke")
    assert answer.status_code == 200 and answer.json()["state"] == "revoked" and answer.json()["revoked_at"]
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    answer = api.patch(f"/api/keys/{expiring['id']}", json={"expires_at": past})
    assert answer.status_code == 200 and answer.json()["state"] == "expired"
    states = {k["id"]: k["state"] for k in api.get("/api/keys").json()}
    assert (states[revoked["id"]], states[expiring["id"]]) == ("revoked", "expired")

    assert api.delete(f"/api/keys/{revoked['id']}").status_code == 204
    assert api.get(f"/api/keys/{revoked['id']}").status_code == 404
    assert query(gateway, "select count(*) from api_keys where id = ?", revoked["id"]) == [(0,)]


INVALID_KEYS = [
    ({"name": "   "}, "name"),
    ({"name": "x", "rpm_limit": -1}, "rpm_limit"),
    ({"name": "x", "scopes": ["root"]}, "scopes[0]"),
    ({"name": "x", "scopes": []}, "scopes"),
    ({"name": "x", "allowed_models": [""]}, "allowed_models[0]"),
    ({"name": "x", "colour": "blue"}, "data"),
    ({}, "data"),
]


def test_invalid_keys_are_refused_with_the_field_named(gateway):
    api = admin(gateway)
    for payload, key in INVALID_KEYS:
        answer = api.post("/api/keys", json=payload)
        assert answer.status_code == 400, (payload, answer.text)
        body = answer.json()
        assert body["status_code"] == 400 and body["detail"]
        assert any(problem["key"] == key for problem in body["extra"]), (payload, body)
    assert query(gateway, "select count(*) from api_keys") == [(0,)]


def test_config_and_bootstrap_keys_are_listed_but_not_editable(gateway_factory):
    gateway = gateway_factory("apiKeys: [config-key-1]\nmodels: {}\n")
    api = admin(gateway)
    external = {k["source"]: k for k in api.get("/api/keys").json()}
    assert external["config"]["name"] == "apiKeys[0]" and external["config"]["scopes"] == ["inference"]
    assert external["settings"]["name"] == "SWITCHYARD_ADMIN_TOKEN" and "admin" in external["settings"]["scopes"]
    answer = api.patch(f"/api/keys/{external['config']['id']}", json={"rpm_limit": 1})
    assert answer.status_code == 409 and "apiKeys" in answer.json()["detail"]
    assert api.delete(f"/api/keys/{external['settings']['id']}").status_code == 409


def test_config_api_keys_follow_a_config_reload(gateway_factory):
    gateway = gateway_factory("apiKeys: [first-config-key]\nmodels: {}\n")

    def config_prefixes() -> list[str]:
        return [k["prefix"] for k in admin(gateway).get("/api/keys").json() if k["source"] == "config"]

    assert config_prefixes() == [display_prefix("first-config-key")]
    gateway.config_path.write_text(gateway.config_path.read_text().replace("first-config-key", "second-config-key"))
    wait_until(lambda: config_prefixes() == [display_prefix("second-config-key")], timeout=15, message="the reload")


def test_key_usage_adds_up_the_request_log_by_model(gateway):
    api = admin(gateway)
    key = api.post("/api/keys", json={"name": "billing"}).json()
    other = api.post("/api/keys", json={"name": "other"}).json()
    now = datetime.now(UTC)

    def row(key_id, model, status, prompt, completion, cost, age_hours=0):
        return {
            "created_at": now - timedelta(hours=age_hours), "method": "POST", "path": "/v1/chat/completions",
            "model": model, "status_code": status, "duration_ms": 5.0, "prompt_tokens": prompt,
            "completion_tokens": completion, "cost_usd": cost, "streamed": False, "cost_known": cost is not None,
            "api_key_id": key_id,
        }  # fmt: skip

    engine = create_engine(f"sqlite:///{gateway.workdir / 'switchyard.db'}")
    with engine.begin() as connection:  # rows as the gateway's log writer leaves them
        connection.execute(
            insert(RequestLog),
            [
                row(key["id"], "qwen", 200, 100, 20, 0.5),
                row(key["id"], "qwen", 200, 50, 10, 0.25),
                row(key["id"], "qwen", 500, 10, None, None),
                row(key["id"], "llama", 429, None, None, None),
                row(key["id"], "llama", 200, 7, 3, None, age_hours=48),
                row(other["id"], "qwen", 200, 1000, 1000, 9.0),
            ],
        )
    engine.dispose()

    usage = api.get(f"/api/keys/{key['id']}/usage").json()
    assert (usage["requests"], usage["errors"], usage["prompt_tokens"], usage["completion_tokens"]) == (5, 2, 167, 33)
    assert (usage["total_tokens"], usage["cost_usd"]) == (200, 0.75)
    by_model = {m["model"]: m for m in usage["by_model"]}
    assert (by_model["qwen"]["requests"], by_model["qwen"]["errors"], by_model["qwen"]["cost_usd"]) == (3, 1, 0.75)
    assert (by_model["llama"]["requests"], by_model["llama"]["errors"], by_model["llama"]["total_tokens"]) == (2, 1, 10)

    since = (now - timedelta(hours=1)).isoformat()
    recent = api.get(f"/api/keys/{key['id']}/usage", params={"since": since}).json()
    assert recent["requests"] == 4 and {m["model"]: m["requests"] for m in recent["by_model"]} == {
        "qwen": 3,
        "llama": 1,
    }
    assert api.get("/api/keys/key_doesnotexist/usage").status_code == 404


# --------------------------------------------------------------------------------------------------- policies


def test_policy_rules_are_ordered_edited_reordered_and_deleted(gateway):
    api = admin(gateway)
    first = api.post("/api/policies", json={"name": "block big", "action": "continue", "max_body_bytes": 1000})
    assert first.status_code == 201, first.text
    second = api.post(
        "/api/policies",
        json={"name": "old names", "match": {"model": "gpt-3.5*"}, "action": "rewrite", "rewrite_model": "qwen"},
    ).json()
    top = api.post(
        "/api/policies",
        json={"id": "no-friday", "position": 0, "match": {"headers": [{"name": "X-Team", "pattern": "re:^ops$"}]},
              "action": "reject", "reject_status": 451, "reject_message": "not today"},
    ).json()  # fmt: skip
    rules = api.get("/api/policies").json()
    assert [r["id"] for r in rules] == ["no-friday", first.json()["id"], second["id"]]
    assert [r["position"] for r in rules] == [0, 1, 2] and all(r["hits"] == 0 for r in rules)
    assert rules[0]["match"]["headers"] == [{"name": "X-Team", "pattern": "re:^ops$"}]
    assert (rules[0]["reject_status"], rules[0]["reject_message"]) == (451, "not today")

    patched = api.patch(f"/api/policies/{second['id']}", json={"rewrite_model": "qwen3", "enabled": False})
    assert patched.status_code == 200 and (patched.json()["rewrite_model"], patched.json()["enabled"]) == (
        "qwen3",
        False,
    )
    assert patched.json()["match"] == {"path": "", "model": "gpt-3.5*", "key_ids": [], "headers": []}

    new_order = [second["id"], top["id"], first.json()["id"]]
    reordered = api.post("/api/policies/reorder", json={"ids": new_order})
    assert reordered.status_code == 200 and [r["id"] for r in reordered.json()] == new_order
    assert [r["id"] for r in api.get("/api/policies").json()] == new_order

    assert api.delete(f"/api/policies/{top['id']}").status_code == 204
    rules = api.get("/api/policies").json()
    assert [(r["id"], r["position"]) for r in rules] == [(second["id"], 0), (first.json()["id"], 1)]
    assert api.get(f"/api/policies/{top['id']}").status_code == 404


INVALID_RULES = [
    ({"action": "rewrite"}, "rewrite_model"),
    ({"action": "route"}, "target"),
    ({"action": "route", "target": {"kind": "upstream", "base_url": "api.openai.com"}}, "target.base_url"),
    ({"match": {"model": "re:qwen("}}, "match.model"),
    ({"match": {"headers": [{"name": " "}]}}, "match.headers[0].name"),
    ({"action": "reject", "reject_status": 200}, "reject_status"),
    ({"action": "teleport"}, "action"),
    ({"bindings": [{"credential": "nope", "header": "x-api-key"}]}, "bindings[0].credential"),
    ({"bindings": [{"credential": "tok", "header": "bad header"}]}, "bindings[0]"),
]


def test_invalid_rules_are_refused_with_the_problem_named(gateway):
    api = admin(gateway)
    assert api.post("/api/credentials", json={"slug": "tok", "secret": "x"}).status_code == 201
    for payload, key in INVALID_RULES:
        answer = api.post("/api/policies", json=payload)
        assert answer.status_code == 400, (payload, answer.text)
        assert any(problem["key"] == key for problem in answer.json()["extra"]), (payload, answer.json())
    assert api.get("/api/policies").json() == []


def test_reorder_must_name_every_rule_exactly_once(gateway):
    api = admin(gateway)
    ids = [api.post("/api/policies", json={"name": f"r{i}"}).json()["id"] for i in range(3)]
    for order, fragment in [
        (ids[:2], "missing"),
        ([*ids, "ghost"], "no such rule: ghost"),
        ([ids[0], ids[0], ids[1], ids[2]], "more than once"),
    ]:
        answer = api.post("/api/policies/reorder", json={"ids": order})
        assert answer.status_code == 400 and fragment in answer.text
    assert [r["id"] for r in api.get("/api/policies").json()] == ids


# ------------------------------------------------------------------------------------------------ credentials


def every_admin_response(gateway) -> str:
    """The text of every admin GET that could show a credential."""
    api = admin(gateway)
    paths = ["/api/keys", "/api/policies", "/api/credentials", "/api/mcp-relays", "/api/requests",
             "/api/settings/attribution", "/api/sampling-overrides", "/api/docs/openapi.json"]  # fmt: skip
    paths += [f"/api/credentials/{c['slug']}" for c in api.get("/api/credentials").json()]
    paths += [f"/api/mcp-relays/{r['slug']}/snippet" for r in api.get("/api/mcp-relays").json()]
    texts = []
    for path in paths:
        answer = api.get(path)
        assert answer.status_code == 200, (path, answer.text)
        texts.append(answer.text)
    return "\n".join(texts)


def test_credentials_are_write_only_and_encrypted_at_rest(gateway):
    api = admin(gateway)
    value = "sk-ant-api03-VERYSECRET-value-1234567890"
    created = api.post("/api/credentials", json={"slug": "anthropic-prod", "name": "Anthropic", "secret": value})
    assert created.status_code == 201
    body = created.json()
    assert (body["slug"], body["name"], body["problem"]) == ("anthropic-prod", "Anthropic", None)
    assert "secret" not in body and value not in created.text

    replacement = "sk-ant-api03-ROTATED-value-0987654321"
    patched = api.patch("/api/credentials/anthropic-prod", json={"secret": replacement, "description": "prod"})
    assert patched.status_code == 200 and replacement not in patched.text
    api.post("/api/mcp-relays", json={"slug": "r", "upstream_url": "http://127.0.0.1:9/mcp",
                                      "bindings": [{"credential": "anthropic-prod", "header": "x-api-key"}]})  # fmt: skip

    everything = every_admin_response(gateway)
    assert value not in everything and replacement not in everything
    stored = database_bytes(gateway)
    assert value.encode() not in stored and replacement.encode() not in stored
    [(ciphertext,)] = query(gateway, "select ciphertext from credentials where slug = 'anthropic-prod'")
    assert Vault(SECRET_KEY).decrypt(ciphertext, "anthropic-prod") == replacement  # really encrypted, not dropped
    listed = api.get("/api/credentials").json()
    assert listed[0]["references"] == {"rules": [], "relays": ["r"]}


@pytest.mark.parametrize("secret_key", ["", "too-short-a-secret"], ids=["unset", "too-short"])
def test_without_a_usable_secret_key_no_credential_is_stored(gateway_factory, secret_key):
    gateway = gateway_factory(CONFIG, env={"SWITCHYARD_SECRET_KEY": secret_key})
    answer = admin(gateway).post("/api/credentials", json={"slug": "tok", "secret": "the-value-xyz"})
    assert answer.status_code == 503
    detail = answer.json()["detail"]
    assert "SWITCHYARD_SECRET_KEY" in detail and "32" in detail
    assert query(gateway, "select count(*) from credentials") == [(0,)]
    assert b"the-value-xyz" not in database_bytes(gateway)


def test_a_different_secret_key_is_reported_and_refused(tmp_path):
    workdir = tmp_path / "gw"
    workdir.mkdir()
    config = f"startPort: {free_port_block()}\n{CONFIG}"
    first = GatewayProcess(workdir, config, {"SWITCHYARD_SECRET_KEY": SECRET_KEY}).start()
    try:
        api = admin(first)
        assert api.post("/api/credentials", json={"slug": "tok", "secret": "v1-secret"}).status_code == 201
        key = api.post("/api/keys", json={"name": "relay user", "allowed_relays": ["*"]}).json()["secret"]
        api.post("/api/mcp-relays", json={"slug": "r", "upstream_url": "http://127.0.0.1:9/mcp",
                                          "bindings": [{"credential": "tok", "header": "x-token"}]})  # fmt: skip
    finally:
        first.stop()

    second = GatewayProcess(workdir, config, {"SWITCHYARD_SECRET_KEY": "a-completely-different-secret-0123456789"})
    second.start()
    try:
        api = admin(second)
        [credential] = api.get("/api/credentials").json()
        assert "different SWITCHYARD_SECRET_KEY" in credential["problem"]
        refused = api.post("/api/credentials", json={"slug": "new", "secret": "v2-secret"})
        assert refused.status_code == 409 and "SWITCHYARD_SECRET_KEY" in refused.json()["detail"]
        assert query(second, "select slug from credentials") == [("tok",)]

        relayed = httpx.post(second.base_url + "/mcp-relays/r", headers={"x-switchyard-api-key": key}, json={})
        assert relayed.status_code == 502
        assert "different SWITCHYARD_SECRET_KEY" in relayed.json()["error"]["message"]

        # entering the credential again under the new secret is the way out
        assert api.patch("/api/credentials/tok", json={"secret": "v2-secret"}).status_code == 200
        assert api.get("/api/credentials/tok").json()["problem"] is None
    finally:
        second.stop()


def test_deleting_a_referenced_credential_needs_confirmation(gateway):
    api = admin(gateway)
    api.post("/api/credentials", json={"slug": "tok", "secret": "value"})
    rule = api.post("/api/policies", json={"bindings": [{"credential": "tok", "header": "x-api-key"}]}).json()
    api.post("/api/mcp-relays", json={"slug": "gh", "upstream_url": "https://example.invalid/mcp",
                                      "bindings": [{"credential": "tok", "mode": "placeholder"}]})  # fmt: skip

    refused = api.delete("/api/credentials/tok")
    assert refused.status_code == 409
    assert refused.json()["extra"] == {"rules": [rule["id"]], "relays": ["gh"]}
    assert "confirm=true" in refused.json()["detail"]
    assert api.get("/api/credentials/tok").status_code == 200

    assert api.delete("/api/credentials/tok", params={"confirm": "true"}).status_code == 204
    assert api.get("/api/credentials/tok").status_code == 404
    api.post("/api/credentials", json={"slug": "unused", "secret": "v"})
    assert api.delete("/api/credentials/unused").status_code == 204  # nothing references it: no confirmation


def test_credential_slugs_are_validated_and_unique(gateway):
    api = admin(gateway)
    assert api.post("/api/credentials", json={"slug": "has space", "secret": "v"}).status_code == 400
    assert api.post("/api/credentials", json={"slug": "ok", "secret": ""}).status_code == 400
    assert api.post("/api/credentials", json={"slug": "ok", "secret": "v"}).status_code == 201
    assert api.post("/api/credentials", json={"slug": "ok", "secret": "w"}).status_code == 409


# ------------------------------------------------------------------------------------------------- MCP relays


def test_relay_crud_and_claude_code_snippet(gateway):
    api = admin(gateway)
    created = api.post(
        "/api/mcp-relays", json={"slug": "docs", "name": "Docs", "upstream_url": "http://127.0.0.1:9/mcp"}
    )
    assert created.status_code == 201 and created.json()["path"] == "/mcp-relays/docs"
    snippet = api.get("/api/mcp-relays/docs/snippet").json()
    assert snippet == {
        "mcpServers": {
            "docs": {
                "type": "http",
                "url": f"{gateway.base_url}/mcp-relays/docs",
                "headers": {"x-switchyard-api-key": "${SWITCHYARD_API_KEY}"},
            }
        }
    }
    assert api.patch("/api/mcp-relays/docs", json={"enabled": False}).json()["enabled"] is False
    assert api.post("/api/mcp-relays", json={"slug": "docs", "upstream_url": "http://x/mcp"}).status_code == 409
    for bad_url in ("ftp://host/mcp", "not a url", "https://user:pass@host/mcp"):
        answer = api.post("/api/mcp-relays", json={"slug": "other", "upstream_url": bad_url})
        assert answer.status_code == 400 and answer.json()["extra"][0]["key"] == "upstream_url", bad_url
    assert api.delete("/api/mcp-relays/docs").status_code == 204
    assert api.get("/api/mcp-relays/docs").status_code == 404


# --------------------------------------------------------------------------------------------------- settings


def test_attribution_mapping_round_trip(gateway):
    api = admin(gateway)
    defaults = api.get("/api/settings/attribution").json()
    assert defaults["customized"] == [] and defaults["session"][0]["name"] == "x-claude-code-session-id"

    mapping = {
        "client": [{"kind": "header", "name": "x-app-name"}],
        "session": ["header:x-my-session", {"kind": "body", "name": "metadata.conversation", "pattern": "^c-(.+)$"}],
    }
    answer = api.put("/api/settings/attribution", json=mapping)
    assert answer.status_code == 200, answer.text
    effective = api.get("/api/settings/attribution").json()
    assert effective == answer.json()
    assert effective["customized"] == ["client", "session"]
    assert effective["client"] == [{"kind": "header", "name": "x-app-name", "pattern": "", "fallback": False}]
    assert [s["name"] for s in effective["session"]] == ["x-my-session", "metadata.conversation"]
    assert effective["end_user"] == defaults["end_user"]  # left out: keeps the default
    assert api.put("/api/settings/attribution", json=effective).json() == effective  # a GET answer PUTs back

    bad = api.put("/api/settings/attribution", json={"session": [{"kind": "body", "name": "x", "pattern": "("}]})
    assert bad.status_code == 400 and "invalid pattern" in bad.text
    assert api.put("/api/settings/attribution", json={"session": ["cookie:sid"]}).status_code == 400
    assert api.get("/api/settings/attribution").json() == effective  # a refused change changes nothing

    assert api.delete("/api/settings/attribution").status_code == 204
    assert api.get("/api/settings/attribution").json() == defaults


def test_sampling_overrides_round_trip(gateway):
    api = admin(gateway)
    assert api.get("/api/sampling-overrides/org/qwen-7b").status_code == 404
    answer = api.put("/api/sampling-overrides/org/qwen-7b", json={"temperature": 0.2, "top_k": 40})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"model": "org/qwen-7b", "values": {"temperature": 0.2, "top_k": 40}}
    assert api.get("/api/sampling-overrides/org/qwen-7b").json() == answer.json()
    replaced = api.put("/api/sampling-overrides/org/qwen-7b", json={"repeat_penalty": 1.1})
    assert replaced.json()["values"] == {"repeat_penalty": 1.1}
    assert api.get("/api/sampling-overrides").json() == [replaced.json()]

    assert api.put("/api/sampling-overrides/m", json={"top_p": 1.5}).status_code == 400
    assert api.put("/api/sampling-overrides/m", json={"temprature": 1}).status_code == 400
    assert api.put("/api/sampling-overrides/m", json={}).status_code == 400
    assert api.delete("/api/sampling-overrides/org/qwen-7b").status_code == 204
    assert api.get("/api/sampling-overrides").json() == []


def test_admin_changes_are_documented_in_openapi(gateway):
    paths = admin(gateway).get("/api/docs/openapi.json").json()["paths"]
    for path in ("/api/keys", "/api/keys/{key_id}/usage", "/api/policies/reorder", "/api/credentials/{slug}",
                 "/api/mcp-relays/{slug}/snippet", "/api/settings/attribution", "/api/sampling-overrides/{model}"):  # fmt: skip
        assert path in paths, path


# ------------------------------------------------------------------------------------------------------- CLI


def test_cli_creates_a_key_the_running_gateway_accepts(gateway):
    admin(gateway).post("/api/mcp-relays", json={"slug": "r", "upstream_url": "http://127.0.0.1:9/mcp"})
    env = {**os.environ, "SWITCHYARD_DATABASE_URL": gateway.env["SWITCHYARD_DATABASE_URL"],
           "SWITCHYARD_ENV_FILE": str(gateway.workdir / ".env")}  # fmt: skip
    created = subprocess.run(
        [sys.executable, "-m", "api.cli", "keys", "create", "--name", "terminal", "--rpm", "30",
         "--models", "qwen*", "tiny", "--relays", "*"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    [secret] = [word for word in created.stdout.split() if word.startswith("sy-")]
    listed = subprocess.run([sys.executable, "-m", "api.cli", "keys", "list"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert "terminal" in listed.stdout and secret[:10] in listed.stdout and secret not in listed.stdout

    [key] = [k for k in admin(gateway).get("/api/keys").json() if k["name"] == "terminal"]
    assert (key["rpm_limit"], key["allowed_models"], key["allowed_relays"]) == (30, ["qwen*", "tiny"], ["*"])

    # the running gateway picks the key up by itself (the CLI bumps the access version it polls): the key
    # opens the relay; 401 would mean the gateway does not know it, 502 is the relay's upstream (port 9) not there
    def relay_status() -> int:
        return httpx.post(
            gateway.base_url + "/mcp-relays/r", headers={"x-switchyard-api-key": secret}, json={}
        ).status_code

    wait_until(lambda: relay_status() != 401, timeout=15, message="the gateway to load the CLI's key")
    assert relay_status() == 502
