"""Switchyard on the server databases it supports beside SQLite: PostgreSQL and MariaDB, the real servers on loopback.

Each test gets a database of its own, created and dropped here. The migrations must build exactly the schema the
models describe, walk down and up again, and the gateway must keep all of its state there: the request log written
by the batch writer, searches and histograms (whose time arithmetic is per dialect), keys and their usage, policy
rules and their hits, credentials, settings, model events, users, and the prune and compact actions.
"""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import command
from api.db import access as _access_models  # noqa: F401  (registers the access tables)
from api.db import admin_models as _admin_models  # noqa: F401  (registers the admin tables)
from api.db.migrate import alembic_config, upgrade
from api.db.models import Base, RequestLog
from tests.integration.conftest import fake_cmd
from tests.servers import ADMIN_HEADERS, GatewayProcess, free_port_block, wait_until

#: dialect → URL of the server's maintenance database; a test's own database is created beside it
SERVERS = {
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
    "mariadb": "mysql+asyncmy://root@127.0.0.1:3306/mysql",
}
SECRET_KEY = "test-vault-secret-0123456789abcdefghij"
PASSWORD = "correct horse battery staple"
MODELS = f"""
models:
  org/m:
    cmd: {fake_cmd()}
    aliases: [m-alias]
  other:
    cmd: {fake_cmd()}
groups:
  both: {{swap: false, exclusive: false, members: [org/m, other]}}
"""


def run(coroutine_function, *args: Any) -> Any:
    return asyncio.run(coroutine_function(*args))


