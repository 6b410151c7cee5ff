"""Real processes for tests: the gateway under Granian, llama-server, and /proc inspection."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "sy-test-admin-token-0123456789abcdef"
ADMIN_HEADERS = {"authorization": f"Bearer {ADMIN_TOKEN}"}
SHARED = ROOT.parent / "shared"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_block(count: int = 10) -> int:
    """The first of `count` consecutive free ports, below the kernel's ephemeral range (no clash with free_port)."""
    import random

    for _ in range(200):
        base = random.randrange(20000, 30000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free port block")


def llama_server_bin() -> str:
    """The real llama-server: LLAMA_SERVER_BIN, then PATH, then ../shared. Missing is a failure, never a skip."""
    candidates = [os.environ.get("LLAMA_SERVER_BIN"), shutil.which("llama-server"), str(SHARED / "llama/llama-server")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return str(Path(candidate).resolve())
    raise RuntimeError("llama-server not found: set LLAMA_SERVER_BIN (CI uses ../shared/llama/llama-server)")


def make_tiny_gguf(path: Path) -> Path:
    """Write the 0.6 MB random-weights test model with ../shared/llama/make_tiny_gguf.py."""
    script = SHARED / "llama/make_tiny_gguf.py"
    subprocess.run([sys.executable, str(script), str(path)], check=True, capture_output=True)
    return path


def pids_with(text: str) -> list[int]:
    """PIDs of live processes whose command line contains `text` (zombies excluded)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state = stat.rsplit(")", 1)[-1].split()[0]
        if text in cmdline and state != "Z" and int(entry.name) != os.getpid():
            out.append(int(entry.name))
    return out


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


class GatewayProcess:
    """`switchyard serve` as a subprocess on a free port, with its own config and database."""

    def __init__(self, workdir: Path, config_text: str, env: dict[str, str] | None = None):
        self.workdir = workdir
        self.port = free_port()
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(config_text)
        self.log_path = workdir / "gateway.log"
        self.env = {
            **os.environ,
            "SWITCHYARD_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'switchyard.db'}",
            "SWITCHYARD_LOG_LEVEL": "warn",
            "SWITCHYARD_ENV_FILE": str(workdir / ".env"),
            # tests that are not about auth run open; auth tests turn it back on
            "SWITCHYARD_REQUIRE_AUTH": "false",
            # the dashboard build is tied to a port; API tests run without it (tests/e2e turn it on)
            "SWITCHYARD_DASHBOARD": "false",
            "SWITCHYARD_ADMIN_TOKEN": ADMIN_TOKEN,
            # the Ollama listener's default port (11434) is shared by every test gateway: off unless a test sets it
            "SWITCHYARD_OLLAMA_PORT": "0",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--config", str(self.config_path), "--port", str(self.port)],
            cwd=self.workdir,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.base_url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._log.close()

    def requests(self, **params) -> list[dict]:
        response = httpx.get(self.base_url + "/api/requests", params=params, headers=ADMIN_HEADERS, timeout=10)
        response.raise_for_status()
        return response.json()["items"]
