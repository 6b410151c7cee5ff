"""``/api/tags``, ``/api/show``, ``/api/ps`` and ``/api/version`` bodies from a neutral model description."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from core.ollama.response import rfc3339

if TYPE_CHECKING:
    from core.library import LibraryModel

#: The Ollama version Switchyard answers `/api/version` with: recent enough that clients enable tools,
#: structured outputs, `think` and `/api/embed`.
OLLAMA_COMPAT_VERSION = "0.12.6"

#: What Ollama reports as `expires_at` for a model kept loaded forever: now + the largest Go duration.
_FOREVER = timedelta(microseconds=(2**63 - 1) // 1000)

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class OllamaModel:
    """What the listing endpoints say about one model, independent of where the facts came from.

    `context_length` is the context the model runs (or will run) with, e.g. llama-server's ``-c``; it is
    what ``/api/show`` and ``/api/ps`` report. `trained_context_length` is the file's maximum.
    """

    name: str
    size: int = 0
    modified_at: float | None = None  # epoch seconds
    format: str = "gguf"
    family: str = ""  # the architecture: "llama", "qwen2", ...
    parameter_size: str = ""  # "7.6B"; derived from parameter_count when empty
    parameter_count: int | None = None
    quantization: str = ""  # "Q4_K_M"
    context_length: int | None = None
    trained_context_length: int | None = None
    block_count: int | None = None
    embedding_length: int | None = None
    capabilities: tuple[str, ...] = ("completion",)
    digest: str = ""  # derived from name, size and mtime when empty
    expires_at: float | None = None  # /api/ps: epoch seconds of the planned unload; None = kept loaded
    size_vram: int | None = None
    template: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)  # /api/show "parameters", e.g. {"stop": [...]}
    model_info: Mapping[str, Any] = field(default_factory=dict)  # extra keys for /api/show "model_info"

    @classmethod
    def from_library(
        cls,
        entry: LibraryModel,
        *,
        name: str | None = None,
        context_length: int | None = None,
        capabilities: Sequence[str] | None = None,
        **overrides: Any,
    ) -> OllamaModel:
        """Describe a scanned model file. `context_length` is the effective one (the preset's or the
        config's ``-c``); without it the trained context is reported."""
        if capabilities is None:
            caps = ["embedding"] if entry.is_embedding else ["completion"]
            if entry.mmproj and not entry.is_embedding:
                caps.append("vision")
            if entry.supports_tools:
                caps.append("tools")
            capabilities = caps
        values: dict[str, Any] = {
            "name": name or entry.id,
            "size": entry.size,
            "modified_at": entry.modified_at,
            "format": entry.format,
            "family": entry.architecture,
            "parameter_size": entry.size_label,
            "parameter_count": entry.parameter_count,
            "quantization": entry.quantization,
            "context_length": context_length or entry.context_length,
            "trained_context_length": entry.context_length,
            "block_count": entry.block_count,
            "embedding_length": entry.embedding_length,
            "capabilities": tuple(capabilities),
            "template": entry.chat_template or "",
        }
        values.update(overrides)
        return cls(**values)

    @property
    def model_digest(self) -> str:
        if self.digest:
            return self.digest
        seed = f"{self.name}\0{self.size}\0{self.modified_at or 0}".encode()
        return hashlib.sha256(seed).hexdigest()

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": self.format,
            "family": self.family,
            "families": [self.family] if self.family else None,
            "parameter_size": self.parameter_size or format_parameter_count(self.parameter_count),
            "quantization_level": self.quantization,
        }


def format_parameter_count(count: int | None) -> str:
    """12_345_678_901 → "12.3B", 494_032_768 → "494.03M" (Ollama's style)."""
    if not count:
        return ""
    if count >= 1_000_000_000_000:
        return f"{count / 1e12:.1f}T"
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B"
    if count >= 1_000_000:
        return f"{count / 1e6:.2f}M"
    if count >= 1_000:
        return f"{count / 1e3:.2f}K"
    return str(count)


def _listing_entry(model: OllamaModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "model": model.name,
        "modified_at": rfc3339(model.modified_at or 0),
        "size": model.size,
        "digest": model.model_digest,
        "details": model.details(),
    }


def tags_response(models: Iterable[OllamaModel]) -> dict[str, Any]:
    """``GET /api/tags``: every model the client may ask for, sorted by name."""
    return {"models": [_listing_entry(m) for m in sorted(models, key=lambda m: m.name)]}


def ps_response(models: Iterable[OllamaModel], *, now: float | None = None) -> dict[str, Any]:
    """``GET /api/ps``: the loaded models, with the context they run with and when they will be unloaded."""
    now = time.time() if now is None else now
    entries = []
    for model in sorted(models, key=lambda m: m.name):
        entry = _listing_entry(model)
        del entry["modified_at"]
        if model.expires_at is None:
            entry["expires_at"] = rfc3339(datetime.fromtimestamp(now, UTC) + _FOREVER)
        else:
            entry["expires_at"] = rfc3339(model.expires_at)
        entry["size_vram"] = model.size if model.size_vram is None else model.size_vram
        entry["context_length"] = model.context_length or 0
        entries.append(entry)
    return {"models": entries}


def show_response(model: OllamaModel) -> dict[str, Any]:
    """``POST /api/show``. ``model_info["<arch>.context_length"]`` and ``parameters``' ``num_ctx`` are the
    effective context (clients size their prompts by it); the file's maximum is under
    ``switchyard.trained_context_length``."""
    info: dict[str, Any] = {}
    arch = model.family
    if arch:
        info["general.architecture"] = arch
    if model.parameter_count:
        info["general.parameter_count"] = model.parameter_count
    if arch and model.context_length:
        info[f"{arch}.context_length"] = model.context_length
    if arch and model.block_count:
        info[f"{arch}.block_count"] = model.block_count
    if arch and model.embedding_length:
        info[f"{arch}.embedding_length"] = model.embedding_length
    if model.trained_context_length:
        info["switchyard.trained_context_length"] = model.trained_context_length
    info.update(model.model_info)
    parameters = dict(model.parameters)
    if model.context_length:
        parameters.setdefault("num_ctx", model.context_length)
    parameter_text = _parameters_text(parameters)
    modelfile = f"# Modelfile generated by Switchyard\nFROM {model.name}\n"
    if parameter_text:
        modelfile += "".join(f"PARAMETER {line}\n" for line in parameter_text.splitlines())
    return {
        "license": "",
        "modelfile": modelfile,
        "parameters": parameter_text,
        "template": model.template or "{{ .Prompt }}",
        "details": model.details(),
        "model_info": info,
        "capabilities": list(model.capabilities),
        "modified_at": rfc3339(model.modified_at or 0),
    }


def _parameters_text(parameters: Mapping[str, Any]) -> str:
    lines = []
    for key, value in parameters.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            rendered = _encode(item).decode() if isinstance(item, str) else str(item)
            lines.append(f"{key:<30} {rendered}")
    return "\n".join(lines)


def version_response(version: str = OLLAMA_COMPAT_VERSION) -> dict[str, str]:
    """``GET /api/version``."""
    return {"version": version}
