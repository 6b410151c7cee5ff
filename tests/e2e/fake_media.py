"""A small image, speech and transcription server in OpenAI's shapes, for the playground's browser tests.

The real llama-server only chats; this stands in for stable-diffusion.cpp, a TTS server and whisper.cpp behind
the same gateway routes. Run as a model `cmd`: ``python tests/e2e/fake_media.py --port ${PORT}``.

* ``POST /v1/images/generations`` — ``n`` PNG images of the requested size (one flat colour), as ``b64_json``.
* ``POST /v1/audio/speech`` — a WAV of a short tone, one tenth of a second per word of ``input``.
* ``GET /v1/audio/voices`` — two voices.
* ``POST /v1/audio/transcriptions`` — ``{"text": "heard <n> bytes of <content type>"}`` for the uploaded file.
* ``POST /v1/chat/completions`` — a slow stream: ``tick`` every 50 ms, 400 times (20 s), so a test can stop it.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import re
import struct
import time
import wave
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    row = b"\x00" + bytes(rgb) * width
    raw = zlib.compress(row * height)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def tone(seconds: float, rate: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        frames = int(seconds * rate)
        wav.writeframes(
            b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(frames))
        )
    return out.getvalue()


class Media(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            self._json(200, {"status": "ok"})
        elif self.path.startswith("/v1/audio/voices"):
            self._json(200, {"voices": [{"id": "alloy"}, {"id": "nova"}]})
        else:
            self._json(404, {"error": {"message": f"no {self.path}"}})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/v1/images/generations":
            request = json.loads(body)
            width, height = (int(v) for v in str(request.get("size") or "64x64").split("x"))
            image = base64.b64encode(png(min(width, 256), min(height, 256), (18, 165, 148))).decode()
            self._json(200, {"created": 0, "data": [{"b64_json": image}] * int(request.get("n") or 1)})
        elif self.path == "/v1/audio/speech":
            words = len(str(json.loads(body).get("input") or "").split())
            self._send(200, "audio/wav", tone(max(words, 1) * 0.1))
        elif self.path == "/v1/chat/completions":
            self._slow_stream()
        elif self.path == "/v1/audio/transcriptions":
            match = re.search(rb'filename="[^"]*"\r\nContent-Type: ([^\r]+)\r\n\r\n', body)
            kind = match.group(1).decode() if match else "unknown"
            start = match.end() if match else 0
            end = body.find(b"\r\n--", start)
            self._json(200, {"text": f"heard {end - start} bytes of {kind}"})
        else:
            self._json(404, {"error": {"message": f"no {self.path}"}})

    def _slow_stream(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        try:
            for i in range(400):
                event = {"id": "slow", "object": "chat.completion.chunk", "model": "media",
                         "choices": [{"index": 0, "delta": {"content": "tick "}, "finish_reason": None}]}  # fmt: skip
                self._chunk(f"data: {json.dumps(event)}\n\n".encode())
                time.sleep(0.05)
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped listening: what the stop button is for

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, payload: object) -> None:
        self._send(status, "application/json", json.dumps(payload).encode())

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    server = ThreadingHTTPServer(("127.0.0.1", parser.parse_args().port), Media)
    print(f"fake media server on {server.server_address[1]}", flush=True)
    server.serve_forever()
