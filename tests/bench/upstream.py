"""A minimal, fast OpenAI-shaped upstream for benchmarks: raw asyncio (uvloop when present), keep-alive.

POST /v1/chat/completions answers a fixed JSON completion, or with ``"stream": true`` an SSE stream of
``--chunks`` events (``--chunk-delay`` seconds apart) ending with a usage chunk and ``[DONE]``.
GET /health answers 200. Everything is precomputed so the upstream itself costs as little as possible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the bench upstream."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
}).encode()  # fmt: skip
JSON_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(COMPLETION)).encode() + b"\r\n\r\n" + COMPLETION
)  # fmt: skip
HEALTH = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{"status":"ok"}'
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def sse_chunk(payload: bytes) -> bytes:
    data = b"data: " + payload + b"\n\n"
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def stream_events(count: int) -> list[bytes]:
    events = []
    for index in range(count):
        event = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "bench",
                 "choices": [{"index": 0, "delta": {"content": f"tok{index} "}, "finish_reason": None}]}  # fmt: skip
        events.append(sse_chunk(json.dumps(event).encode()))
    usage = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "choices": [],
             "usage": {"prompt_tokens": 12, "completion_tokens": count, "total_tokens": 12 + count}}  # fmt: skip
    events.append(sse_chunk(json.dumps(usage).encode()) + sse_chunk(b"[DONE]") + b"0\r\n\r\n")
    return events


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, events: list[bytes], delay: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            lower = head.lower()
            index = lower.find(b"content-length:")
            if index >= 0:
                length = int(lower[index + 15 : lower.find(b"\r\n", index)])
            body = await reader.readexactly(length) if length else b""
            if head.startswith(b"GET /health"):
                writer.write(HEALTH)
            elif b'"stream":true' in body or b'"stream": true' in body:
                writer.write(SSE_HEAD)
                for event in events:
                    writer.write(event)
                    await writer.drain()
                    if delay:
                        await asyncio.sleep(delay)
            else:
                writer.write(JSON_RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(args: argparse.Namespace) -> None:
    events = stream_events(args.chunks)
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, events, args.chunk_delay), "127.0.0.1", args.port, limit=8 * 1024 * 1024
    )
    print(f"bench upstream ready {time.time():.6f}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--chunk-delay", type=float, default=0.002)
    arguments = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(arguments))
    except ImportError:
        asyncio.run(main(arguments))
