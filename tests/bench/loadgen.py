"""Load generation and process measurement for the benchmark harness.

`wrk` (Debian's package) drives the throughput and latency runs when it is installed; otherwise a small
built-in asyncio client with keep-alive connections does. Streaming runs always use the built-in client,
which timestamps every chunk it reads.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    tool: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


# ----------------------------------------------------------------------------------------------- wrk

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = io.open("{body}", "rb"):read("*a")
wrk.headers["Content-Type"] = "application/json"
{headers}
"""


def run_wrk(url: str, body: bytes, *, concurrency: int, seconds: float, headers: dict[str, str]) -> LoadResult:
    with tempfile.TemporaryDirectory() as folder:
        body_path = Path(folder) / "body.json"
        body_path.write_bytes(body)
        script = Path(folder) / "post.lua"
        extra = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
        script.write_text(_WRK_SCRIPT.format(body=body_path, headers=extra))
        threads = 1 if concurrency == 1 else 2
        out = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{max(1, round(seconds))}s", "--latency", "-s", str(script), url],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    elapsed = _duration(re.search(r"requests in ([\d.]+\w+)", out).group(1))
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())
    p50 = _duration(re.search(r"^\s+50%\s+([\d.]+\w+)", out, re.M).group(1)) * 1000
    p99 = _duration(re.search(r"^\s+99%\s+([\d.]+\w+)", out, re.M).group(1)) * 1000
    return LoadResult(requests, errors, elapsed, p50, p99, "wrk")


def _duration(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m)", text)
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


# ------------------------------------------------------------------------------------ built-in client


def _request_bytes(url: str, body: bytes, headers: dict[str, str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *[f"{k}: {v}" for k, v in headers.items()]]  # fmt: skip
    return parts.hostname, parts.port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    index = lower.find(b"content-length:")
    if index >= 0:
        await reader.readexactly(int(lower[index + 15 : lower.find(b"\r\n", index)]))
    else:  # chunked
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def _builtin(url: str, body: bytes, concurrency: int, seconds: float, headers: dict[str, str]) -> LoadResult:
    host, port, request = _request_bytes(url, body, headers)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port, limit=16 * 1024 * 1024)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - started)
            if status >= 400:
                errors += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = [x * 1000 for x in latencies]
    return LoadResult(len(latencies), errors, elapsed, percentile(ms, 0.5), percentile(ms, 0.99), "builtin")


def run_count(url: str, body: bytes, *, total: int, concurrency: int, headers: dict[str, str]) -> LoadResult:
    """Exactly `total` requests at `concurrency`; every response is read before a connection closes."""

    async def go() -> LoadResult:
        host, port, request = _request_bytes(url, body, headers)
        latencies: list[float] = []
        errors = 0
        remaining = total

        async def worker() -> None:
            nonlocal errors, remaining
            reader, writer = await asyncio.open_connection(host, port, limit=16 * 1024 * 1024)
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                writer.write(request)
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - started)
                errors += status != 200
            writer.close()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        ms = [x * 1000 for x in latencies]
        return LoadResult(len(latencies), errors, time.perf_counter() - started, percentile(ms, 0.5),
                          percentile(ms, 0.99), "builtin")  # fmt: skip

    return asyncio.run(go())


def run_load(url: str, body: bytes, *, concurrency: int, seconds: float, headers: dict[str, str]) -> LoadResult:
    if shutil.which("wrk") and len(body) < 1_000_000:
        return run_wrk(url, body, concurrency=concurrency, seconds=seconds, headers=headers)
    return asyncio.run(_builtin(url, body, concurrency, seconds, headers))


def run_sequential(url: str, body: bytes, *, count: int, headers: dict[str, str]) -> list[float]:
    """Latency in ms of `count` requests one after another on one keep-alive connection."""

    async def go() -> list[float]:
        host, port, request = _request_bytes(url, body, headers)
        reader, writer = await asyncio.open_connection(host, port, limit=16 * 1024 * 1024)
        out = []
        for _ in range(count):
            started = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            if status != 200:
                raise RuntimeError(f"{url} answered {status}")
            out.append((time.perf_counter() - started) * 1000)
        writer.close()
        return out

    return asyncio.run(go())


# ------------------------------------------------------------------------------------------ streaming


@dataclass
class StreamSample:
    ttft_ms: float
    total_ms: float
    events: int
    reads: int
    gaps_ms: list[float] = field(default_factory=list)


def run_streams(url: str, body: bytes, *, count: int, headers: dict[str, str]) -> list[StreamSample]:
    """`count` streaming requests in a row; every read of the body is timestamped."""

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> StreamSample:
        started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if int(head[9:12]) != 200:
            raise RuntimeError(f"stream answered {head[:12]!r}")
        first = None
        events = reads = 0
        arrivals = []
        buffer = b""
        while True:
            size_line = await reader.readline()
            size = int(size_line.strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            now = time.perf_counter()
            reads += 1
            buffer += chunk[:-2]
            count_now = buffer.count(b"\n\n")
            if count_now:
                if first is None and b'"content"' in buffer:
                    first = now
                events += count_now
                arrivals.extend([now] * count_now)
                buffer = buffer[buffer.rfind(b"\n\n") + 2 :]
        end = time.perf_counter()
        gaps = [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:])]
        return StreamSample(((first or end) - started) * 1000, (end - started) * 1000, events, reads, gaps)

    async def go() -> list[StreamSample]:
        host, port, request = _request_bytes(url, body, headers)
        reader, writer = await asyncio.open_connection(host, port, limit=16 * 1024 * 1024)
        out = [await one(reader, writer, request) for _ in range(count)]
        writer.close()
        return out

    return asyncio.run(go())


# ------------------------------------------------------------------------------------------ processes


def process_tree(root: int) -> list[int]:
    out = [root]
    index = 0
    while index < len(out):
        pid = out[index]
        index += 1
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                children = (task / "children").read_text().split()
                out.extend(int(c) for c in children)
        except OSError:
            continue
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
