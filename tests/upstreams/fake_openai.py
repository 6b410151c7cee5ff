"""A small OpenAI-shaped HTTP server for what the real llama-server cannot do: failure injection.

Run as a model `cmd`:  python -m tests.upstreams.fake_openai --port ${PORT} [--ready-after S] [--fail-start]

* ``GET /health`` — 503 until ``--ready-after`` seconds passed, then 200.
* ``POST /v1/chat/completions`` — answers JSON, or SSE when ``"stream": true``. The body's ``x_fake`` object
  steers it: ``chunks`` (default 5), ``delay`` seconds between chunks, ``crash_after`` (exit the process after
  that many chunks), ``status`` (answer with this HTTP status and an OpenAI error body whose message is
  ``message``, default "injected failure").
* any other path — echoes method, path, query, headers and body (with its length and sha256) as JSON,
  to prove what arrived, with the server's pid and its ``FAKE_*`` environment variables.

``--ignore-sigterm`` makes it a server that only SIGKILL stops.

``--tls-cert``/``--tls-key`` serve HTTPS (tests use a self-signed certificate).

With ``--events FILE`` it appends lines such as ``start <id>``, ``done <id>``, ``disconnect <id>`` so tests
can see what the upstream saw (e.g. that a client disconnect cancelled the request).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import ssl
import sys
import time

ARGS: argparse.Namespace
STARTED = time.monotonic()


def log_event(text: str) -> None:
    if ARGS.events:
        with open(ARGS.events, "a") as handle:
            handle.write(text + "\n")


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).strip(), 16)
            if size == 0:
                await reader.readline()
                break
            body += await reader.readexactly(size)
            await reader.readline()
    return method, target, headers, body


def response_head(status: int, headers: dict[str, str]) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "X")
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def send_json(writer: asyncio.StreamWriter, status: int, payload: object) -> None:
    body = json.dumps(payload).encode()
    writer.write(response_head(status, {"content-type": "application/json", "content-length": str(len(body))}) + body)
    await writer.drain()


def chunk_event(request_id: str, index: int, content: str | None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    event = {
        "id": request_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }  # fmt: skip
    return f"data: {json.dumps(event)}\n\n".encode()


async def chat(writer: asyncio.StreamWriter, body: dict) -> None:
    fake = body.get("x_fake") or {}
    request_id = fake.get("id") or f"req-{time.monotonic_ns()}"
    chunks = int(fake.get("chunks", 5))
    delay = float(fake.get("delay", 0))
    crash_after = fake.get("crash_after")
    log_event(f"start {request_id}")
    if fake.get("header_delay"):
        await asyncio.sleep(float(fake["header_delay"]))
    if fake.get("status"):
        message = str(fake.get("message", "injected failure"))
        await send_json(writer, int(fake["status"]), {"error": {"message": message, "type": "server_error"}})
        return
    usage = {"prompt_tokens": 7, "completion_tokens": chunks, "total_tokens": 7 + chunks}
    if not body.get("stream"):
        await asyncio.sleep(delay * chunks)
        await send_json(writer, 200, {
            "id": request_id, "object": "chat.completion", "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "tok " * chunks}, "finish_reason": "stop"}],
            "usage": usage,
        })  # fmt: skip
        log_event(f"done {request_id}")
        return
    writer.write(response_head(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"}))
    try:
        for index in range(chunks):
            if crash_after is not None and index >= int(crash_after):
                log_event(f"crash {request_id}")
                sys.stdout.flush()
                os._exit(3)
            data = chunk_event(request_id, index, f"tok{index} ")
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()
            if delay:
                await asyncio.sleep(delay)
        tail = chunk_event(request_id, chunks, None, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            tail += f"data: {json.dumps({'id': request_id, 'choices': [], 'usage': usage})}\n\n".encode()
        tail += b"data: [DONE]\n\n"
        writer.write(f"{len(tail):x}\r\n".encode() + tail + b"\r\n0\r\n\r\n")
        await writer.drain()
        log_event(f"done {request_id}")
    except (ConnectionError, asyncio.CancelledError):
        log_event(f"disconnect {request_id}")
        raise


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            request = await read_request(reader)
            if request is None:
                return
            method, target, headers, body = request
            path, _, query = target.partition("?")
            if path == "/health":
                ready = time.monotonic() - STARTED >= ARGS.ready_after
                await send_json(writer, 200 if ready else 503, {"status": "ok" if ready else "loading"})
            elif path == "/v1/chat/completions" and method == "POST":
                await chat(writer, json.loads(body or b"{}"))
            else:
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                await send_json(writer, 200, {
                    "method": method, "path": path, "query": query, "headers": headers, "pid": os.getpid(),
                    "env": {k: v for k, v in os.environ.items() if k.startswith("FAKE_")},
                    "body": body.decode("utf-8", "replace"), "json": parsed,
                    "body_sha256": hashlib.sha256(body).hexdigest(), "body_len": len(body),
                })  # fmt: skip
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


async def main() -> None:
    if ARGS.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if ARGS.fail_start:
        print("fake upstream: failing on purpose (--fail-start)", flush=True)
        sys.exit(7)
    context = None
    if ARGS.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(ARGS.tls_cert, ARGS.tls_key)
    server = await asyncio.start_server(handle, "127.0.0.1", ARGS.port, ssl=context)
    print(f"fake upstream listening on {ARGS.port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready-after", type=float, default=0.0)
    parser.add_argument("--fail-start", action="store_true")
    parser.add_argument("--ignore-sigterm", action="store_true", help="only SIGKILL stops it")
    parser.add_argument("--events")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key")
    ARGS = parser.parse_args()
    asyncio.run(main())