async def _execute_autocommit(url: str, *statements: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(params=sorted(SERVERS))
def database_url(request) -> Iterator[str]:
    """A fresh, empty database on the real server; dropped afterwards."""
    server = SERVERS[request.param]
    name = f"sy_test_{uuid.uuid4().hex[:12]}"
    run(_execute_autocommit, server, f"CREATE DATABASE {name}")
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        drop = f"DROP DATABASE IF EXISTS {name}"
        run(_execute_autocommit, server, drop + (" WITH (FORCE)" if request.param == "postgresql" else ""))


async def _schema_drift(url: str) -> tuple[list[Any], set[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:

            def inspect_schema(sync_connection) -> tuple[list[Any], set[str]]:  # type: ignore[no-untyped-def]
                context = MigrationContext.configure(sync_connection, opts={"compare_type": True})
                return compare_metadata(context, Base.metadata), set(inspect(sync_connection).get_table_names())

            return await connection.run_sync(inspect_schema)
    finally:
        await engine.dispose()


async def _insert_requests(url: str, rows: list[dict[str, Any]]) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(RequestLog), rows)
    finally:
        await engine.dispose()


def log_row(created_at: datetime, **values: Any) -> dict[str, Any]:
    """A request_logs row as the gateway's writer leaves it."""
    return {
        "created_at": created_at,
        "method": "POST",
        "path": "/v1/chat/completions",
        "status_code": 200,
        "duration_ms": 5.0,
        "streamed": False,
        "cost_known": False,
        "prompt_tokens": None,
        "completion_tokens": None,
        "error": None,
        **values,
    }


# ------------------------------------------------------------------------------------------------ migrations


def test_migrations_build_the_models_schema_and_walk_down_and_up(database_url):
    upgrade(database_url)
    drift, tables = run(_schema_drift, database_url)
    assert drift == [], f"the migrations and the models disagree: {drift}"
    assert {"request_logs", "model_events", "api_keys", "policy_rules", "credentials", "users"} <= tables

    command.downgrade(alembic_config(database_url), "base")
    _, tables = run(_schema_drift, database_url)
    assert tables <= {"alembic_version"}

    upgrade(database_url)
    drift, _ = run(_schema_drift, database_url)
    assert drift == []


# -------------------------------------------------------------------------------------------------- gateway


def test_the_gateway_keeps_all_its_state_in_the_server_database(database_url, gateway_factory):
    gateway = gateway_factory(
        MODELS,
        env={
            "SWITCHYARD_DATABASE_URL": database_url,
            "SWITCHYARD_REQUIRE_AUTH": "true",
            "SWITCHYARD_SECRET_KEY": SECRET_KEY,
        },
    )
    api = httpx.Client(base_url=gateway.base_url, headers=ADMIN_HEADERS, timeout=30)
    system = api.get("/api/system").json()
    assert system["database"]["dialect"] in database_url.split("+")[0] and system["database"]["size_bytes"] > 0

    # keys, a routing rule and a credential, all written to the server
    key = api.post("/api/keys", json={"name": "db test"}).json()
    other_key = api.post("/api/keys", json={"name": "other"}).json()
    rule = api.post(
        "/api/policies", json={"name": "old name", "match": {"model": "legacy-*"}, "action": "rewrite",
                               "rewrite_model": "other"},
    ).json()  # fmt: skip
    assert api.post("/api/credentials", json={"slug": "tok", "secret": "s3cret-value"}).status_code == 201

    def chat(model: str, secret: str = key["secret"], **extra: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
        headers = {"authorization": f"Bearer {secret}"} if secret else {}
        return httpx.post(gateway.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=30)

    assert chat("org/m").status_code == 200
    assert chat("m-alias", stream=True, stream_options={"include_usage": True}).status_code == 200
    assert chat("other", x_fake={"status": 500}).status_code == 500
    assert chat("legacy-gpt").status_code == 200
    assert chat("no-such-model").status_code == 404
    assert chat("org/m", secret=other_key["secret"]).status_code == 200
    assert chat("org/m", secret="").status_code == 401
    wait_until(lambda: len(api.get("/api/requests").json()["items"]) == 7, timeout=15, message="seven logged rows")

    # search: filters, case-insensitive text with LIKE wildcards taken literally, cursor pages
    def ids(**params: Any) -> list[int]:
        return [r["id"] for r in api.get("/api/requests", params={"limit": 500, **params}).json()["items"]]

    rows = {r["id"]: r for r in api.get("/api/requests", params={"limit": 500}).json()["items"]}
    every = ids()
    assert every == sorted(every, reverse=True)
    assert len(every) == 7 and len(ids(key=key["id"])) == 5 and len(ids(key="other")) == 1
    assert [rows[i]["status_code"] for i in ids(status="401")] == [401]
    assert [rows[i]["model"] for i in ids(q="SUCH-model")] == ["no-such-model"]
    assert ids(q="%") == [] and ids(q="_") == []
    assert [rows[i]["status_code"] for i in ids(status="5xx")] == [500]
    assert [rows[i]["streamed"] for i in ids(streamed="true")] == [True]
    now = datetime.now(UTC)
    assert set(ids(since=(now - timedelta(minutes=5)).isoformat())) == set(every)
    assert ids(until=(now - timedelta(minutes=5)).isoformat()) == []
    pages, cursor = [], None
    while True:
        page = api.get("/api/requests", params={"limit": 4, **({"before": cursor} if cursor else {})}).json()
        pages.extend(r["id"] for r in page["items"])
        if (cursor := page["next_cursor"]) is None:
            break
    assert pages == every

    # the routing decision and the tokens are on the rows; key usage adds them up by model
    [rewritten] = [rows[i] for i in ids(model="legacy-gpt")]
    assert (rewritten["policy_rule_id"], rewritten["policy_action"], rewritten["upstream_model"]) == (
        rule["id"],
        "rewrite",
        "other",
    )
    assert api.get(f"/api/policies/{rule['id']}").json()["hits"] == 1
    streamed = rows[ids(streamed="true")[0]]
    assert streamed["prompt_tokens"] > 0 and streamed["completion_tokens"] > 0 and streamed["ttft_ms"] is not None
    detail = api.get(f"/api/requests/{every[-1]}").json()
    assert detail["request"]["id"] == every[-1]
    usage = api.get(f"/api/keys/{key['id']}/usage").json()
    assert usage["requests"] == 5 and usage["errors"] == 2
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (21, 15)  # three answered requests, 7 + 5 each
    assert {m["model"]: (m["requests"], m["errors"]) for m in usage["by_model"]} == {
        "org/m": (1, 0),
        "m-alias": (1, 0),
        "legacy-gpt": (1, 0),
        "other": (1, 1),
        "no-such-model": (1, 1),
    }

    # model events: a load and an unload leave their history
    assert api.post("/api/models/other/unload").status_code == 200
    wait_until(
        lambda: [e["state"] for e in api.get("/api/models/other").json()["history"]][:2] == ["stopped", "stopping"],
        message="unload history",
    )

    # the histogram's time arithmetic runs in the database's own dialect
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    run(
        _insert_requests,
        database_url,
        [
            log_row(start + timedelta(minutes=10), model="h", prompt_tokens=3, completion_tokens=4),
            log_row(start + timedelta(minutes=50), model="h", status_code=502, error="boom"),
            log_row(start + timedelta(hours=2, minutes=1), model="h", prompt_tokens=10, completion_tokens=20),
            log_row(start - timedelta(minutes=1), model="h"),
        ],
    )
    params = {"since": start.isoformat(), "until": (start + timedelta(hours=3)).isoformat(), "buckets": 3}
    histogram = api.get("/api/requests/histogram", params={**params, "model": "h"}).json()
    assert histogram["bucket_seconds"] == 3600
    buckets = histogram["buckets"]
    assert [(b["count"], b["errors"]) for b in buckets] == [(2, 1), (0, 0), (1, 0)]
    assert [(b["prompt_tokens"], b["completion_tokens"]) for b in buckets] == [(3, 4), (0, 0), (10, 20)]

    # settings persist; a restart finds keys, rows, rules and settings where they were
    assert api.patch("/api/settings", json={"retention_days": 2}).status_code == 200
    gateway.stop()
    gateway.start()
    assert api.get("/api/settings").json()["retention_days"] == 2
    assert chat("org/m").status_code == 200
    wait_until(lambda: len(ids(key=key["id"])) == 6, message="the row after the restart")
    assert api.get(f"/api/policies/{rule['id']}").json()["hits"] == 1
    assert [c["slug"] for c in api.get("/api/credentials").json()] == ["tok"]

    # prune drops what is older than the retention, compact gives the space back
    pruned = api.post("/api/maintenance/prune").json()
    assert pruned["request_logs"] == 4  # the histogram's rows, three days old
    assert ids(model="h") == []
    compacted = api.post("/api/maintenance/compact")
    assert compacted.status_code == 200, compacted.text
    assert compacted.json()["size_after"] > 0

    # dashboard users live there too
    with httpx.Client(base_url=gateway.base_url, timeout=30) as tab:
        assert tab.post("/api/auth/signup", json={"username": "admin", "password": PASSWORD}).status_code == 201
    with httpx.Client(base_url=gateway.base_url, timeout=30) as tab:
        assert tab.post("/api/auth/login", json={"username": "admin", "password": PASSWORD}).status_code == 200
        assert tab.get("/api/auth/me").json()["user"]["last_login_at"] is not None


# ------------------------------------------------------------------------------------------------ two nodes


def test_two_nodes_share_one_database(database_url, tmp_path):
    """Two gateways started together on one empty database: both migrate safely, then share keys, rules, settings
    and the log."""
    nodes = []
    for index in range(2):
        workdir = tmp_path / f"node{index}"
        workdir.mkdir()
        text = f"startPort: {free_port_block()}\n" + textwrap.dedent(MODELS)
        env = {"SWITCHYARD_DATABASE_URL": database_url, "SWITCHYARD_REQUIRE_AUTH": "true"}
        nodes.append(GatewayProcess(workdir, text, env))
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda node: node.start(timeout=60), nodes))  # both run the migrations at once
        first, second = (httpx.Client(base_url=n.base_url, headers=ADMIN_HEADERS, timeout=30) for n in nodes)

        key = first.post("/api/keys", json={"name": "shared"}).json()
        rule = first.post(
            "/api/policies", json={"match": {"model": "legacy-*"}, "action": "rewrite", "rewrite_model": "other"}
        ).json()
        body = {"model": "legacy-gpt", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"authorization": f"Bearer {key['secret']}"}

        def answered_by_second() -> bool:
            return httpx.post(nodes[1].base_url + "/v1/chat/completions", json=body, headers=headers).status_code == 200

        # the second node learns about the key and the rule from the database within its refresh interval
        wait_until(answered_by_second, timeout=20, interval=0.5, message="the key on the second node")
        assert httpx.post(nodes[0].base_url + "/v1/chat/completions", json=body, headers=headers).status_code == 200

        def logged() -> list[dict[str, Any]]:
            return first.get("/api/requests", params={"key": key["id"], "status": "200"}).json()["items"]

        wait_until(lambda: len(logged()) == 2, message="both nodes' rows in one log")
        assert {r["policy_rule_id"] for r in logged()} == {rule["id"]}
        # each node adds its own hits to the stored count
        wait_until(lambda: second.get(f"/api/policies/{rule['id']}").json()["hits"] == 2, timeout=20, interval=0.5,
                   message="hits from both nodes")  # fmt: skip
        # live settings changed on one node apply on the other
        assert first.patch("/api/settings", json={"capture_max_bytes": 1234}).status_code == 200
        wait_until(lambda: second.get("/api/settings").json()["capture_max_bytes"] == 1234, timeout=20, interval=0.5,
                   message="the setting on node two")  # fmt: skip
        first.delete(f"/api/keys/{key['id']}")
        wait_until(lambda: not answered_by_second(), timeout=20, interval=0.5, message="the revocation on node two")
    finally:
        for node in nodes:
            node.stop()
