"""Errors a client can cause, answered in the OpenAI (or Anthropic) shape with the right status."""

from __future__ import annotations

import json
import socket
import time

import httpx
import openai
import pytest

from tests.integration.conftest import fake_cmd, llama_cmd
from tests.servers import wait_until


@pytest.fixture
def gateway(gateway_factory, llama_bin, tiny_gguf, tmp_path):
    events = tmp_path / "upstream-events.log"
    gw = gateway_factory(
        f"""
        healthCheckTimeout: 15
        models:
          chat:
            cmd: {llama_cmd(llama_bin, tiny_gguf)}
          broken:
            cmd: {llama_cmd(llama_bin, tmp_path / "missing-model.gguf")}
          exits:
            cmd: {fake_cmd("--fail-start")}
          fake:
            cmd: {fake_cmd("--events", str(events))}
            concurrencyLimit: 1
        """,
        env={"SWITCHYARD_MAX_BODY_BYTES": "20000"},
    )
    gw.events = events
    return gw


def post(gateway, path: str, content: bytes | str, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        gateway.base_url + path, content=content, headers=headers or {"content-type": "application/json"}, timeout=60
    )


def assert_openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    return error


def test_malformed_json_is_400(gateway):
    error = assert_openai_error(post(gateway, "/v1/chat/completions", b'{"model": "chat", "messages": ['), 400)
    assert "not valid JSON" in error["message"]
    assert_openai_error(post(gateway, "/v1/chat/completions", b'["a list"]'), 400)


def test_wrong_type_for_model_is_400(gateway):
    assert_openai_error(post(gateway, "/v1/chat/completions", json.dumps({"model": 5})), 400)


def test_missing_model_is_404_listing_available_ids(gateway):
    error = assert_openai_error(post(gateway, "/v1/chat/completions", json.dumps({"messages": []})), 404)
    assert "broken, chat, exits, fake" in error["message"]


def test_unknown_model_is_404_with_the_sdk(gateway):
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-5-nonexistent", messages=[{"role": "user", "content": "x"}])
    assert "gpt-5-nonexistent" in str(info.value) and "chat" in str(info.value)
    assert info.value.body["code"] == "model_not_found"


def test_anthropic_endpoint_errors_use_anthropic_shape(gateway):
    response = post(gateway, "/v1/messages", json.dumps({"model": "nope", "max_tokens": 5, "messages": []}))
    assert response.status_code == 404
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"


def test_oversized_body_is_413_without_reading_it_all(gateway):
    big = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "x" * 50000}]})
    assert_openai_error(post(gateway, "/v1/chat/completions", big), 413)

    def chunks():
        yield b'{"model": "chat", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 4000
        yield b'"}]}'

    # a chunked body with no content-length is cut off at the limit too
    response = httpx.post(gateway.base_url + "/v1/chat/completions", content=chunks(), timeout=30)
    assert_openai_error(response, 413)


def test_model_that_fails_to_start_is_502_with_its_last_log_lines(gateway):
    error = assert_openai_error(
        post(gateway, "/v1/chat/completions", json.dumps({"model": "broken", "messages": []})), 502
    )
    assert "failed to start" in error["message"]
    assert "missing-model.gguf" in error["message"]  # llama-server's own complaint, from its log
    error = assert_openai_error(
        post(gateway, "/v1/chat/completions", json.dumps({"model": "exits", "messages": []})), 502
    )
    assert "failing on purpose" in error["message"] and "code 7" in error["message"]
    # the gateway is still fine afterwards
    ok = post(
        gateway,
        "/v1/chat/completions",
        json.dumps({"model": "chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}),
    )
    assert ok.status_code == 200


def test_upstream_crash_mid_stream_ends_the_stream_cleanly_and_is_logged(gateway):
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="x", max_retries=0)
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "x"}], stream=True,
            extra_body={"x_fake": {"chunks": 10, "crash_after": 3, "id": "crashy"}},
        ):  # fmt: skip
            received.append(chunk)
    assert len(received) == 3
    assert "failed mid-stream" in str(info.value)
    wait_until(lambda: any(r["error"] for r in gateway.requests()), message="error row")
    row = gateway.requests()[0]
    assert row["model"] == "fake" and "mid-response" in row["error"]
    # the crashed model restarts on its next request
    reply = client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].message.content


def test_client_disconnect_cancels_the_upstream_and_frees_the_slot(gateway):
    body = json.dumps({
        "model": "fake", "stream": True, "messages": [],
        "x_fake": {"chunks": 200, "delay": 0.05, "id": "slow-1"},
    }).encode()  # fmt: skip
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        first = sock.recv(4096)
        assert b"200 OK" in first
    # the upstream saw the client go away …
    wait_until(lambda: "disconnect slow-1" in gateway.events.read_text(), timeout=10, message="upstream disconnect")
    assert "done slow-1" not in gateway.events.read_text()
    # … and the only concurrency slot (concurrencyLimit: 1) is free again
    started = time.monotonic()
    reply = post(
        gateway, "/v1/chat/completions", json.dumps({"model": "fake", "messages": [], "x_fake": {"id": "next"}})
    )
    assert reply.status_code == 200 and time.monotonic() - started < 5
    wait_until(lambda: any(r["status_code"] == 499 for r in gateway.requests()), message="499 row")


def test_concurrency_limit_is_429(gateway):
    import threading

    slow = json.dumps({"model": "fake", "messages": [], "x_fake": {"chunks": 20, "delay": 0.05}})
    first = threading.Thread(target=post, args=(gateway, "/v1/chat/completions", slow))
    first.start()
    wait_until(
        lambda: gateway.events.exists() and "start" in gateway.events.read_text(), message="first request upstream"
    )
    response = post(gateway, "/v1/chat/completions", json.dumps({"model": "fake", "messages": []}))
    first.join()
    error = assert_openai_error(response, 429)
    assert "concurrency limit is 1" in error["message"]
