"""The gateway in front of the real llama-server, driven by the official OpenAI SDK."""

from __future__ import annotations

import signal
import time

import httpx
import openai
import pytest

from tests.integration.conftest import llama_cmd
from tests.servers import pids_with, wait_until


@pytest.fixture
def gateway(gateway_factory, llama_bin, tiny_gguf):
    return gateway_factory(f"""
        healthCheckTimeout: 30
        models:
          chat:
            cmd: {llama_cmd(llama_bin, tiny_gguf)}
            aliases: [gpt-4o-mini]
          embed:
            cmd: {llama_cmd(llama_bin, tiny_gguf, "--embeddings")}
          hidden:
            cmd: {llama_cmd(llama_bin, tiny_gguf)}
            unlisted: true
    """)


def client_for(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="unused", max_retries=0)


def wait_for_rows(gateway, count: int) -> list[dict]:
    rows: list[dict] = []

    def enough() -> bool:
        nonlocal rows
        rows = gateway.requests(limit=100)
        return len(rows) >= count

    wait_until(enough, timeout=10, message=f"{count} request log rows")
    return rows


def test_models_list_is_sorted_and_hides_unlisted(gateway):
    ids = [m.id for m in client_for(gateway).models.list()]
    assert ids == ["chat", "embed"]


def test_chat_completion_non_streaming(gateway):
    client = client_for(gateway)
    reply = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "Say hi"}], max_tokens=6)
    assert reply.choices[0].message.content
    assert reply.usage.completion_tokens == 6
    [row] = wait_for_rows(gateway, 1)
    assert row["path"] == "/v1/chat/completions"
    assert (row["model"], row["upstream_model"], row["status_code"], row["streamed"]) == ("chat", "chat", 200, False)
    assert row["prompt_tokens"] == reply.usage.prompt_tokens
    assert row["completion_tokens"] == 6
    assert row["duration_ms"] > 0 and row["client_addr"] == "127.0.0.1"


def test_chat_completion_streaming_arrives_in_chunks_and_is_counted(gateway):
    client = client_for(gateway)
    stream = client.chat.completions.create(
        model="gpt-4o-mini",  # an alias
        messages=[{"role": "user", "content": "Count"}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert len(chunks) >= 8 and text
    assert usage.completion_tokens == 8
    [row] = wait_for_rows(gateway, 1)
    assert row["streamed"] is True and row["model"] == "gpt-4o-mini" and row["upstream_model"] == "chat"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (usage.prompt_tokens, 8)
    assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["duration_ms"]


def test_stream_response_headers(gateway):
    with httpx.stream(
        "POST", gateway.base_url + "/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "stream": True},
        timeout=30,
    ) as response:  # fmt: skip
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        body = response.read()
    assert body.rstrip().endswith(b"data: [DONE]")


def test_completions_and_embeddings(gateway):
    client = client_for(gateway)
    completion = client.completions.create(model="chat", prompt="Once upon", max_tokens=4)
    assert completion.choices[0].text and completion.usage.completion_tokens == 4
    embedding = client.embeddings.create(model="embed", input="hello world")
    assert len(embedding.data[0].embedding) == 64
    rows = wait_for_rows(gateway, 2)
    by_path = {r["path"]: r for r in rows}
    assert by_path["/v1/completions"]["completion_tokens"] == 4
    assert by_path["/v1/embeddings"]["prompt_tokens"] == embedding.usage.prompt_tokens


def test_second_model_swaps_the_first_out(gateway):
    client = client_for(gateway)
    client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "a"}], max_tokens=1)
    chat_port = _proxy_port(gateway, "chat")
    assert pids_with(f"--port {chat_port}"), "the chat model server should be running"
    client.embeddings.create(model="embed", input="b")
    wait_until(lambda: not pids_with(f"--port {chat_port}"), timeout=15, message="chat model to stop")
    assert pids_with(f"--port {_proxy_port(gateway, 'embed')}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_gateway_shutdown_leaves_no_model_process(gateway, tiny_gguf, sig):
    client_for(gateway).chat.completions.create(model="chat", messages=[{"role": "user", "content": "a"}], max_tokens=1)
    assert pids_with(str(tiny_gguf))
    gateway_pid = gateway.proc.pid
    assert gateway.stop(sig) == 0
    wait_until(lambda: not pids_with(str(tiny_gguf)), timeout=15, message="model processes to exit")
    assert not pids_with(f"api.cli serve --config {gateway.config_path}"), f"gateway {gateway_pid} still alive"


def _proxy_port(gateway, model: str) -> int:
    # ports are assigned from startPort in sorted model-id order: chat, embed, hidden
    start = int(gateway.config_path.read_text().split("\n", 1)[0].split(":")[1])
    return start + ["chat", "embed", "hidden"].index(model)


def test_ttl_unloads_an_idle_model(gateway_factory, llama_bin, tiny_gguf):
    gateway = gateway_factory(f"""
        models:
          quick:
            cmd: {llama_cmd(llama_bin, tiny_gguf, "--alias ttl-test")}
            ttl: 1
    """)
    client_for(gateway).chat.completions.create(
        model="quick", messages=[{"role": "user", "content": "a"}], max_tokens=1
    )
    assert pids_with("--alias ttl-test")
    started = time.monotonic()
    wait_until(lambda: not pids_with("--alias ttl-test"), timeout=10, message="ttl unload")
    assert time.monotonic() - started >= 0.5
