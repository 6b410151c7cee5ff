"""Switchyard's benchmark: what the gateway adds to every request, measured against direct-to-upstream.

    make bench                    # full run (under ten minutes)
    make bench BENCH_ARGS=--quick # under a minute

Everything runs on loopback in one process tree: a minimal fast upstream (tests/bench/upstream.py),
Switchyard under Granian in production settings (one worker, API-key auth required, request logging,
metrics, one routing rule), and a load generator (wrk when installed, else a built-in asyncio client).
Each scenario runs direct-to-upstream and through Switchyard in the same run; ratios against direct are
the headline. The gateway's own CPU time per request (from /proc) is the figure that carries across
machines. Results are printed as a table and written as JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import httpx

from tests.bench.loadgen import (
    cpu_seconds,
    median,
    process_tree,
    rss_mb,
    run_count,
    run_load,
    run_sequential,
    run_streams,
)
from tests.servers import ROOT, free_port, free_port_block, llama_server_bin, make_tiny_gguf, wait_until

API_KEY = "sy-bench-0123456789abcdefghijklmnopqrstuv"
ADMIN_TOKEN = "sy-bench-admin-0123456789abcdefghijklmnop"
UPSTREAM = ROOT / "tests/bench/upstream.py"
CHAT = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "Say hello in five words."}],
                   "max_tokens": 16}).encode()  # fmt: skip
STREAM = json.dumps({"model": "bench", "stream": True, "messages": [{"role": "user", "content": "Count to twenty."}],
                     "max_tokens": 20}).encode()  # fmt: skip

BARS = {
    "cpu_ms_per_request": 1.0,
    "added_p50_ms_c1": 1.0,
    "added_p99_ms_c1": 3.0,
    "rps_c32": 1000.0,
    "added_ttft_ms": 1.0,
    "added_large_prompt_ms": 5.0,
    "rss_growth_ratio": 1.2,
    "rss_mb": 250.0,
    "swap_overhead_ms": 50.0,
}


class Gateway:
    def __init__(self, workdir: Path, port: int, upstream_port: int, llama: str | None, gguf: Path | None):
        self.workdir = workdir
        self.port = port
        cold = ""
        if llama and gguf:
            cold = f"""
  cold:
    cmd: {llama} -m {gguf} --host 127.0.0.1 --port ${{PORT}} -c 512 --alias bench-cold
    ttl: 0"""
        config = f"""
startPort: {upstream_port}
apiKeys: ["{API_KEY}"]
groups:
  bench: {{swap: false, exclusive: false, members: [bench]}}
  cold: {{swap: true, exclusive: false, members: [cold]}}
models:
  bench:
    cmd: {sys.executable} {UPSTREAM} --port ${{PORT}}
    concurrencyLimit: 256{cold}
