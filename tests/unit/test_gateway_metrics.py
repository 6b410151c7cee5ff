"""GatewayMetrics with a GPU: the runtime's poller callback publishes `gpu.sample`, the scrape shows the gauges.

The integration tests run on machines without a GPU; here a fake reader stands in for NVML so the
GPU families get samples, and promtool checks that output too.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from api.runtime import Runtime
from api.settings import Settings
from core.config import load_config_text
from core.gpu import GpuPoller, GpuSample


class FakeNvidia:
    name = "fake-nvml"

    def read(self) -> list[GpuSample]:
        return [
            GpuSample(index=0, name="NVIDIA H200", vendor="nvidia", memory_used_bytes=30 * 2**30,
                      memory_total_bytes=141 * 2**30, utilization_percent=37.0, temperature_c=41.0, power_watts=120.5),
            GpuSample(index=1, name="NVIDIA H200", vendor="nvidia", memory_used_bytes=0,
                      memory_total_bytes=141 * 2**30),
        ]  # fmt: skip

    def close(self) -> None:
        pass


def runtime_with_fake_gpu(tmp_path: Path) -> Runtime:
    settings = Settings(config_path=tmp_path / "config.yaml", database_url=f"sqlite+aiosqlite:///{tmp_path / 'db'}")
    runtime = Runtime(settings, load_config_text("models:\n  m:\n    cmd: run --port ${PORT}\n"))
    runtime.gpu = GpuPoller([FakeNvidia()], on_sample=runtime._gpu_sampled)  # the wiring under test
    return runtime


async def test_gpu_samples_become_events_and_gauges(tmp_path):
    runtime = runtime_with_fake_gpu(tmp_path)
    events = runtime.events.subscribe()
    await runtime.gpu.poll_once()
    event = events.get_nowait()
    assert event.type == "gpu.sample"
    assert [g["index"] for g in event.data["gpus"]] == [0, 1]
    assert event.data["gpus"][0]["memory_total_bytes"] == 141 * 2**30

    text = runtime.metrics.render().decode()
    found = {(s.name, s.labels.get("gpu")): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert found[("switchyard_gpu_memory_used_bytes", "0")] == 30 * 2**30
    assert found[("switchyard_gpu_memory_total_bytes", "1")] == 141 * 2**30
    assert found[("switchyard_gpu_utilization_ratio", "0")] == 0.37
    assert found[("switchyard_gpu_temperature_celsius", "0")] == 41.0
    assert found[("switchyard_gpu_power_watts", "0")] == 120.5
    assert ("switchyard_gpu_power_watts", "1") not in found  # not reported by the driver: no sample, not 0
    await runtime.alchemy.get_engine().dispose()


async def test_metrics_with_gpus_pass_promtool(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install -y prometheus (.ci/run installs it)"
    runtime = runtime_with_fake_gpu(tmp_path)
    await runtime.gpu.poll_once()
    runtime.metrics.observe_request({"upstream_model": "m", "status_code": 200, "duration_ms": 12.5, "ttft_ms": 3.0,
                                     "prompt_tokens": 5, "completion_tokens": 7, "api_key_name": "ci"})  # fmt: skip
    runtime.metrics.credential_injections.labels(credential="openai").inc()
    checked = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=runtime.metrics.render(), capture_output=True,
        timeout=30, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    await runtime.alchemy.get_engine().dispose()
