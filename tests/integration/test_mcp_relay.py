"""MCP relays through the real gateway: the `mcp` SDK client → /mcp-relays/{slug} → a real MCP server."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from api.gateway.mcp_relay import MAX_PENDING_BYTES, StreamRedactor
from core.vault import Redactor
from tests.integration.test_access_admin import admin, database_bytes, every_admin_response
from tests.servers import ROOT, free_port, wait_until

SECRET_KEY = "relay-vault-secret-0123456789abcdefghijkl"
UPSTREAM_TOKEN = "ghp_RelayInjectedToken0123456789abcdef"
MCP_ECHO = ROOT / "tests/upstreams/mcp_echo.py"


def wait_listening(url: str) -> None:
    def listening() -> bool:
        try:
            httpx.get(url, timeout=1)
        except httpx.HTTPError:
            return False
        return True

    wait_until(listening, timeout=30, message="the MCP test server")


@pytest.fixture(params=["sse", "json"])
def mcp_server(request) -> Iterator[str]:
    """The test MCP server's URL (it may still be starting); it answers POSTs with SSE streams, or plain JSON."""
    port = free_port()
    extra = ["--json-response"] if request.param == "json" else []
    process = subprocess.Popen(
        [sys.executable, str(MCP_ECHO), "--port", str(port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield f"http://127.0.0.1:{port}/mcp"
    process.terminate()
    process.wait(10)


@pytest.fixture
def relay(gateway_factory, mcp_server):
    """A gateway with relay `echo` (injecting the stored token as a bearer token) and two keys."""
    gateway = gateway_factory("models: {}\n", env={"SWITCHYARD_SECRET_KEY": SECRET_KEY})
    wait_listening(mcp_server)  # both started at once
    api = admin(gateway)
    assert api.post("/api/credentials", json={"slug": "gh-token", "secret": UPSTREAM_TOKEN}).status_code == 201
    answer = api.post(
        "/api/mcp-relays",
        json={"slug": "echo", "upstream_url": mcp_server,
              "bindings": [{"credential": "gh-token", "header": "authorization", "template": "Bearer {secret}"}]},
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    allowed = api.post("/api/keys", json={"name": "allowed", "allowed_relays": ["ech*"]}).json()
    other = api.post("/api/keys", json={"name": "other relays only", "allowed_relays": ["github"]}).json()
    return gateway, allowed, other


async def call_tools(url: str, headers: dict[str, str], mode: str = "legacy") -> tuple[list[str], dict, str]:
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        tools = [tool.name for tool in (await client.list_tools()).tools]
        whoami = json.loads((await client.call_tool("whoami", {})).content[0].text)
        added = (await client.call_tool("add", {"a": 2, "b": 40})).content[0].text
    return tools, whoami, added


def innermost(error: BaseException) -> str:
    """The message of the error at the bottom of the SDK's task-group exception groups."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return str(error)


def settled_rows(gateway, complete: Callable[[list[dict]], bool]) -> list[dict]:
    """The stored rows once `complete` holds and no new row arrived for a moment (the log writer is batched)."""
    seen: list[list[dict]] = [[]]

    def settled() -> bool:
        rows = stored_rows(gateway)
        done = complete(rows) and len(rows) == len(seen[-1])
        seen.append(rows)
        return done

    wait_until(settled, timeout=15, interval=0.3, message="the relay's request rows")
    return seen[-1]


def stored_rows(gateway) -> list[dict]:
    with sqlite3.connect(gateway.workdir / "switchyard.db") as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute("select * from request_logs order by id")]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_tool_calls_go_through_with_the_credential_injected_and_hidden(relay, mode):
    gateway, allowed, _ = relay
    url = gateway.base_url + "/mcp-relays/echo"
    headers = {"x-switchyard-api-key": allowed["secret"], "x-session-id": "mcp-session-7"}
    tools, whoami, added = await call_tools(url, headers, mode)

    assert set(tools) == {"whoami", "add"} and added == "42"
    # the MCP server received the stored token; the client only ever sees it redacted
    assert whoami["authorization_sha256"] == hashlib.sha256(f"Bearer {UPSTREAM_TOKEN}".encode()).hexdigest()
    assert whoami["authorization"] == "Bearer [redacted]"
    assert whoami["switchyard_key_seen"] is False  # the Switchyard key is not forwarded
    if mode == "legacy":
        assert whoami["session"]  # Mcp-Session-Id travelled from the server, through the client, back

    def logged(rows: list[dict]) -> bool:
        methods = [row["method"] for row in rows]
        # legacy sessions also open the server's GET event stream and end with DELETE (both logged at their end)
        return methods.count("POST") >= 4 and (mode != "legacy" or {"GET", "DELETE"} <= set(methods))

    rows = settled_rows(gateway, logged)
    assert {row["model"] for row in rows} == {"echo"}
    assert {row["api_key_id"] for row in rows} == {allowed["id"]}
    assert {row["session_id"] for row in rows} == {"mcp-session-7"}  # attribution, as on model requests
    assert all(row["client_name"] for row in rows)
    assert all(json.loads(row["credentials_used"]) == ["gh-token"] for row in rows)
    assert all(row["status_code"] < 400 and row["capture"] is None for row in rows)  # successes: metadata only
    if mode == "legacy":
        assert {"POST", "GET", "DELETE"} <= {row["method"] for row in rows}

    assert UPSTREAM_TOKEN.encode() not in database_bytes(gateway)
    assert UPSTREAM_TOKEN not in every_admin_response(gateway)
    usage = admin(gateway).get(f"/api/keys/{allowed['id']}/usage").json()
    assert usage["requests"] == len(rows) and usage["by_model"][0]["model"] == "echo"


@pytest.mark.parametrize("mcp_server", ["sse"], indirect=True)
async def test_a_relay_needs_a_valid_key_that_is_allowed_to_use_it(relay):
    gateway, allowed, other = relay
    url = gateway.base_url + "/mcp-relays/echo"
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}

    async with httpx.AsyncClient() as http:

        async def post(path: str = "/mcp-relays/echo", key: str | None = None, **headers: str) -> httpx.Response:
            if key is not None:
                headers["x-switchyard-api-key"] = key
            return await http.post(gateway.base_url + path, json=initialize, headers=headers)

        missing = await post()
        assert missing.status_code == 401 and "x-switchyard-api-key" in missing.json()["error"]["message"]
        bearer_only = await post(authorization=f"Bearer {allowed['secret']}")
        assert bearer_only.status_code == 401  # the relay reads only x-switchyard-api-key
        wrong = await post(key="sy-not-a-key")
        assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "invalid API key"
        forbidden = await post(key=other["secret"])
        assert forbidden.status_code == 403 and "not allowed" in forbidden.json()["error"]["message"]
        assert (await post("/mcp-relays/nope", key=allowed["secret"])).status_code == 404

    # the SDK client shows the relay's JSON-RPC error message
    with pytest.raises(BaseExceptionGroup) as caught:
        await call_tools(url, {})
    assert "needs a Switchyard API key in the x-switchyard-api-key header" in innermost(caught.value)
    with pytest.raises(BaseExceptionGroup) as caught:
        await call_tools(url, {"x-switchyard-api-key": other["secret"]})
    assert "not allowed to use the MCP relay 'echo'" in innermost(caught.value)

    # revoking the allowed key closes the relay to it on the next request
    admin(gateway).post(f"/api/keys/{allowed['id']}/revoke")
    async with httpx.AsyncClient() as http:
        revoked = await http.post(url, json=initialize, headers={"x-switchyard-api-key": allowed["secret"]})
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]["message"]
    assert UPSTREAM_TOKEN not in missing.text + forbidden.text + revoked.text


@pytest.mark.parametrize("mcp_server", ["sse"], indirect=True)
def test_a_failed_exchange_keeps_a_redacted_capture(relay):
    gateway, allowed, _ = relay
    answer = httpx.post(
        gateway.base_url + "/mcp-relays/echo/not-here",  # a subpath the MCP server does not serve
        json={"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {}},
        headers={"x-switchyard-api-key": allowed["secret"], "accept": "application/json, text/event-stream"},
    )
    assert answer.status_code == 404
    [row] = settled_rows(gateway, lambda rows: len(rows) >= 1)
    assert (row["path"], row["status_code"], row["model"]) == ("/mcp-relays/echo/not-here", 404, "echo")
    capture = json.loads(zlib.decompress(row["capture"]))
    assert '"tools/list"' in capture["request"]["body"]["text"]
    sent = dict(capture["request"]["headers"])
    assert sent["x-switchyard-api-key"] == "[redacted]"
    assert allowed["secret"] not in json.dumps(capture) and UPSTREAM_TOKEN not in json.dumps(capture)


# ------------------------------------------------------------------ the streaming redactor (pure, no processes)


def test_stream_redactor_releases_whole_lines_at_once_and_holds_only_the_rest():
    redactor = StreamRedactor(Redactor([UPSTREAM_TOKEN]))
    assert redactor.feed(b'event: message\ndata: {"token": "ghp_Relay') == b"event: message\n"
    assert redactor.feed(b'InjectedToken0123456789abcdef"}\n\n') == b'data: {"token": "[redacted]"}\n\n'
    assert redactor.feed(b"tail without newline") == b""
    assert redactor.finish() == b"tail without newline"


def test_stream_redactor_bounds_what_it_holds_without_line_breaks():
    redactor = StreamRedactor(Redactor([UPSTREAM_TOKEN]))
    data = b"x" * (MAX_PENDING_BYTES + 10) + UPSTREAM_TOKEN[:10].encode()
    released = redactor.feed(data)
    assert len(released) == len(data) - (len(UPSTREAM_TOKEN) - 1)  # only what could start a secret is held
    released += redactor.feed(UPSTREAM_TOKEN[10:].encode() + b"!") + redactor.finish()
    assert released.endswith(b"[redacted]!") and UPSTREAM_TOKEN.encode() not in released


def test_stream_redactor_also_hides_the_json_escaped_form():
    secret = 'with"quote'
    redactor = StreamRedactor(Redactor([secret]))
    body = redactor.feed(b'{"echo": "with\\"quote"}\n') + redactor.finish()
    assert body == b'{"echo": "[redacted]"}\n'