"""
        (workdir / "config.yaml").write_text(config)
        self.env = {
            **os.environ,
            "SWITCHYARD_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
            "SWITCHYARD_LOG_LEVEL": "warn",
            "SWITCHYARD_REQUIRE_AUTH": "true",
            "SWITCHYARD_ADMIN_TOKEN": ADMIN_TOKEN,
            "SWITCHYARD_DASHBOARD": "false",
            "SWITCHYARD_WATCH_CONFIG": "false",
            "SWITCHYARD_ENV_FILE": str(workdir / ".env"),
        }
        self.log = (workdir / "gateway.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--config", str(workdir / "config.yaml"), "--port", str(port)],
            cwd=workdir, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until(self._healthy, timeout=60, message="gateway health")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError((self.workdir / "gateway.log").read_text())
        try:
            return httpx.get(self.url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def pids(self) -> list[int]:
        """The gateway's own processes (Granian main and worker), not the model servers it started."""
        out = []
        for pid in process_tree(self.proc.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"upstream.py" not in cmdline and b"llama-server" not in cmdline:
                out.append(pid)
        return out

    def worker_pid(self) -> int:
        pids = self.pids()
        return pids[-1] if len(pids) > 1 else pids[0]

    def admin(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def log_rows(self) -> int:
        with sqlite3.connect(self.workdir / "bench.db") as db:
            return db.execute("select count(*) from request_logs").fetchone()[0]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def enable_features(gateway: Gateway) -> list[str]:
    """Turn on what a production gateway runs with; report what this build supports."""
    enabled = ["api-key auth (require_auth on, config apiKeys)", "request logging"]
    if gateway.admin("GET", "/metrics").status_code == 200:
        enabled.append("prometheus metrics")
    rule = {
        "name": "bench-continue",
        "enabled": True,
        "match": {"path": "/v1/*", "model": "bench*"},
        "action": "continue",
    }
    response = gateway.admin("POST", "/api/policies", json=rule)
    if response.status_code in (200, 201):
        enabled.append("one routing rule (continue on /v1/* bench*)")
    return enabled


def measure(args: argparse.Namespace) -> dict:
    quick = args.quick
    seconds = 4 if quick else 15
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    try:
        llama = llama_server_bin()
        gguf = make_tiny_gguf(workdir / "tiny.gguf")
    except Exception:  # noqa: BLE001 - the swap measurement is skipped without llama-server
        llama, gguf = None, None
    upstream_port = free_port_block(4)
    gateway = Gateway(workdir, free_port(), upstream_port, llama, gguf)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    direct_url = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
    gateway_url = gateway.url + "/v1/chat/completions"
    results: dict = {"machine": machine(), "mode": "quick" if quick else "full"}
    try:
        # first request starts the upstream model server through the swap engine
        assert (
            httpx.post(
                gateway_url, content=CHAT, headers={**auth, "content-type": "application/json"}, timeout=60
            ).status_code
            == 200
        )
        results["features"] = enable_features(gateway)
        run_load(gateway_url, CHAT, concurrency=8, seconds=1, headers=auth)  # warm-up (not counted below)

        rss_start = rss_mb(gateway.worker_pid())
        rows: dict = {}
        for concurrency in (1, 32):
            direct = run_load(direct_url, CHAT, concurrency=concurrency, seconds=seconds, headers=auth)
            before = cpu_seconds(gateway.pids())
            through = run_load(gateway_url, CHAT, concurrency=concurrency, seconds=seconds, headers=auth)
            cpu = cpu_seconds(gateway.pids()) - before
            rows[f"c{concurrency}"] = {
                "direct": asdict(direct) | {"rps": direct.rps},
                "gateway": asdict(through) | {"rps": through.rps},
                "cpu_ms_per_request": cpu * 1000 / max(through.requests, 1),
                "errors": through.errors,
            }
        results["non_streaming"] = rows

        count = 40 if quick else 200
        direct_streams = run_streams(direct_url, STREAM, count=count, headers=auth)
        gateway_streams = run_streams(gateway_url, STREAM, count=count, headers=auth)
        results["streaming"] = {
            side: {
                "ttft_ms_p50": median([s.ttft_ms for s in samples]),
                "total_ms_p50": median([s.total_ms for s in samples]),
                "events_per_stream": median([s.events for s in samples]),
                "events_per_read": median([s.events / max(s.reads, 1) for s in samples]),
                "gap_ms_p50": median([g for s in samples for g in s.gaps_ms]),
            }
            for side, samples in (("direct", direct_streams), ("gateway", gateway_streams))
        }

        big = json.dumps(
            {"model": "bench", "messages": [{"role": "user", "content": "x" * (2 * 1024 * 1024)}]}
        ).encode()
        reps = 10 if quick else 30
        direct_big = run_sequential(direct_url, big, count=reps, headers=auth)
        gateway_big = run_sequential(gateway_url, big, count=reps, headers=auth)
        results["large_prompt"] = {"bytes": len(big), "direct_ms_p50": median(direct_big),
                                   "gateway_ms_p50": median(gateway_big)}  # fmt: skip

        # memory and log completeness: exact request counts at full speed (concurrency 32), RSS after N and 10×N
        first_n, second_n = (2_000, 20_000) if quick else (10_000, 100_000)
        time.sleep(1.0)  # let the writer drain what the timed runs left
        rows_before = gateway.log_rows()
        phase1 = run_count(gateway_url, CHAT, total=first_n, concurrency=32, headers=auth)
        rss_n = rss_mb(gateway.worker_pid())
        phase2 = run_count(gateway_url, CHAT, total=second_n - first_n, concurrency=32, headers=auth)
        rss_10n = rss_mb(gateway.worker_pid())
        results["memory"] = {"rss_mb_start": rss_start, f"rss_mb_after_{first_n}": rss_n,
                             f"rss_mb_after_{second_n}": rss_10n, "growth_ratio": rss_10n / rss_n}  # fmt: skip
        answered = phase1.requests + phase2.requests
        try:
            wait_until(lambda: gateway.log_rows() - rows_before >= answered, timeout=60, message="every request logged")
        except AssertionError:
            pass
        time.sleep(0.5)
        results["log"] = {"requests_answered": answered, "rows_written": gateway.log_rows() - rows_before,
                          "errors": phase1.errors + phase2.errors,
                          "rps": answered / (phase1.seconds + phase2.seconds)}  # fmt: skip

        if llama and gguf:
            results["swap"] = swap_overhead(gateway, llama, gguf, reps=5 if quick else 11)
    finally:
        gateway.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    results["summary"] = summarise(results)
    return results


def swap_overhead(gateway: Gateway, llama: str, gguf: Path, reps: int) -> dict:
    """Cold start through the gateway vs the same llama-server started and polled directly."""
    body = {"model": "cold", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
    direct_ms, gateway_ms = [], []
    for _ in range(reps):
        port = free_port()
        started = time.perf_counter()
        proc = subprocess.Popen([llama, "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "-c", "512"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        with httpx.Client(timeout=10) as client:
            while True:
                try:
                    if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.001)
            with client.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as response:
                next(response.iter_raw())
        direct_ms.append((time.perf_counter() - started) * 1000)
        proc.terminate()
        proc.wait()

        gateway.admin("POST", "/api/models/unload/cold")
        headers = {"Authorization": f"Bearer {API_KEY}"}
        started = time.perf_counter()
        with httpx.stream(
            "POST", gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=60
        ) as response:
            next(response.iter_raw())
        gateway_ms.append((time.perf_counter() - started) * 1000)
    # paired: each gateway cold start is compared with the direct one measured just before it
    return {"direct_cold_ttfb_ms_p50": median(direct_ms), "gateway_cold_ttfb_ms_p50": median(gateway_ms),
            "overhead_ms": median([g - d for g, d in zip(gateway_ms, direct_ms)])}  # fmt: skip


def summarise(r: dict) -> dict:
    c1, c32 = r["non_streaming"]["c1"], r["non_streaming"]["c32"]
    s = r["streaming"]
    summary = {
        "cpu_ms_per_request": c32["cpu_ms_per_request"],
        "added_p50_ms_c1": c1["gateway"]["p50_ms"] - c1["direct"]["p50_ms"],
        "added_p99_ms_c1": c1["gateway"]["p99_ms"] - c1["direct"]["p99_ms"],
        "rps_c32": c32["gateway"]["rps"],
        "rps_ratio_c32": c32["gateway"]["rps"] / c32["direct"]["rps"],
        "added_ttft_ms": s["gateway"]["ttft_ms_p50"] - s["direct"]["ttft_ms_p50"],
        "added_large_prompt_ms": r["large_prompt"]["gateway_ms_p50"] - r["large_prompt"]["direct_ms_p50"],
        "rss_growth_ratio": r["memory"]["growth_ratio"],
        "rss_mb": max(v for k, v in r["memory"].items() if k.startswith("rss_mb")),
        "log_rows_equal_answered": r["log"]["rows_written"] == r["log"]["requests_answered"],
        "chunks_not_merged": s["gateway"]["events_per_read"] <= s["direct"]["events_per_read"] + 0.01,
    }
    if "swap" in r:
        summary["swap_overhead_ms"] = r["swap"]["overhead_ms"]
    summary["bars_met"] = {
        name: (summary[name] >= bar if name == "rps_c32" else summary[name] <= bar)
        for name, bar in BARS.items()
        if name in summary
    }
    return summary


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}


def print_table(r: dict) -> None:
    c1, c32 = r["non_streaming"]["c1"], r["non_streaming"]["c32"]
    s, big, sm = r["streaming"], r["large_prompt"], r["summary"]
    print(f"\nSwitchyard benchmark ({r['mode']}) — {r['machine']['cpu']}, {r['machine']['cores']} cores")
    print("features: " + ", ".join(r.get("features", [])))
    print(f"{'scenario':40} {'direct':>12} {'switchyard':>12} {'ratio/added':>14}")
    rows = [
        (
            "req/s, concurrency 1",
            c1["direct"]["rps"],
            c1["gateway"]["rps"],
            f"{c1['gateway']['rps'] / c1['direct']['rps']:.2f}x",
        ),
        ("p50 ms, concurrency 1", c1["direct"]["p50_ms"], c1["gateway"]["p50_ms"], f"+{sm['added_p50_ms_c1']:.2f} ms"),
        ("p99 ms, concurrency 1", c1["direct"]["p99_ms"], c1["gateway"]["p99_ms"], f"+{sm['added_p99_ms_c1']:.2f} ms"),
        ("req/s, concurrency 32", c32["direct"]["rps"], c32["gateway"]["rps"], f"{sm['rps_ratio_c32']:.2f}x"),
        ("p50 ms, concurrency 32", c32["direct"]["p50_ms"], c32["gateway"]["p50_ms"], ""),
        ("p99 ms, concurrency 32", c32["direct"]["p99_ms"], c32["gateway"]["p99_ms"], ""),
        (
            "stream TTFT p50 ms",
            s["direct"]["ttft_ms_p50"],
            s["gateway"]["ttft_ms_p50"],
            f"+{sm['added_ttft_ms']:.2f} ms",
        ),
        ("stream total p50 ms", s["direct"]["total_ms_p50"], s["gateway"]["total_ms_p50"], ""),
        ("stream events per read", s["direct"]["events_per_read"], s["gateway"]["events_per_read"], ""),
        ("2 MB prompt p50 ms", big["direct_ms_p50"], big["gateway_ms_p50"], f"+{sm['added_large_prompt_ms']:.2f} ms"),
    ]
    if "swap" in r:
        rows.append(("cold start TTFB p50 ms", r["swap"]["direct_cold_ttfb_ms_p50"], r["swap"]["gateway_cold_ttfb_ms_p50"],
                     f"+{r['swap']['overhead_ms']:.1f} ms"))  # fmt: skip
    for name, direct, gateway, extra in rows:
        print(f"{name:40} {direct:12.2f} {gateway:12.2f} {extra:>14}")
    print(f"gateway CPU per request: {sm['cpu_ms_per_request']:.3f} ms (concurrency 32)")
    print("RSS: " + ", ".join(f"{k} {v:.1f}" for k, v in r["memory"].items()))
    print(
        f"log rows: {r['log']['rows_written']} written for {r['log']['requests_answered']} answered "
        f"at {r['log']['rps']:.0f} req/s"
    )
    print("bars: " + ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in sm["bars_met"].items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs: under a minute")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "latest.json")
    args = parser.parse_args()
    results = measure(args)
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
