"""The swap engine with real processes: groups, collation, lifecycle endpoints, logs, events, reload."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from tests.integration.conftest import fake_cmd, llama_cmd
from tests.servers import ADMIN_HEADERS, pids_with, wait_until


def chat(gateway, model: str, **extra) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **extra}
    return httpx.post(gateway.base_url + "/v1/chat/completions", json=body, timeout=60)


def alive(tag: str) -> bool:
    return bool(pids_with(f"--alias {tag} "))


@pytest.fixture
def tag(request) -> str:
    return f"sy{abs(hash(request.node.name)) % 10**8}"


def models_yaml(llama_bin, gguf, tag: str, names: list[str], extra: dict[str, str] | None = None) -> str:
    out = []
    for name in names:
        out.append(f"  {name}:\n    cmd: {llama_cmd(llama_bin, gguf, '--alias', f'{tag}-{name}', '')}")
        if extra and name in extra:
            out.append("    " + extra[name])
    return "models:\n" + "\n".join(out) + "\n"


def test_groups_swap_exclusive_and_persistent(gateway_factory, llama_bin, tiny_gguf, tag):
    gateway = gateway_factory(
        models_yaml(llama_bin, tiny_gguf, tag, ["a", "b", "c", "d", "p"])
        + """
groups:
  solo:        {swap: true, exclusive: true, members: [a, b]}
  together:    {swap: false, exclusive: false, members: [c, d]}
  always:      {swap: false, exclusive: false, persistent: true, members: [p]}
