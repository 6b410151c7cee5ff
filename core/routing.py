"""Resolve a requested model name to where the request goes, and rewrite its body.

Order, as llama-swap: a local model id, then an alias (including setParamsByID
keys), then a fully qualified `peer/model`, then an unqualified id served by
exactly one peer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from core.config.schema import Config, Filters, ModelConfig, PeerConfig


@dataclass(frozen=True, slots=True)
class Target:
    kind: Literal["local", "peer"]
    requested: str
    model_id: str  # local model id, or the peer's own model id
    model: ModelConfig | None = None
    peer: PeerConfig | None = None

    @property
    def upstream_model_name(self) -> str:
        """The `model` value the upstream receives."""
        if self.model is not None:
            return self.model.use_model_name or self.requested
        return self.model_id

    @property
    def filters(self) -> Filters:
        if self.model is not None:
            return self.model.filters
        assert self.peer is not None
        return self.peer.filters

    @property
    def display_id(self) -> str:
        return self.model_id if self.kind == "local" else f"{self.peer.id}/{self.model_id}"  # type: ignore[union-attr]


def resolve_target(config: Config, name: str) -> Target | None:
    real = config.real_model_id(name)
    if real is not None:
        return Target("local", name, real, model=config.models[real])
    peer_model = config.resolve_peer_model(name)
    if peer_model is not None:
        peer_id, model_id = peer_model
        return Target("peer", name, model_id, peer=config.peers[peer_id])
    return None


def needs_rewrite(target: Target) -> bool:
    """Whether the JSON body must change on its way upstream."""
    f = target.filters
    if f.strip_params or f.set_params or target.requested in f.set_params_by_id:
        return True
    return target.upstream_model_name != target.requested


def rewrite_body(body: dict[str, Any], target: Target) -> dict[str, Any]:
    """Apply useModelName / peer model name and the filters (stripParams, setParams, setParamsByID).

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
