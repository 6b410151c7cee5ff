"""Every inference endpoint, the SDKs' view of them, remote APIs, timeouts, CORS, captures and cost."""

from __future__ import annotations

import datetime
import hashlib
import json
import sqlite3
import subprocess
import sys
import time
import zlib

import anthropic
import httpx
import openai
import pytest

from tests.integration.conftest import FAKE_UPSTREAM, fake_cmd, llama_cmd
from tests.servers import free_port, wait_until


def rows_from_db(gateway) -> list[dict]:
    with sqlite3.connect(gateway.workdir / "switchyard.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("select * from request_logs order by id")]


def wait_rows(gateway, count: int) -> list[dict]:
    wait_until(lambda: len(rows_from_db(gateway)) >= count, message=f"{count} rows")
    return rows_from_db(gateway)


@pytest.fixture
def llama_gateway(gateway_factory, llama_bin, tiny_gguf):
    return gateway_factory(f"""
        models:
          chat:
            cmd: {llama_cmd(llama_bin, tiny_gguf)}
          embed:
            cmd: {llama_cmd(llama_bin, tiny_gguf, "--embeddings")}
    """)


class TestSdksAgainstLlamaServer:
    def test_openai_responses_and_chat_tokens_match_the_upstream(self, llama_gateway):
        client = openai.OpenAI(base_url=llama_gateway.base_url + "/v1", api_key="x", max_retries=0)
        response = client.responses.create(model="chat", input="Tell me something", max_output_tokens=7)
        assert response.usage.output_tokens == 7
        streamed = list(client.responses.create(model="chat", input="Again", max_output_tokens=5, stream=True))
        completed = next(e for e in streamed if e.type == "response.completed")
        assert completed.response.usage.output_tokens == 5
        chat = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}], max_tokens=3)
        rows = wait_rows(llama_gateway, 3)
        assert [r["completion_tokens"] for r in rows] == [7, 5, 3]
        assert rows[0]["prompt_tokens"] == response.usage.input_tokens
        assert rows[1]["prompt_tokens"] == completed.response.usage.input_tokens and rows[1]["streamed"]
        assert rows[2]["prompt_tokens"] == chat.usage.prompt_tokens
        assert rows[1]["ttft_ms"] and rows[1]["ttft_ms"] <= rows[1]["duration_ms"]
        assert all(r["cost_usd"] == 0 and r["cost_known"] for r in rows)  # a local model costs nothing per token

    def test_anthropic_messages_stream_and_count_tokens(self, llama_gateway):
        client = anthropic.Anthropic(base_url=llama_gateway.base_url, api_key="x", max_retries=0)
        message = client.messages.create(model="chat", max_tokens=6, messages=[{"role": "user", "content": "Hello"}])
        assert message.usage.output_tokens == 6 and message.content
        with client.messages.stream(model="chat", max_tokens=4, messages=[{"role": "user", "content": "Hi"}]) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text and final.usage.output_tokens == 4
        counted = client.messages.count_tokens(model="chat", messages=[{"role": "user", "content": "Hello there"}])
        assert counted.input_tokens > 0
        rows = wait_rows(llama_gateway, 3)
        assert (rows[0]["prompt_tokens"], rows[0]["completion_tokens"]) == (message.usage.input_tokens, 6)
        assert rows[1]["completion_tokens"] == 4 and rows[1]["streamed"] and rows[1]["ttft_ms"] is not None
        assert rows[2]["path"] == "/v1/messages/count_tokens" and rows[2]["completion_tokens"] is None

    def test_anthropic_errors_come_back_as_anthropic_errors(self, llama_gateway):
        client = anthropic.Anthropic(base_url=llama_gateway.base_url, api_key="x", max_retries=0)
        with pytest.raises(anthropic.NotFoundError) as info:
            client.messages.create(model="claude-nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        assert info.value.body["error"]["type"] == "not_found_error"

    def test_embeddings_usage(self, llama_gateway):
        client = openai.OpenAI(base_url=llama_gateway.base_url + "/v1", api_key="x", max_retries=0)
        result = client.embeddings.create(model="embed", input=["a b c", "d e"])
        [row] = wait_rows(llama_gateway, 1)
        assert row["prompt_tokens"] == result.usage.prompt_tokens and row["completion_tokens"] == 0


@pytest.fixture
def echo_gateway(gateway_factory):
    return gateway_factory(f"""
        models:
          echo:
            cmd: {fake_cmd()}
    """)


class TestEveryEndpointReachesTheModel:
    @pytest.mark.parametrize(
        "path",
        ["/v1/audio/speech", "/v1/images/generations", "/v1/rerank", "/v1/reranking", "/rerank", "/infill",
         "/completion", "/sdapi/v1/txt2img", "/sdapi/v1/img2img"],
    )  # fmt: skip
    def test_json_endpoints(self, echo_gateway, path):
        body = {"model": "echo", "input": "hello", "query": "q", "documents": ["a", "b"]}
        echoed = httpx.post(echo_gateway.base_url + path, json=body, timeout=30).json()
        assert echoed["path"] == path and echoed["json"] == body

    @pytest.mark.parametrize("path", ["/v1/audio/transcriptions", "/v1/images/edits"])
    def test_multipart_endpoints_read_the_model_from_a_form_field_and_pass_the_bytes_through(self, echo_gateway, path):
        upload = bytes(range(256)) * 400  # 100 KiB of binary, including \r\n and a fake boundary-ish run
        files = {"file": ("clip.wav", upload, "audio/wav")}
        request = httpx.Request(
            "POST", echo_gateway.base_url + path, data={"model": "echo", "language": "en"}, files=files
        )
        sent = request.read()
        with httpx.Client(timeout=30) as client:
            echoed = client.send(request).json()
        assert echoed["path"] == path
        assert echoed["body_len"] == len(sent) and echoed["body_sha256"] == hashlib.sha256(sent).hexdigest()
        assert echoed["headers"]["content-type"].startswith("multipart/form-data; boundary=")

    def test_multipart_without_a_model_field_is_404(self, echo_gateway):
        response = httpx.post(echo_gateway.base_url + "/v1/audio/transcriptions", files={"file": ("a.wav", b"xx")})
        assert response.status_code == 404 and "form field" in response.json()["error"]["message"]

    @pytest.mark.parametrize("path", ["/v1/audio/voices", "/props", "/sdapi/v1/loras"])
    def test_query_string_endpoints(self, echo_gateway, path):
        echoed = httpx.get(echo_gateway.base_url + path, params={"model": "echo"}, timeout=30).json()
        assert echoed["method"] == "GET" and echoed["path"] == path and echoed["query"] == "model=echo"

    def test_cors_preflight_echoes_requested_headers(self, echo_gateway):
        response = httpx.options(
            echo_gateway.base_url + "/v1/chat/completions",
            headers={"origin": "http://app.example", "access-control-request-method": "POST",
                     "access-control-request-headers": "authorization, x-custom"},
        )  # fmt: skip
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == "http://app.example"
        assert response.headers["access-control-allow-headers"] == "authorization, x-custom"
        odd = httpx.options(
            echo_gateway.base_url + "/v1/chat/completions",
            headers={"origin": "http://app.example", "access-control-request-headers": "x-ok, bad header, b@d"},
        )
        assert odd.status_code == 204 and odd.headers["access-control-allow-headers"] == "x-ok"
        default = httpx.options(echo_gateway.base_url + "/v1/chat/completions", headers={"origin": "http://a.b"})
        assert (
            default.headers["access-control-allow-headers"] == "Content-Type, Authorization, Accept, X-Requested-With"
        )
        assert response.headers["access-control-max-age"] == "86400"
        # the gateway's own errors can be read by a browser client too
        missing = httpx.post(
            echo_gateway.base_url + "/v1/chat/completions",
            json={"model": "nope", "messages": []},
            headers={"origin": "http://app.example"},
        )
        assert missing.status_code == 404 and missing.headers["access-control-allow-origin"] == "http://app.example"
        assert (
            "access-control-allow-origin"
            not in httpx.post(
                echo_gateway.base_url + "/v1/chat/completions", json={"model": "nope", "messages": []}
            ).headers
        )

    def test_capture_is_bounded_compressed_and_redacted(self, echo_gateway):
        body = {"model": "echo", "input": "x" * 40000}
        httpx.post(
            echo_gateway.base_url + "/v1/embeddings",
            json=body,
            headers={"authorization": "Bearer sk-client-secret"},
            timeout=30,
        )
        [row] = wait_rows(echo_gateway, 1)
        capture = json.loads(zlib.decompress(row["capture"]))
        request = capture["request"]
        assert ["authorization", "[redacted]"] in request["headers"]
        assert request["body"]["truncated"] and request["body"]["size"] == row["request_bytes"]
        assert len(request["body"]["text"]) <= 16 * 1024
        assert capture["response"]["body"]["size"] == row["response_bytes"]
        assert b"sk-client-secret" not in zlib.decompress(row["capture"])


class TestTimeouts:
    def test_model_response_header_timeout_is_504(self, gateway_factory):
        gateway = gateway_factory(f"""
            models:
              slowhead:
                cmd: {fake_cmd()}
                timeouts: {{responseHeader: 1}}
        """)
        body = {"model": "slowhead", "messages": [], "x_fake": {"header_delay": 3}}
        response = httpx.post(gateway.base_url + "/v1/chat/completions", json=body, timeout=30)
        assert response.status_code == 504 and "within 1s" in response.json()["error"]["message"]

    def test_global_header_timeout_setting(self, gateway_factory):
        gateway = gateway_factory(
            f"models:\n  m:\n    cmd: {fake_cmd()}\n", env={"SWITCHYARD_UPSTREAM_HEADER_TIMEOUT": "1"}
        )
        body = {"model": "m", "messages": [], "x_fake": {"header_delay": 2.5}}
        assert httpx.post(gateway.base_url + "/v1/chat/completions", json=body, timeout=30).status_code == 504
        body["x_fake"] = {"header_delay": 0.2}
        assert httpx.post(gateway.base_url + "/v1/chat/completions", json=body, timeout=30).status_code == 200

    def test_body_timeout_ends_a_stream_that_runs_too_long(self, gateway_factory):
        gateway = gateway_factory(f"""
            models:
              slowbody:
                cmd: {fake_cmd()}
                timeouts: {{body: 1}}
              nolimit:
                cmd: {fake_cmd()}
            groups:
              all: {{swap: false, members: [slowbody, nolimit]}}
        """)
        body = {"messages": [], "stream": True, "x_fake": {"chunks": 6, "delay": 0.4}}  # 2.4 s of events
        started = time.monotonic()
        with httpx.stream(
            "POST", gateway.base_url + "/v1/chat/completions", json={"model": "slowbody", **body}, timeout=30
        ) as response:
            assert response.status_code == 200
            events = [line for line in response.iter_lines() if line.startswith("data: ")]
        assert 0.9 < time.monotonic() - started < 2.2
        assert "timeouts.body" not in events[0] and "timeouts.body" not in events[-2]
        assert "server_error" in events[-1]  # the stream ends with an error event, not silently
        untimed = httpx.post(gateway.base_url + "/v1/chat/completions", json={"model": "nolimit", **body}, timeout=30)
        assert untimed.status_code == 200 and untimed.text.rstrip().endswith("data: [DONE]")
        rows = {r["model"]: r for r in gateway.requests()}
        assert "within 1s (timeouts.body)" in rows["slowbody"]["error"] and rows["nolimit"]["error"] is None


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory):
    """The fake OpenAI server on HTTPS with a freshly made self-signed certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(FAKE_UPSTREAM), "--port", str(port),
                             "--tls-cert", str(folder / "cert.pem"), "--tls-key", str(folder / "key.pem")])  # fmt: skip

    def up() -> bool:
        try:
            return httpx.get(f"https://127.0.0.1:{port}/health", verify=False, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, message="TLS upstream")
    yield f"https://127.0.0.1:{port}"
    proc.terminate()
    proc.wait()


class TestDirectUpstreams:
    @pytest.fixture
    def gateway(self, gateway_factory, tls_upstream):
        return gateway_factory(f"""
            models:
              cloud:
                upstream: {{url: {tls_upstream}, apiKey: upstream-secret, insecure: true}}
                useModelName: gpt-4o-mini
              claude:
                upstream: {{url: {tls_upstream}/v1, passAuth: true, insecure: true}}
              mystery:
                upstream: {{url: {tls_upstream}, insecure: true}}
              strict:
                upstream: {{url: {tls_upstream}}}
        """)

    def test_remote_model_gets_its_key_and_name_and_is_priced(self, gateway):
        echoed = httpx.post(
            gateway.base_url + "/v1/embeddings", json={"model": "cloud", "input": "x"},
            headers={"authorization": "Bearer client-key"}, timeout=30,
        ).json()  # fmt: skip
        assert echoed["headers"]["authorization"] == "Bearer upstream-secret"
        assert echoed["json"]["model"] == "gpt-4o-mini"
        client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="x", max_retries=0)
        reply = client.chat.completions.create(model="cloud", messages=[{"role": "user", "content": "x"}])
        assert reply.usage.completion_tokens == 5
        client.chat.completions.create(model="mystery", messages=[{"role": "user", "content": "x"}])
        rows = wait_rows(gateway, 3)
        assert rows[1]["upstream_model"] == "cloud" and rows[1]["cost_known"] and rows[1]["cost_usd"] > 0
        assert rows[2]["cost_known"] == 0 and rows[2]["cost_usd"] == 0  # not in the pricing catalog

    def test_auth_passthrough_forwards_the_clients_own_credentials(self, gateway):
        echoed = httpx.post(
            gateway.base_url + "/v1/messages", json={"model": "claude", "max_tokens": 5, "messages": []},
            headers={"x-api-key": "sk-ant-subscription", "authorization": "Bearer oauth-token",
                     "anthropic-version": "2023-06-01"}, timeout=30,
        ).json()  # fmt: skip
        assert echoed["path"] == "/v1/messages"  # base URL ending in /v1 is not doubled
        assert echoed["headers"]["x-api-key"] == "sk-ant-subscription"
        assert echoed["headers"]["authorization"] == "Bearer oauth-token"
        assert echoed["headers"]["anthropic-version"] == "2023-06-01"

    def test_certificate_is_verified_unless_insecure(self, gateway):
        response = httpx.post(
            gateway.base_url + "/v1/chat/completions", json={"model": "strict", "messages": []}, timeout=30
        )
        assert response.status_code == 502 and "CERTIFICATE_VERIFY_FAILED" in response.json()["error"]["message"]


def test_pricing_catalog_refresh_prices_a_model_it_did_not_know(gateway_factory, tls_upstream, tmp_path):
    from tests.servers import ADMIN_HEADERS

    gateway = gateway_factory(f"""
        models:
          mystery:
            upstream: {{url: {tls_upstream}, insecure: true}}
    """)
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="x", max_retries=0)
    client.chat.completions.create(model="mystery", messages=[{"role": "user", "content": "x"}])
    catalog = {"acme": {"id": "acme", "models": {"mystery": {"id": "mystery", "cost": {"input": 2.0, "output": 10.0}}}}}
    (tmp_path / "api.json").write_text(json.dumps(catalog))
    refreshed = httpx.post(gateway.base_url + "/api/pricing/refresh", json={"source": str(tmp_path / "api.json")},
                           headers=ADMIN_HEADERS, timeout=30)  # fmt: skip
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["models"] == 1 and refreshed.json()["source"].endswith("api.json")
    client.chat.completions.create(model="mystery", messages=[{"role": "user", "content": "x"}])
    first, second = wait_rows(gateway, 2)
    assert (first["cost_known"], first["cost_usd"]) == (0, 0)
    # the fake upstream reports 7 prompt and 5 completion tokens: 7 × $2/M + 5 × $10/M
    assert second["cost_known"] == 1 and second["cost_usd"] == pytest.approx((7 * 2.0 + 5 * 10.0) / 1e6)
    # the refreshed catalog is kept for the next start
    assert (gateway.workdir / "data" / "pricing.json").is_file()
    bad = httpx.post(gateway.base_url + "/api/pricing/refresh", json={"source": str(tmp_path / "missing.json")},
                     headers=ADMIN_HEADERS, timeout=30)  # fmt: skip
    assert bad.status_code == 400 and "cannot read" in bad.text
