"""Prometheus metrics (`GET /metrics`) on a registry of the gateway's own.

Two kinds of metric:

* per request, updated by :meth:`GatewayMetrics.observe_request` from `Runtime.request_completed`:
  request counts by model, status and key, prompt and completion tokens, duration and
  time-to-first-token histograms. A handful of counter and histogram operations, nothing else.
* state, read when Prometheus scrapes (a custom collector): in-flight and queued requests per
  model, running models, model state, swaps, last load time, request-log writer depth and drops,
  upstream reachability, GPU memory, utilisation, temperature and power. Nothing updates these
  on the hot path; the scrape asks the engine, the log writer, the probe and the GPU poller.

Label values are bounded: `model` is the resolved model (an unknown model name sent by a client
becomes `""`, so clients cannot create series at will), `key` is the API key's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.admin.upstream_probe import UpstreamProbe

if TYPE_CHECKING:
    from api.runtime import Runtime

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
LOAD_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
MODEL_STATES = ("stopped", "starting", "ready", "stopping", "failed", "shutdown")


class GatewayMetrics:
    def __init__(self, runtime: Runtime):
        self.registry = CollectorRegistry(auto_describe=True)
        self.upstreams = UpstreamProbe(runtime)
        registry = self.registry
        self.requests = Counter(
            "switchyard_requests",
            "Proxied requests by model, HTTP status and API key",
            ["model", "status", "key"],
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "switchyard_prompt_tokens", "Prompt (input) tokens by model", ["model"], registry=registry
        )
        self.completion_tokens = Counter(
            "switchyard_completion_tokens", "Completion (output) tokens by model", ["model"], registry=registry
        )
        self.request_duration = Histogram(
            "switchyard_request_duration_seconds",
            "Time from request to the end of the response, by model",
            ["model"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "switchyard_time_to_first_token_seconds",
            "Time to the first generated token, by model",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.credential_injections = Counter(
            "switchyard_credential_injections",
            "Upstream credentials injected by routing policies, by credential",
            ["credential"],
            registry=registry,
        )
        self.model_load = Histogram(
            "switchyard_model_load_seconds",
            "Time from starting a model server to healthy, by model",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=registry,
        )
        registry.register(_StateCollector(runtime, self.upstreams))

    def observe_request(self, record: dict[str, Any]) -> None:
        """Count one finished request (the record the gateway hands to `Runtime.request_completed`)."""
        model = record.get("upstream_model") or ""
        key = record.get("api_key_name") or record.get("api_key_id") or ""
        self.requests.labels(model, str(record.get("status_code", 0)), key).inc()
        prompt = record.get("prompt_tokens")
        if prompt:
            self.prompt_tokens.labels(model).inc(prompt)
        completion = record.get("completion_tokens")
        if completion:
            self.completion_tokens.labels(model).inc(completion)
        duration = record.get("duration_ms")
        if duration is not None:
            self.request_duration.labels(model).observe(duration / 1000)
        ttft = record.get("ttft_ms")
        if ttft is not None:
            self.time_to_first_token.labels(model).observe(ttft / 1000)

    def observe_model_event(self, model_id: str, state: str, data: dict[str, Any]) -> None:
        """A model state change from the swap engine: a `ready` one records its load time."""
        load_seconds = data.get("load_seconds")
        if state == "ready" and load_seconds is not None:
            self.model_load.labels(model_id).observe(load_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    """Gauges read at scrape time from the engine, the log writer, the upstream probe and the GPU poller."""

    def __init__(self, runtime: Runtime, upstreams: UpstreamProbe):
        self._runtime = runtime
        self._upstreams = upstreams

    def describe(self) -> list[Metric]:
        return []  # names are fixed but the collector reads live state: no describe-time scrape

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime
        in_flight = GaugeMetricFamily(
            "switchyard_in_flight_requests", "Requests being served, by model", labels=["model"]
        )
        queued = GaugeMetricFamily(
            "switchyard_queued_requests", "Requests waiting for their model, by model", labels=["model"]
        )
        state = GaugeMetricFamily(
            "switchyard_model_state", "1 for the state each local model is in", labels=["model", "state"]
        )
        last_load = GaugeMetricFamily(
            "switchyard_model_last_load_seconds", "Duration of the last load, by model", labels=["model"]
        )
        running = 0
        for status in runtime.engine.status():
            model = status["model"]
            in_flight.add_metric([model], status["in_flight"])
            queued.add_metric([model], status["queued"])
            for name in MODEL_STATES:
                state.add_metric([model, name], 1.0 if status["state"] == name else 0.0)
            if status["last_load_seconds"] is not None:
                last_load.add_metric([model], status["last_load_seconds"])
            running += status["state"] in ("ready", "starting")
        yield in_flight
        yield queued
        yield state
        yield last_load
        yield GaugeMetricFamily("switchyard_running_models", "Local model servers starting or ready", value=running)
        yield CounterMetricFamily(
            "switchyard_model_swaps", "Swaps that stopped models to start another", value=runtime.engine.swap_count
        )

        writer = runtime.request_log
        yield GaugeMetricFamily(
            "switchyard_request_log_queue_depth", "Request-log rows waiting to be written", value=writer.depth
        )
        yield CounterMetricFamily("switchyard_request_log_written", "Request-log rows written", value=writer.written)
        yield CounterMetricFamily(
            "switchyard_request_log_dropped",
            "Request-log rows dropped because the queue was full",
            value=writer.dropped,
        )
        yield CounterMetricFamily(
            "switchyard_request_log_failed", "Request-log rows the database refused", value=writer.failed
        )

        up = GaugeMetricFamily(
            "switchyard_upstream_up",
            "1 when a running model server or a peer answered its last probe",
            labels=["upstream", "kind"],
        )
        for result in self._upstreams.latest():
            up.add_metric([result.name, result.kind], 1.0 if result.reachable else 0.0)
        yield up

        yield from _gpu_metrics(runtime)


def _gpu_metrics(runtime: Runtime) -> Iterator[Metric]:
    labels = ["gpu", "vendor", "name"]
    used = GaugeMetricFamily("switchyard_gpu_memory_used_bytes", "GPU memory in use", labels=labels)
    total = GaugeMetricFamily("switchyard_gpu_memory_total_bytes", "GPU memory in total", labels=labels)
    utilisation = GaugeMetricFamily("switchyard_gpu_utilization_ratio", "GPU busy fraction (0–1)", labels=labels)
    temperature = GaugeMetricFamily("switchyard_gpu_temperature_celsius", "GPU temperature", labels=labels)
    power = GaugeMetricFamily("switchyard_gpu_power_watts", "GPU power draw", labels=labels)
    for sample in runtime.gpu.latest():
        values = [str(sample.index), sample.vendor, sample.name]
        used.add_metric(values, sample.memory_used_bytes)
        total.add_metric(values, sample.memory_total_bytes)
        if sample.utilization_percent is not None:
            utilisation.add_metric(values, sample.utilization_percent / 100)
        if sample.temperature_c is not None:
            temperature.add_metric(values, sample.temperature_c)
        if sample.power_watts is not None:
            power.add_metric(values, sample.power_watts)
    yield from (used, total, utilisation, temperature, power)


@get(
    "/metrics",
    tags=["system"],
    summary="Prometheus metrics (open unless the protect_metrics setting is on)",
    media_type=CONTENT_TYPE_LATEST,
)
async def metrics(request: Request) -> Response[bytes]:
    runtime: Runtime = request.app.state.runtime
    await runtime.metrics.upstreams.check()
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
