"""Integration fixtures: the real gateway (Granian) in front of real model servers."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers import ROOT, GatewayProcess, free_port_block

FAKE_UPSTREAM = ROOT / "tests/upstreams/fake_openai.py"


def llama_cmd(llama_bin: str, gguf: Path, *extra: str) -> str:
    return f"{llama_bin} -m {gguf} --host 127.0.0.1 --port ${{PORT}} -c 2048 " + " ".join(extra)


def fake_cmd(*extra: str) -> str:
    return f"{sys.executable} {FAKE_UPSTREAM} --port ${{PORT}} " + " ".join(extra)


GatewayFactory = Callable[..., GatewayProcess]


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[GatewayFactory]:
    started: list[GatewayProcess] = []

    def start(config: str, env: dict[str, str] | None = None, start_port: int | None = None) -> GatewayProcess:
        text = f"startPort: {start_port or free_port_block()}\n" + textwrap.dedent(config)
        workdir = tmp_path / f"gw{len(started)}"
        workdir.mkdir()
        gateway = GatewayProcess(workdir, text, env)
        started.append(gateway)
        return gateway.start()

    yield start
    for gateway in started:
        gateway.stop()
    # an exception that escaped to the ASGI server is a bug whatever the test was about
    for gateway in started:
        assert "Application callable raised an exception" not in gateway.log(), gateway.log()[-4000:]
