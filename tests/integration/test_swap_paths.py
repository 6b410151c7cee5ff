"""Smaller llama-swap behaviours with real processes: custom upstream.ignorePaths, the log stream sources,
and a peer's responseHeader timeout."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import FAKE_UPSTREAM, fake_cmd
from tests.servers import ADMIN_HEADERS, free_port, pids_with, wait_until

# ------------------------------------------------------------------ helpers


def running(gateway) -> list[str]:
    body = httpx.get(gateway.base_url + "/running", headers=ADMIN_HEADERS, timeout=10).json()
    return sorted(r["model"] for r in body["running"])


def read_lines(gateway, path: str, quiet: float = 1.5, limit: float = 15) -> list[str]:
    """Every line `path` streams until it has been quiet for `quiet` seconds (or `limit` seconds passed)."""
    lines: list[str] = []
    deadline = time.monotonic() + limit
    timeout = httpx.Timeout(10, read=quiet)
    try:
        with httpx.stream("GET", gateway.base_url + path, headers=ADMIN_HEADERS, timeout=timeout) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/plain")
            for line in response.iter_lines():
                lines.append(line)
                if time.monotonic() > deadline:
                    break
    except httpx.ReadTimeout:
        pass
    return lines


def follow(gateway, path: str, trigger: Callable[[], None], until: Callable[[list[str]], bool]) -> list[str]:
    """Connect to the stream `path`, run `trigger`, and collect lines until `until(lines)` (or 15 s)."""
    lines: list[str] = []

    def reader() -> None:
        timeout = httpx.Timeout(10, read=15)
        try:
            with httpx.stream("GET", gateway.base_url + path, headers=ADMIN_HEADERS, timeout=timeout) as response:
                for line in response.iter_lines():
                    lines.append(line)
                    if until(lines):
                        return
        except httpx.HTTPError:
            return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(0.7)  # the response may only start with its first line: give the server time to subscribe
    trigger()
    thread.join(15)
    return list(lines)


def load(gateway, model: str) -> None:
    response = httpx.get(f"{gateway.base_url}/upstream/{model}/whoami", timeout=60)
    assert response.status_code == 200, response.text


# ------------------------------------------------------------------ a. custom upstream.ignorePaths


def test_a_custom_ignore_paths_list_refuses_only_its_paths_and_replaces_the_default(gateway_factory, tmp_path: Path):
    marker = str(tmp_path / "ignore-events")  # makes this test's model server findable in /proc
    gateway = gateway_factory(f"""
        models:
          m:
            cmd: {fake_cmd("--events", marker)}
        upstream:
          ignorePaths:
            - ^/ws$|^/api/jobs$
            - ^/poll/
    """)
    for path in ("/ws", "/api/jobs", "/poll/status"):
        refused = httpx.get(f"{gateway.base_url}/upstream/m{path}", timeout=30)
        assert refused.status_code == 503, (path, refused.text)
        assert "ignorePaths" in refused.text
    assert running(gateway) == [] and not pids_with(marker)  # none of them started the model

    # a path the custom list does not name goes through and loads the model; so does a static asset,
    # because a custom list replaces the default one (which would have ignored *.js)
    passed = httpx.get(f"{gateway.base_url}/upstream/m/api/jobs/extra", timeout=60)
    assert passed.status_code == 200 and passed.json()["path"] == "/api/jobs/extra"
    assert running(gateway) == ["m"] and pids_with(marker)
    asset = httpx.get(f"{gateway.base_url}/upstream/m/static/app.js", timeout=30)
    assert asset.status_code == 200 and asset.json()["path"] == "/static/app.js"

    # once the model is loaded, an ignored path is forwarded to it (it only never *triggers* a load)
    ws = httpx.get(f"{gateway.base_url}/upstream/m/ws", timeout=30)
    assert ws.status_code == 200 and ws.json()["path"] == "/ws"

    # and after an unload it is refused again
    assert httpx.post(gateway.base_url + "/api/models/unload/m", headers=ADMIN_HEADERS, timeout=30).status_code == 200
    assert httpx.get(f"{gateway.base_url}/upstream/m/ws", timeout=30).status_code == 503
    assert running(gateway) == []


# ------------------------------------------------------------------ b. log streams by source


@pytest.fixture
def two_model_gateway(gateway_factory):
    gateway = gateway_factory(f"""
        models:
          a:
            cmd: {fake_cmd()}
          b:
            cmd: {fake_cmd()}
        groups:
          both: {{swap: false, exclusive: false, members: [a, b]}}
    """)
    load(gateway, "a")
    return gateway


def test_logs_stream_upstream_carries_only_model_server_lines(two_model_gateway):
    lines = read_lines(two_model_gateway, "/logs/stream/upstream")
    text = "\n".join(lines)
    # several models: each line names its model
    assert "[a] [switchyard] starting a" in text and "[a] fake upstream listening on" in text
    assert "[a] [switchyard] a ready in" in text
    assert all(line.startswith("[a] ") for line in lines if line), lines
    # nothing from the gateway's own log
    assert "switchyard started with" not in text and "model a: stopped → starting" not in text


def test_logs_stream_proxy_carries_only_gateway_lines(two_model_gateway):
    lines = read_lines(two_model_gateway, "/logs/stream/proxy")
    text = "\n".join(lines)
    assert "switchyard started with 2 models" in text
    assert "model a: stopped → starting" in text and "model a: starting → ready" in text
    # one source: no prefixes; and no model server output
    assert not any(line.startswith("[") for line in lines), lines
    assert "fake upstream listening" not in text and "[switchyard] starting a" not in text


def test_logs_stream_without_source_carries_both(two_model_gateway):
    lines = read_lines(two_model_gateway, "/logs/stream")
    assert "switchyard started with 2 models" in lines  # gateway lines unprefixed
    assert "model a: starting → ready" in lines
    assert any(line.startswith("[a] fake upstream listening on") for line in lines)  # model lines prefixed
    assert any(line.startswith("[a] [switchyard] starting a") for line in lines)
    # in time order: the gateway started before the model did
    first_model = next(i for i, line in enumerate(lines) if line.startswith("[a] "))
    assert lines.index("switchyard started with 2 models") < first_model


def test_logs_stream_of_one_model_is_unprefixed_and_excludes_others(two_model_gateway):
    load(two_model_gateway, "b")
    lines = read_lines(two_model_gateway, "/logs/stream/a")
    text = "\n".join(lines)
    assert "[switchyard] starting a" in text and "fake upstream listening on" in text
    assert not any(line.startswith("[a] ") for line in lines), lines
    assert "starting b" not in text and "switchyard started with" not in text


def test_no_history_streams_only_new_lines_of_the_chosen_source(two_model_gateway):
    gateway = two_model_gateway

    def start_b() -> None:
        load(gateway, "b")

    upstream = follow(
        gateway, "/logs/stream/upstream?no-history", start_b, lambda ls: any("b ready in" in x for x in ls)
    )
    text = "\n".join(upstream)
    assert "[b] [switchyard] starting b" in text and "[b] [switchyard] b ready in" in text
    assert "[a]" not in text  # a's start happened before connecting: no history
    assert "model b:" not in text  # proxy lines belong to the proxy stream

    def unload_b() -> None:
        assert (
            httpx.post(gateway.base_url + "/api/models/unload/b", headers=ADMIN_HEADERS, timeout=30).status_code == 200
        )

    proxy = follow(gateway, "/logs/stream/proxy?no-history", unload_b, lambda ls: any("→ stopped" in x for x in ls))
    assert "model b: ready → stopping" in proxy and "model b: stopping → stopped" in proxy
    assert not any("switchyard started with" in x or "→ starting" in x for x in proxy), proxy  # no history
    assert not any("[switchyard] stopping b" in x for x in proxy)  # the model's own line is not a proxy line

    both = follow(gateway, "/logs/stream?no-history", start_b, lambda ls: any("b ready in" in x for x in ls))
    assert "model b: stopped → starting" in both  # proxy line, unprefixed
    assert any(x.startswith("[b] [switchyard] starting b") for x in both)  # model line, prefixed
    assert not any("switchyard started with" in x or x.startswith("[a]") or "model a:" in x for x in both), both


def test_logs_stream_upstream_without_local_models_carries_no_gateway_lines(gateway_factory):
    gateway = gateway_factory("models: {}\n")
    lines = read_lines(gateway, "/logs/stream/upstream", quiet=1.5)
    assert not any("switchyard started with" in line for line in lines), lines


# ------------------------------------------------------------------ c. a peer's responseHeader timeout


@pytest.fixture
def peer_port() -> int:
    port = free_port()
    peer = subprocess.Popen([sys.executable, str(FAKE_UPSTREAM), "--port", str(port)])
    try:
        wait_until(lambda: _up(f"http://127.0.0.1:{port}/health"), message="peer up")
        yield port
    finally:
        peer.terminate()
        peer.wait()


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def peer_chat(gateway, model: str, header_delay: float) -> tuple[httpx.Response, float]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "x_fake": {"header_delay": header_delay}}
    started = time.monotonic()
    response = httpx.post(gateway.base_url + "/v1/chat/completions", json=body, timeout=30)
    return response, time.monotonic() - started


def test_a_peers_response_header_timeout_gives_504(gateway_factory, peer_port):
    gateway = gateway_factory(f"""
        models: {{}}
        peers:
          hasty:
            proxy: http://127.0.0.1:{peer_port}
            models: [org/hasty]
            timeouts:
              responseHeader: 1
          patient:
            proxy: http://127.0.0.1:{peer_port}
            models: [org/patient]
    """)
    late, took = peer_chat(gateway, "hasty/org/hasty", 3)
    assert late.status_code == 504, late.text
    assert "1s" in late.text  # the peer's own limit, not the 60 s default
    assert 0.9 <= took < 2.5  # cut off after about a second, not after the peer's 3 s

    prompt, took = peer_chat(gateway, "hasty/org/hasty", 0.2)
    assert prompt.status_code == 200, prompt.text
    assert prompt.json()["choices"][0]["message"]["content"]

    # the same delay through a peer without the setting (default 60 s) is answered
    slow, took = peer_chat(gateway, "patient/org/patient", 3)
    assert slow.status_code == 200, slow.text
    assert took >= 2.9
