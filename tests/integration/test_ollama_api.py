"""The Ollama API with the official `ollama` Python client, against Switchyard and the real llama-server.

Both entrances: `http://host:PORT/ollama` on the main port and the Ollama listener (`SWITCHYARD_OLLAMA_PORT`,
here a free port instead of 11434). The tiny model answers with exactly `num_predict` tokens, which makes the
token counts exact.
"""

from __future__ import annotations

import json
import math
import socket
import textwrap
from collections.abc import Iterator

import httpx
import ollama
import pytest

from tests.integration.conftest import llama_cmd
from tests.servers import ADMIN_HEADERS, GatewayProcess, free_port, free_port_block, pids_with, wait_until

TAG = f"syoll{free_port()}"  # unique --alias values, to find this module's processes


def alive(name: str) -> bool:
    return bool(pids_with(f"--alias {TAG}-{name} "))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, llama_bin, tiny_gguf) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("ollama-gw")
    config = textwrap.dedent(f"""\
        startPort: {free_port_block()}
        models:
          tiny:
            cmd: {llama_cmd(llama_bin, tiny_gguf, "--alias", f"{TAG}-tiny", "")}
          short:
            cmd: {llama_cmd(llama_bin, tiny_gguf, "--alias", f"{TAG}-short", "").replace("-c 2048", "-c 1024")}
          embed:
            cmd: {llama_cmd(llama_bin, tiny_gguf, "--alias", f"{TAG}-embed", "--embeddings")}
        groups:
          all: {{swap: false, exclusive: false, members: [tiny, short, embed]}}
    """)
    gw = GatewayProcess(workdir, config, {"SWITCHYARD_OLLAMA_PORT": str(free_port())})
    gw.ollama_url = f"http://127.0.0.1:{gw.env['SWITCHYARD_OLLAMA_PORT']}"  # type: ignore[attr-defined]
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(params=["prefix", "listener"])
def client(request, gateway) -> ollama.Client:
    """The official client on both entrances: :3000/ollama and the Ollama listener port."""
    host = gateway.base_url + "/ollama" if request.param == "prefix" else gateway.ollama_url
    return ollama.Client(host=host, timeout=60)


def records(gateway, model: str) -> list[dict]:
    return [r for r in gateway.requests(limit=200) if r["model"] == model]


def test_list_version_and_show_report_the_effective_context(client):
    names = [m.model for m in client.list().models]
    assert names == ["embed", "short", "tiny"]
    details = client.list().models[0].details
    assert details.family == "llama" and details.format == "gguf"
    shown = client.show("short")
    assert shown.modelinfo["llama.context_length"] == 1024  # -c 1024, not the file's trained 2048
    assert shown.modelinfo["switchyard.trained_context_length"] == 2048
    assert "num_ctx" in shown.parameters and "1024" in shown.parameters
    assert shown.capabilities == ["completion"]
    assert client.show("embed:latest").capabilities == ["embedding"]
    with pytest.raises(ollama.ResponseError) as missing:
        client.show("nope")
    assert missing.value.status_code == 404 and "nope" in missing.value.error


def test_chat_without_streaming(client, gateway):
    before = len(records(gateway, "tiny"))
    reply = client.chat(
        model="tiny", messages=[{"role": "user", "content": "hello"}], stream=False, options={"num_predict": 4}
    )
    assert reply.done and reply.done_reason == "length" and reply.message.role == "assistant"
    assert reply.message.content and reply.eval_count == 4 and reply.prompt_eval_count > 0
    assert reply.total_duration >= reply.eval_duration > 0
    wait_until(lambda: len(records(gateway, "tiny")) > before, message="the request log row")
    row = records(gateway, "tiny")[0]
    assert row["path"] == "/ollama/api/chat" and row["status_code"] == 200 and not row["streamed"]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (reply.prompt_eval_count, reply.eval_count)


def test_chat_streams_ndjson(client, gateway):
    parts = list(client.chat(model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True,
                             options={"num_predict": 5, "temperature": 0}))  # fmt: skip
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert sum(1 for p in parts if p.message.content) == 5
    final = parts[-1]
    assert final.eval_count == 5 and final.done_reason == "length" and final.prompt_eval_count > 0
    wait_until(lambda: records(gateway, "tiny") and records(gateway, "tiny")[0]["streamed"], message="row")
    row = records(gateway, "tiny")[0]
    assert row["completion_tokens"] == 5 and row["ttft_ms"] is not None


def test_generate_streamed_and_not(client):
    whole = client.generate(model="tiny", prompt="Why?", stream=False, options={"num_predict": 3})
    assert whole.response and whole.eval_count == 3 and whole.done_reason == "length"
    pieces = list(client.generate(model="tiny", prompt="Why?", system="be brief", stream=True,
                                  options={"num_predict": 3}))  # fmt: skip
    assert "".join(p.response for p in pieces) and pieces[-1].done and pieces[-1].eval_count == 3
    raw = client.generate(model="tiny", prompt="Once upon", raw=True, stream=False, options={"num_predict": 2})
    assert raw.eval_count == 2