"""
    )
    for model in ("p", "c", "d"):
        assert chat(gateway, model).status_code == 200
    assert all(alive(f"{tag}-{m}") for m in ("p", "c", "d"))  # non-exclusive groups leave others alone
    assert chat(gateway, "a").status_code == 200
    # a's group is exclusive: c and d stop; p's group is persistent and stays
    wait_until(lambda: not alive(f"{tag}-c") and not alive(f"{tag}-d"), message="c and d to stop")
    assert alive(f"{tag}-a") and alive(f"{tag}-p")
    assert chat(gateway, "b").status_code == 200
    wait_until(lambda: not alive(f"{tag}-a"), message="a swapped out by b (swap: true)")
    assert alive(f"{tag}-b") and alive(f"{tag}-p")
    running = httpx.get(gateway.base_url + "/running", headers=ADMIN_HEADERS).json()
    assert sorted(r["model"] for r in running["running"]) == ["b", "p"]
    assert all(r["state"] == "ready" for r in running["running"])


def test_abcabc_sent_together_is_collated_into_at_most_two_swaps(gateway_factory, llama_bin, tiny_gguf, tag):
    gateway = gateway_factory(models_yaml(llama_bin, tiny_gguf, tag, ["a", "b", "c"]))
    results: dict[int, int] = {}

    def send(index: int, model: str) -> None:
        results[index] = chat(gateway, model, max_tokens=16).status_code

    threads = [threading.Thread(target=send, args=(i, m)) for i, m in enumerate("abcabc")]
    for thread in threads:
        thread.start()
        time.sleep(0.01)  # keep the arrival order A B C A B C
    for thread in threads:
        thread.join()
    assert list(results.values()) == [200] * 6
    swaps = httpx.get(gateway.base_url + "/running", headers=ADMIN_HEADERS).json()["swaps"]
    assert swaps <= 2, f"{swaps} swaps for ABCABC"


def test_requests_during_a_slow_start_share_one_start(gateway_factory, tmp_path):
    gateway = gateway_factory(f"""
        models:
          slow:
            cmd: {fake_cmd("--ready-after", "1.5")}
    """)
    codes = []
    threads = [threading.Thread(target=lambda: codes.append(chat(gateway, "slow").status_code)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 4
    log = httpx.get(gateway.base_url + "/logs", headers=ADMIN_HEADERS).text
    assert log.count("starting slow") == 1


def test_unload_endpoints_and_running(gateway_factory, llama_bin, tiny_gguf, tag):
    gateway = gateway_factory(
        models_yaml(llama_bin, tiny_gguf, tag, ["one", "two/with-slash"])
        + "groups:\n  all: {swap: false, exclusive: false, members: [one, two/with-slash]}\n"
    )
    assert chat(gateway, "one").status_code == 200
    second = chat(gateway, "two/with-slash")
    assert second.status_code == 200, second.text
    response = httpx.post(gateway.base_url + "/api/models/unload/two/with-slash", headers=ADMIN_HEADERS, timeout=30)
    assert response.status_code == 200 and response.json()["unloaded"] == "two/with-slash"
    assert not alive(f"{tag}-two/with-slash") and alive(f"{tag}-one")
    assert (
        httpx.post(gateway.base_url + "/api/models/unload/nope", headers=ADMIN_HEADERS, timeout=30).status_code == 404
    )
    assert httpx.post(gateway.base_url + "/api/models/unload", headers=ADMIN_HEADERS, timeout=30).status_code == 200
    assert not alive(f"{tag}-one")
    assert httpx.get(gateway.base_url + "/running", headers=ADMIN_HEADERS).json()["running"] == []


def test_upstream_passthrough_loads_on_demand_and_honours_ignore_paths(gateway_factory, llama_bin, tiny_gguf, tag):
    gateway = gateway_factory(models_yaml(llama_bin, tiny_gguf, tag, ["m"]))
    ignored = httpx.get(gateway.base_url + "/upstream/m/static/app.js", timeout=30)
    assert ignored.status_code == 503 and not alive(f"{tag}-m")  # a static asset never triggers a load
    props = httpx.get(gateway.base_url + "/upstream/m/props", timeout=30)
    assert props.status_code == 200 and "default_generation_settings" in props.json()
    assert alive(f"{tag}-m")
    models = httpx.get(gateway.base_url + "/upstream/m/v1/models", timeout=30)
    assert models.status_code == 200 and models.json()["data"]
    assert httpx.get(gateway.base_url + "/upstream/unknown/x").status_code == 404


def test_logs_history_and_live_stream(gateway_factory, llama_bin, tiny_gguf, tag):
    gateway = gateway_factory(models_yaml(llama_bin, tiny_gguf, tag, ["m"]))
    assert chat(gateway, "m").status_code == 200
    with httpx.stream("GET", gateway.base_url + "/logs/stream/m", headers=ADMIN_HEADERS, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/plain")
        history = next(response.iter_text())
    assert "[switchyard] starting m" in history and "ready in" in history
    assert "[switchyard] starting m" in httpx.get(gateway.base_url + "/logs", headers=ADMIN_HEADERS).text
    assert httpx.get(gateway.base_url + "/logs/stream/nope", headers=ADMIN_HEADERS, timeout=5).status_code == 404

    lines: list[str] = []

    def follow() -> None:
        with httpx.stream(
            "GET", gateway.base_url + "/logs/stream/proxy?no-history", headers=ADMIN_HEADERS, timeout=10
        ) as live:
            for line in live.iter_lines():
                lines.append(line)
                if "stopping" in line:
                    return

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    time.sleep(0.5)
    httpx.post(gateway.base_url + "/api/models/unload", headers=ADMIN_HEADERS, timeout=30)
    follower.join(10)
    assert lines and "started with" not in "".join(lines)  # no history, only what happened after connecting
    assert any("m: ready → stopping" in line for line in lines)


def test_events_stream_reports_model_state_and_requests(gateway_factory, llama_bin, tiny_gguf, tag):
    gateway = gateway_factory(models_yaml(llama_bin, tiny_gguf, tag, ["m"]))
    seen: list[tuple[str, dict]] = []

    def listen() -> None:
        with httpx.stream("GET", gateway.base_url + "/api/events", headers=ADMIN_HEADERS, timeout=30) as response:
            event = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    seen.append((event, json.loads(line[6:])))
                    if event == "request.completed":
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    wait_until(lambda: seen, message="the initial snapshot")
    assert seen[0][0] == "models"
    assert chat(gateway, "m").status_code == 200
    listener.join(10)
    kinds = [kind for kind, _ in seen]
    assert "model.state" in kinds and kinds[-1] == "request.completed"
    states = [data["state"] for kind, data in seen if kind == "model.state"]
    assert states[:2] == ["starting", "ready"]
    assert seen[-1][1]["model"] == "m" and seen[-1][1]["status"] == 200


def test_send_loading_state_streams_progress_in_the_reasoning_field(gateway_factory):
    gateway = gateway_factory(f"""
        sendLoadingState: true
        models:
          slow:
            cmd: {fake_cmd("--ready-after", "1.6")}
    """)
    events = []
    with httpx.stream(
        "POST", gateway.base_url + "/v1/chat/completions", timeout=30,
        json={"model": "slow", "stream": True, "messages": [{"role": "user", "content": "x"}]},
    ) as response:  # fmt: skip
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    reasoning = "".join(e["choices"][0]["delta"].get("reasoning_content") or "" for e in events if e.get("choices"))
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
    assert "loading model slow" in reasoning and "Done!" in reasoning and "." in reasoning
    assert content.startswith("tok0")


def test_preload_hook_starts_models_at_startup(gateway_factory, llama_bin, tiny_gguf, tag):
    gateway = gateway_factory(
        models_yaml(llama_bin, tiny_gguf, tag, ["warm", "cold"]) + "hooks:\n  on_startup:\n    preload: [warm]\n"
    )
    wait_until(lambda: alive(f"{tag}-warm"), timeout=15, message="preloaded model")
    assert not alive(f"{tag}-cold")
    assert gateway.requests() == []  # a preload is not a client request


def test_profiles_and_selectors(gateway_factory, llama_bin, tiny_gguf, tag):
    gateway = gateway_factory(
        models_yaml(llama_bin, tiny_gguf, tag, ["small", "large"])
        + """
