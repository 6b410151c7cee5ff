"""The OpenAI `/v1/models` listing, shaped as llama-swap shapes it."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from core.config.schema import Capabilities, Config

_RENDERED_KEYS = {"architecture", "capabilities", "supported_parameters", "context_length"}


def _render_capabilities(caps: Capabilities) -> dict[str, Any]:
    if caps.empty:
        return {}
    out: dict[str, Any] = {}
    ins, outs = list(caps.inputs), list(caps.outputs)
    arch: dict[str, Any] = {}
    if ins:
        arch["input_modalities"] = ins
    if outs:
        arch["output_modalities"] = outs
    if ins and outs:
        arch["modality"] = "+".join(ins) + "->" + "+".join(outs)
    if arch:
        out["architecture"] = arch
    flags: dict[str, Any] = {}
    if "image" in ins:
        flags["vision"] = True
    if ins and outs:
        if "audio" in ins and "text" in outs:
            flags["audio_transcriptions"] = True
        if "text" in ins and "audio" in outs:
            flags["audio_speech"] = True
        if "text" in ins and "image" in outs:
            flags["image_generation"] = True
        if "image" in ins and "image" in outs:
            flags["image_to_image"] = True
    if caps.tools:
        flags["function_calling"] = True
        out["supported_parameters"] = ["tools", "tool_choice"]
    if caps.reranker:
        flags["reranker"] = True
    if flags:
        out["capabilities"] = flags
    if caps.context > 0:
        out["context_length"] = caps.context
    return out


def _record(
    model_id: str,
    *,
    name: str,
    description: str,
    metadata: dict[str, Any],
    caps: Capabilities,
    status: str,
    internal: dict[str, Any],
    created: int,
) -> dict[str, Any]:
    record: dict[str, Any] = {"id": model_id, "object": "model", "created": created, "owned_by": "switchyard"}
    if name.strip():
        record["name"] = name.strip()
    if description.strip():
        record["description"] = description.strip()
    rendered = _render_capabilities(caps)
    record.update(rendered)
    if rendered:
        metadata = {k: v for k, v in metadata.items() if k not in _RENDERED_KEYS}
    meta_values = {**metadata, **internal}
    meta: dict[str, Any] = {}
    if meta_values:
        meta["llamaswap"] = meta_values
    if rendered.get("context_length"):
        meta["n_ctx"] = rendered["context_length"]
    if meta:
        record["meta"] = meta
    record["status"] = {"value": status}
    return record


def list_models(config: Config, running: Collection[str] = ()) -> list[dict[str, Any]]:
    """Sorted listing: local models (unlisted hidden, aliases when configured), peers, selectors."""
    created = int(time.time())
    data = []
    for model_id, model in config.models.items():
        if model.unlisted:
            continue
        status = "loaded" if model_id in running else "unloaded"
        internal: dict[str, Any] = {"type": "model"}
        if model.aliases:
            internal["aliases"] = list(model.aliases)
        common = dict(name=model.name, description=model.description, metadata=model.metadata,
                      caps=model.capabilities, status=status, created=created)  # fmt: skip
        data.append(_record(model_id, internal=internal, **common))
        if config.include_aliases_in_list:
            for alias in model.aliases:
                if alias.strip():
                    data.append(_record(alias, internal={"type": "alias", "modelID": model_id}, **common))
    for peer_id, peer in config.peers.items():
        for model_id in peer.models:
            data.append(
                _record(
                    f"{peer_id}/{model_id}",
                    name=f"{peer_id}: {model_id}",
                    description="",
                    metadata={},
                    caps=Capabilities(),
                    status="unloaded",
                    internal={"type": "peer", "peerID": peer_id},
                    created=created,
                )
            )
    for selector_id, selector in config.selectors.items():
        if selector.unlisted:
            continue
        status = "unloaded"
        for target in selector.targets:
            real = config.real_model_id(target)
            if real is not None and real in running:
                status = "loaded"
            if selector.strategy == "pin" or status == "loaded":
                break
        data.append(
            _record(
                selector_id,
                name=selector.name,
                description=selector.description,
                metadata=selector.metadata,
                caps=Capabilities(),
                status=status,
                internal={"type": "selector", "strategy": selector.strategy, "targets": list(selector.targets)},
                created=created,
            )
        )
    data.sort(key=lambda record: record["id"])
    return data


def known_model_ids(config: Config) -> list[str]:
    """Every id a client may ask for (for 'unknown model' errors): listed ids and aliases."""
    ids = {m for m, model in config.models.items() if not model.unlisted}
    for model in config.models.values():
        if not model.unlisted:
            ids.update(model.aliases)
    for peer_id, peer in config.peers.items():
        ids.update(f"{peer_id}/{m}" for m in peer.models)
    ids.update(s for s, sel in config.selectors.items() if not sel.unlisted)
    return sorted(ids)