def test_embed_and_the_legacy_embeddings(client):
    result = client.embed(model="embed", input=["first text", "second text"])
    assert len(result.embeddings) == 2 and all(len(v) == 64 for v in result.embeddings)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-4) for v in result.embeddings)
    truncated = client.embed(model="embed", input="one", dimensions=16)
    assert len(truncated.embeddings[0]) == 16
    legacy = client.embeddings(model="embed", prompt="one")
    assert len(legacy.embedding) == 64


def test_ps_lists_loaded_models_with_the_running_context(client):
    client.generate(model="short", prompt="x", stream=False, options={"num_predict": 1})
    loaded = {m.model: m for m in client.ps().models}
    assert "short" in loaded
    assert loaded["short"].context_length == 1024  # the running server's n_ctx (/props)
    assert loaded["short"].expires_at is not None and loaded["short"].size > 0


def test_keep_alive_zero_really_unloads(client, gateway):
    client.generate(model="tiny", prompt="x", stream=False, options={"num_predict": 1})
    assert alive("tiny")
    reply = client.generate(model="tiny", prompt="x", stream=False, keep_alive=0, options={"num_predict": 1})
    assert reply.done
    wait_until(lambda: not alive("tiny"), message="tiny's llama-server to exit after keep_alive 0")
    # an empty prompt only loads the model; with keep_alive 0 it only unloads it (answered once it is gone)
    loaded = client.generate(model="tiny")
    assert loaded.done_reason == "load" and alive("tiny")
    unloaded = client.generate(model="tiny", keep_alive=0)
    assert unloaded.done_reason == "unload" and not alive("tiny")
    assert "tiny" not in [m.model for m in client.ps().models]
    # unloading a model that is not loaded does not start it
    client.chat(model="tiny", messages=[], keep_alive=0)
    assert not alive("tiny")


def test_keep_alive_sets_how_long_the_model_stays(client):
    client.generate(model="short", prompt="x", stream=False, keep_alive="1s", options={"num_predict": 1})
    wait_until(lambda: not alive("short"), timeout=10, message="short to be stopped 1 s after its last request")
    client.generate(model="short", prompt="x", stream=False, keep_alive=-1, options={"num_predict": 1})
    expires = {m.model: m.expires_at for m in client.ps().models}["short"]
    assert expires.year > 2100  # kept loaded "forever", as Ollama reports it


def test_errors_come_back_in_ollama_shape(gateway):
    base = gateway.base_url + "/ollama/api"
    unknown = httpx.post(base + "/chat", json={"model": "missing", "messages": [{"role": "user", "content": "x"}]})
    assert unknown.status_code == 404 and set(unknown.json()) == {"error"} and "missing" in unknown.json()["error"]
    broken = httpx.post(base + "/generate", content=b"{not json")
    assert broken.status_code == 400 and "error" in broken.json()
    bad_option = httpx.post(base + "/generate", json={"model": "tiny", "prompt": "x", "options": {"top_k": "many"}})
    assert bad_option.status_code == 400 and "top_k" in bad_option.json()["error"]
    assert httpx.post(base + "/pull", json={"model": "llama3"}).status_code == 501
    assert httpx.get(base + "/chat").status_code == 405
    assert httpx.get(gateway.base_url + "/ollama").text == "Ollama is running"


def test_the_listener_serves_only_ollama_and_openai_paths(gateway):
    listener = gateway.ollama_url
    assert httpx.get(listener + "/").text == "Ollama is running"
    assert httpx.get(listener + "/api/version").json()["version"]
    assert [m["id"] for m in httpx.get(listener + "/v1/models").json()["data"]] == ["embed", "short", "tiny"]
    admin = httpx.get(listener + "/api/requests", headers=ADMIN_HEADERS)
    assert admin.status_code == 404 and "error" in admin.json()  # the admin API lives on the main port only
    # and on the main port /api/* is the admin API, not Ollama
    assert "items" in httpx.get(gateway.base_url + "/api/requests", headers=ADMIN_HEADERS).json()
    raw = httpx.post(listener + "/api/chat", json={"model": "tiny", "messages": [{"role": "user", "content": "x"}],
                                                    "options": {"num_predict": 2}}, timeout=60)  # fmt: skip
    lines = [json.loads(line) for line in raw.text.splitlines()]
    assert raw.headers["content-type"] == "application/x-ndjson" and lines[-1]["done"] is True


def test_a_busy_ollama_port_is_reported_and_the_gateway_runs_on(gateway_factory):
    with socket.socket() as taken:  # e.g. a real Ollama on 11434
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gateway = gateway_factory("models: {}\n", env={"SWITCHYARD_OLLAMA_PORT": str(port)})
        assert (
            f"Ollama listener not started on 127.0.0.1:{port}: the port is in use"
            in httpx.get(gateway.base_url + "/logs", headers=ADMIN_HEADERS).text
        )
        assert httpx.get(gateway.base_url + "/ollama/api/tags").json() == {"models": []}
