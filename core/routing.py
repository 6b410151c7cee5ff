"""Resolve a requested model name to where the request goes, and rewrite its body.

Order, as llama-swap: a local model id, then an alias (including setParamsByID
keys), then a fully qualified `peer/model`, then an unqualified id served by
exactly one peer. A local model may instead name a remote API (`upstream:`,
a Switchyard extension); routing policies can also send a request to a remote
API directly (:func:`direct_target`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from core.config.schema import Config, Filters, ModelConfig, PeerConfig, Timeouts


@dataclass(frozen=True, slots=True)
class Target:
    kind: Literal["local", "peer", "direct"]
    requested: str
    model_id: str  # local model id, or the remote side's own model id
    model: ModelConfig | None = None
    peer: PeerConfig | None = None
    base_url: str = ""  # remote base URL (peer proxy or direct upstream)
    api_key: str = ""  # injected for the remote side, when set
    pass_auth: bool = False  # forward the client's own Authorization / x-api-key
    insecure: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    remote_model: str = ""  # model name the remote expects (direct routes)

    @property
    def needs_process(self) -> bool:
        return self.kind == "local"

    @property
    def upstream_model_name(self) -> str:
        """The `model` value the upstream receives."""
        if self.remote_model:
            return self.remote_model
        if self.model is not None:
            return self.model.use_model_name or self.requested
        return self.model_id

    @property
    def filters(self) -> Filters:
        if self.model is not None:
            return self.model.filters
        if self.peer is not None:
            return self.peer.filters
        return Filters()

    @property
    def display_id(self) -> str:
        if self.kind == "peer":
            return f"{self.peer.id}/{self.model_id}"  # type: ignore[union-attr]
        return self.model_id


def resolve_target(config: Config, name: str) -> Target | None:
    real = config.real_model_id(name)
    if real is not None:
        model = config.models[real]
        if model.upstream is not None:
            u = model.upstream
            return Target(
                "direct", name, real, model=model, base_url=u.url, api_key=u.api_key,
                pass_auth=u.pass_auth, insecure=u.insecure, timeouts=model.timeouts,
            )  # fmt: skip
        return Target("local", name, real, model=model, timeouts=model.timeouts)
    peer_model = config.resolve_peer_model(name)
    if peer_model is not None:
        peer_id, model_id = peer_model
        peer = config.peers[peer_id]
        return Target(
            "peer", name, model_id, peer=peer, base_url=peer.proxy, api_key=peer.api_key,
            pass_auth=peer.pass_auth, insecure=peer.insecure, timeouts=peer.timeouts,
        )  # fmt: skip
    return None


def direct_target(
    requested: str, base_url: str, *, model: str = "", api_key: str = "", pass_auth: bool = False,
    insecure: bool = False,
) -> Target:  # fmt: skip
    """A request a routing policy sends straight to a remote API."""
    return Target(
        "direct", requested, model or requested, base_url=base_url.rstrip("/"), api_key=api_key,
        pass_auth=pass_auth, insecure=insecure, timeouts=Timeouts(response_header=0), remote_model=model,
    )  # fmt: skip


def path_for_base(base_url: str, path: str) -> str:
    """The path to append to `base_url`, not doubling `/v1` when the base already ends with it (…/api/v1 + /v1/chat)."""
    if base_url.endswith("/v1") and (path.startswith("/v1/") or path == "/v1"):
        return path[3:]
    return path


def needs_rewrite(target: Target) -> bool:
    """Whether the JSON body must change on its way upstream."""
    f = target.filters
    if f.strip_params or f.set_params or target.requested in f.set_params_by_id:
        return True
    return target.upstream_model_name != target.requested


def rewrite_body(body: dict[str, Any], target: Target) -> dict[str, Any]:
    """Apply useModelName / the remote model name and the filters (stripParams, setParams, setParamsByID).

    `model` itself is never stripped or overridden by a filter.
    """
    f = target.filters
    for key in f.strip_params:
        body.pop(key, None)
    for key, value in f.set_params.items():
        body[key] = value
    for key, value in f.set_params_by_id.get(target.requested, {}).items():
        body[key] = value
    if "model" in body:
        body["model"] = target.upstream_model_name
    return body
