"""`/metrics` on the real gateway: what it counts, that promtool accepts it, and the protect setting."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import fake_cmd
from tests.servers import ADMIN_HEADERS, free_port, wait_until


@pytest.fixture
def gateway(gateway_factory):
    dead_peer = f"http://127.0.0.1:{free_port()}"
    return gateway_factory(f"""
        models:
          m:
            cmd: {fake_cmd()}
          idle:
            cmd: {fake_cmd()}
        groups:
          all: {{swap: false, exclusive: false, members: [m, idle]}}
        peers:
          gone:
            proxy: {dead_peer}
            models: [remote]
    """)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(all_samples, name: str, **labels: str) -> float | None:
    return all_samples.get((name, tuple(sorted(labels.items()))))


def chat(gateway, model: str, **extra) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(gateway.base_url + "/v1/chat/completions", json=body, timeout=30)


def test_metrics_count_requests_and_read_live_state(gateway):
    assert chat(gateway, "m").status_code == 200
    assert chat(gateway, "m", stream=True).status_code == 200
    assert chat(gateway, "m", x_fake={"status": 500}).status_code == 500
    assert chat(gateway, "unknown-model").status_code == 404
    wait_until(lambda: len(gateway.requests()) == 4, message="four logged requests")

    text = httpx.get(gateway.base_url + "/metrics", timeout=10)
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    found = samples(text.text)
    assert value(found, "switchyard_requests_total", model="m", status="200", key="") == 2
    assert value(found, "switchyard_requests_total", model="m", status="500", key="") == 1
    # an unknown model name sent by a client does not become a label value
    assert value(found, "switchyard_requests_total", model="", status="404", key="") == 1
    assert not any(labels and ("model", "unknown-model") in labels for _, labels in found)
    assert value(found, "switchyard_prompt_tokens_total", model="m") > 0
    assert value(found, "switchyard_completion_tokens_total", model="m") > 0
    assert value(found, "switchyard_request_duration_seconds_count", model="m") == 3
    assert value(found, "switchyard_time_to_first_token_seconds_count", model="m") >= 2
    assert value(found, "switchyard_in_flight_requests", model="m") == 0
    assert value(found, "switchyard_queued_requests", model="idle") == 0
    assert value(found, "switchyard_running_models") == 1
    assert value(found, "switchyard_model_state", model="m", state="ready") == 1
    assert value(found, "switchyard_model_state", model="idle", state="stopped") == 1
    assert value(found, "switchyard_model_load_seconds_count", model="m") == 1
    assert value(found, "switchyard_model_last_load_seconds", model="m") > 0
    assert value(found, "switchyard_model_swaps_total") == 0
    assert value(found, "switchyard_request_log_written_total") == 4
    assert value(found, "switchyard_request_log_dropped_total") == 0
    assert value(found, "switchyard_request_log_queue_depth") == 0
    assert value(found, "switchyard_upstream_up", upstream="m", kind="model") == 1
    assert value(found, "switchyard_upstream_up", upstream="gone", kind="peer") == 0
    # no GPU here: the GPU families exist but have no samples
    assert "# TYPE switchyard_gpu_memory_used_bytes gauge" in text.text


def test_metrics_output_passes_promtool(gateway):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install -y prometheus (.ci/run installs it)"
    assert chat(gateway, "m").status_code == 200
    assert chat(gateway, "unknown-model").status_code == 404
    text = httpx.get(gateway.base_url + "/metrics", timeout=10).text
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30, check=False
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert "switchyard_requests_total" in text


def test_metrics_can_be_protected_by_a_setting(gateway):
    assert httpx.get(gateway.base_url + "/metrics").status_code == 200
    patched = httpx.patch(gateway.base_url + "/api/settings", json={"protect_metrics": True}, headers=ADMIN_HEADERS)
    assert patched.status_code == 200 and patched.json()["protect_metrics"] is True
    assert httpx.get(gateway.base_url + "/metrics").status_code == 401
    assert httpx.get(gateway.base_url + "/metrics", headers=ADMIN_HEADERS).status_code == 200
    assert httpx.get(gateway.base_url + "/health").status_code == 200