profiles:
  coding:
    description: route the coding alias to the large model
    pins: {coder: large, retired: ~}
selectors:
  best:
    strategy: warm
    targets: [large, small]
"""
    )
    # no profile active: 'coder' is unknown
    assert chat(gateway, "coder").status_code == 404
    assert (
        httpx.put(
            gateway.base_url + "/api/profiles/active", headers=ADMIN_HEADERS, json={"active": "coding"}
        ).status_code
        == 200
    )
    assert chat(gateway, "coder").status_code == 200
    assert alive(f"{tag}-large")
    disabled = chat(gateway, "retired")
    assert disabled.status_code == 404 and "disabled" in disabled.json()["error"]["message"]
    # warm selector: 'large' is ready, so 'best' goes there without touching 'small'
    assert chat(gateway, "best").status_code == 200
    assert not alive(f"{tag}-small")
    rows = gateway.requests()
    assert rows[0]["model"] == "best" and rows[0]["upstream_model"] == "large"
    assert (
        httpx.put(gateway.base_url + "/api/profiles/active", headers=ADMIN_HEADERS, json={"active": "nope"}).status_code
        == 400
    )


def test_peers_get_their_api_key_filters_and_own_model_name(gateway_factory, tmp_path):
    import subprocess
    import sys

    from tests.integration.conftest import FAKE_UPSTREAM
    from tests.servers import free_port

    port = free_port()
    peer = subprocess.Popen([sys.executable, str(FAKE_UPSTREAM), "--port", str(port)])
    try:
        wait_until(lambda: _up(f"http://127.0.0.1:{port}/health"), message="peer up")
        gateway = gateway_factory(f"""
            models: {{}}
            peers:
              remote:
                proxy: http://127.0.0.1:{port}
                apiKey: peer-secret
                models: [org/echo]
                filters:
                  stripParams: "temperature"
                  setParams: {{provider: {{zdr: true}}}}
        """)
        for name in ("remote/org/echo", "org/echo"):
            response = httpx.post(
                gateway.base_url + "/v1/embeddings",
                json={"model": name, "input": "x", "temperature": 2},
                headers={"authorization": "Bearer client-key"},
                timeout=30,
            )
            echoed = response.json()
            assert echoed["headers"]["authorization"] == "Bearer peer-secret"
            assert echoed["headers"]["x-api-key"] == "peer-secret"
            assert echoed["json"] == {"model": "org/echo", "input": "x", "provider": {"zdr": True}}
        listed = [m["id"] for m in httpx.get(gateway.base_url + "/v1/models").json()["data"]]
        assert listed == ["remote/org/echo"]

        # a routing rule to the peer can pass the client's own key through instead
        rule = {"match": {"model": "mine"}, "action": "route",
                "target": {"kind": "peer", "value": "remote", "model": "org/echo", "auth_passthrough": True}}  # fmt: skip
        assert httpx.post(gateway.base_url + "/api/policies", json=rule, headers=ADMIN_HEADERS).status_code == 201
        echoed = httpx.post(
            gateway.base_url + "/v1/embeddings",
            json={"model": "mine", "input": "x"},
            headers={"authorization": "Bearer client-key"},
            timeout=30,
        ).json()
        assert echoed["headers"]["authorization"] == "Bearer client-key" and "x-api-key" not in echoed["headers"]
    finally:
        peer.terminate()
        peer.wait()


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_config_hot_reload_keeps_unchanged_models_running(gateway_factory, llama_bin, tiny_gguf, tag):
    base = models_yaml(llama_bin, tiny_gguf, tag, ["keep"])
    gateway = gateway_factory(base)
    assert chat(gateway, "keep").status_code == 200
    [pid] = pids_with(f"--alias {tag}-keep ")
    text = gateway.config_path.read_text()
    # "zz-added" sorts after "keep", so keep's ${PORT} (assigned in sorted id order) does not move
    gateway.config_path.write_text(
        text + f"  zz-added:\n    cmd: {llama_cmd(llama_bin, tiny_gguf, '--alias', f'{tag}-added', '')}\n"
    )

    def listed() -> list[str]:
        return [m["id"] for m in httpx.get(gateway.base_url + "/v1/models").json()["data"]]

    wait_until(lambda: "zz-added" in listed(), timeout=15, message="the new model after reload")
    assert pids_with(f"--alias {tag}-keep ") == [pid]  # unchanged model kept running, same process
    assert chat(gateway, "zz-added").status_code == 200
    # a broken file is rejected and the last good config stays in effect
    gateway.config_path.write_text("models: [this is: not valid")
    wait_until(
        lambda: "config reload rejected" in httpx.get(gateway.base_url + "/logs", headers=ADMIN_HEADERS).text,
        message="rejection",
    )
    assert listed() == ["keep", "zz-added"]
    assert chat(gateway, "zz-added").status_code == 200


def test_matrix_router_keeps_a_set_together_and_evicts_outside_it(gateway_factory, llama_bin, tiny_gguf, tag):
    gateway = gateway_factory(
        models_yaml(llama_bin, tiny_gguf, tag, ["llm", "tts", "big"])
        + """
routing:
  router:
    use: matrix
    settings:
      matrix:
        vars: {l: llm, t: tts}
        sets:
          duo: "l & t"
          alone: "big"
"""
    )
    assert chat(gateway, "llm").status_code == 200
    assert chat(gateway, "tts").status_code == 200
    assert alive(f"{tag}-llm") and alive(f"{tag}-tts")  # both fit in the set "duo"
    assert chat(gateway, "big").status_code == 200
    wait_until(lambda: not alive(f"{tag}-llm") and not alive(f"{tag}-tts"), message="duo evicted for big")
    assert alive(f"{tag}-big")
