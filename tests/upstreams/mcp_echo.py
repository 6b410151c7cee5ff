"""A small MCP server (the `mcp` SDK's MCPServer, Streamable HTTP) for relay tests.

Its `whoami` tool answers what the server received: the Authorization header (as received and as a SHA-256,
so a test can prove which value arrived even when the gateway redacts it on the way back), and whether a
Switchyard key header reached it (it must not). `add` is a plain tool.

    python tests/upstreams/mcp_echo.py --port 8123 [--json-response]
"""

from __future__ import annotations

import argparse
import hashlib
import json

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("switchyard-test-echo")


@server.tool()
def whoami(ctx: Context) -> str:
    """Describe the HTTP request that carried this call."""
    headers = {name.lower(): value for name, value in (ctx.headers or {}).items()}
    authorization = headers.get("authorization", "")
    return json.dumps(
        {
            "authorization": authorization,
            "authorization_sha256": hashlib.sha256(authorization.encode()).hexdigest(),
            "switchyard_key_seen": "x-switchyard-api-key" in headers,
            "session": headers.get("mcp-session-id"),
        }
    )


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--json-response", action="store_true", help="answer POSTs with JSON instead of SSE")
    args = parser.parse_args()
    server.settings.log_level = "WARNING"
    server.run("streamable-http", host="127.0.0.1", port=args.port, json_response=args.json_response)


if __name__ == "__main__":
    main()
