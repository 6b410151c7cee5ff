"""UpstreamProbe: can the gateway reach its running model servers and its peers right now?

A probe is one GET with a short timeout: a running model's health endpoint (its `checkEndpoint`,
`/health` by default) and a peer's `/v1/models` (with its API key). Any HTTP answer counts as
reachable, whatever the status: the question is whether the upstream is there, not whether it
likes the probe. Results are cached for `max_age` seconds so `/api/system` and Prometheus scrapes
arriving together cost one round of probes, and concurrent callers share the probe in flight.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import httpx

if TYPE_CHECKING:
    from api.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Reachability:
    name: str  # model id or peer id
    kind: Literal["model", "peer"]
    url: str
    reachable: bool
    status_code: int | None
    latency_ms: float | None
    error: str | None
    checked_at: float


class UpstreamProbe:
    def __init__(self, runtime: Runtime, *, max_age: float = 10.0, timeout: float = 2.0):
        self._runtime = runtime
        self.max_age = max_age
        self.timeout = timeout
        self._latest: list[Reachability] = []
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    def latest(self) -> list[Reachability]:
        """The last results without probing (what Prometheus collectors read)."""
        return list(self._latest)

    async def check(self, max_age: float | None = None) -> list[Reachability]:
        """Fresh results: probes again when the cached ones are older than `max_age` seconds."""
        limit = self.max_age if max_age is None else max_age
        async with self._lock:
            if time.monotonic() - self._checked_at < limit and self._checked_at:
                return list(self._latest)
            self._latest = await self._probe_all()
            self._checked_at = time.monotonic()
            return list(self._latest)

    async def _probe_all(self) -> list[Reachability]:
        runtime = self._runtime
        probes = []
        for status in runtime.engine.status():
            if status["state"] != "ready":
                continue
            model = runtime.config.models.get(status["model"])
            if model is None:
                continue
            endpoint = model.check_endpoint if model.check_endpoint not in ("", "none") else "/health"
            probes.append(self._probe(model.id, "model", model.proxy + endpoint, runtime.http, {}))
        for peer in runtime.config.peers.values():
            headers = {"authorization": f"Bearer {peer.api_key}", "x-api-key": peer.api_key} if peer.api_key else {}
            url = peer.proxy.rstrip("/") + "/v1/models"
            probes.append(self._probe(peer.id, "peer", url, runtime.peer_client(peer), headers))
        return list(await asyncio.gather(*probes))

    async def _probe(
        self, name: str, kind: Literal["model", "peer"], url: str, client: httpx.AsyncClient, headers: dict[str, str]
    ) -> Reachability:
        started = time.perf_counter()
        try:
            response = await client.get(url, headers=headers, timeout=httpx.Timeout(self.timeout))
        except httpx.HTTPError as exc:
            return Reachability(name, kind, url, False, None, None, f"{type(exc).__name__}: {exc}", time.time())
        latency = (time.perf_counter() - started) * 1000
        return Reachability(name, kind, url, True, response.status_code, round(latency, 2), None, time.time())
