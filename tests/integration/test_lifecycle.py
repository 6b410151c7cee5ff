"""How a model server is started and stopped, with real processes: env, cmdStop, unloadTimeout, health checks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import fake_cmd
from tests.servers import ADMIN_HEADERS, wait_until


def whoami(gateway, model: str) -> dict[str, Any]:
    """The fake upstream's echo of a request, through `/upstream/{model}` (which starts the model)."""
    response = httpx.get(f"{gateway.base_url}/upstream/{model}/whoami", timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def unload(gateway, model: str) -> float:
    """Unload `model`; the seconds the gateway took to answer."""
    started = time.monotonic()
    response = httpx.post(f"{gateway.base_url}/api/models/unload/{model}", headers=ADMIN_HEADERS, timeout=60)
    assert response.status_code == 200, response.text
    return time.monotonic() - started


def test_env_entries_reach_the_model_server(gateway_factory):
    gateway = gateway_factory(
        f"""
        models:
          envy:
            cmd: {fake_cmd()}
            env: ["FAKE_GREETING=hello world", "FAKE_PORT=${{PORT}}"]
        """
    )
    env = whoami(gateway, "envy")["env"]
    assert env["FAKE_GREETING"] == "hello world" and env["FAKE_PORT"].isdigit()


def test_a_server_that_ignores_sigterm_is_killed_after_the_unload_timeout(gateway_factory):
    gateway = gateway_factory(
        f"""
        models:
          stubborn:
            cmd: {fake_cmd("--ignore-sigterm")}
            unloadTimeout: 2
        """
    )
    pid = whoami(gateway, "stubborn")["pid"]
    took = unload(gateway, "stubborn")
    wait_until(lambda: not alive(pid), timeout=10, message="the stubborn server gone")
    assert took >= 1.9  # SIGTERM was ignored: the gateway waited out unloadTimeout, then killed it
    history = httpx.get(gateway.base_url + "/logs", headers=ADMIN_HEADERS, timeout=10).text
    assert "stubborn did not exit within 2s, killing it" in history


def test_cmd_stop_is_run_with_the_servers_pid(gateway_factory, tmp_path):
    marker = tmp_path / "stopped-pid"
    script = tmp_path / "stop.sh"
    script.write_text(f'#!/bin/sh\necho "$1" > {marker}\nkill -KILL "$1"\n')
    gateway = gateway_factory(
        f"""
        models:
          custom:
            cmd: {fake_cmd("--ignore-sigterm")}
            cmdStop: sh {script} ${{PID}}
            unloadTimeout: 30
        """
    )
    pid = whoami(gateway, "custom")["pid"]
    took = unload(gateway, "custom")
    assert marker.read_text().strip() == str(pid)
    assert took < 10  # cmdStop stopped it; the 30 s unload timeout never ran out
    wait_until(lambda: not alive(pid), timeout=5, message="the server stopped by cmdStop")


def test_check_endpoint_none_is_ready_without_a_health_check(gateway_factory):
    gateway = gateway_factory(
        f"""
        models:
          eager:
            cmd: {fake_cmd("--ready-after", "600")}
            checkEndpoint: none
        """
    )
    started = time.monotonic()
    loaded = httpx.post(gateway.base_url + "/api/models/eager/load", headers=ADMIN_HEADERS, timeout=60)
    assert loaded.status_code == 200 and loaded.json()["state"] == "ready"  # /health would say 503 for 600 s
    assert time.monotonic() - started < 10


def test_a_server_that_never_gets_healthy_fails_after_the_health_check_timeout(gateway_factory):
    gateway = gateway_factory(
        f"""
        healthCheckTimeout: 15
        models:
          never:
            cmd: {fake_cmd("--ready-after", "600")}
        """
    )
    started = time.monotonic()
    body = {"model": "never", "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(gateway.base_url + "/v1/chat/completions", json=body, timeout=60)
    took = time.monotonic() - started
    assert response.status_code in (502, 503)
    assert "healthCheckTimeout" in response.json()["error"]["message"]
    assert 14 <= took < 40
    state = httpx.get(gateway.base_url + "/api/models/never", headers=ADMIN_HEADERS, timeout=10).json()
    assert state["model"]["state"] == "failed"
