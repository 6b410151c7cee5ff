"""Library files → model config entries: how a GGUF file on disk becomes a model clients can ask for.

A file found by :class:`core.library.ModelLibrary` under ``library.paths`` that no hand-written ``models:``
entry serves becomes a *generated* model:

* its id is the library id: the file name without ``.gguf`` (and without the ``-00001-of-00003`` part
  suffix), with the parent folder prepended when two folders hold the same name. Clients ask for exactly
  that name (Ollama clients may add ``:latest``);
* its ``cmd`` is :func:`core.presets.preset_to_cmd` for ``library.llamaServer`` with the model's preset
  (``--embeddings`` when the file is an embedding model and the preset does not say otherwise, the vision
  projector found next to it), on a port assigned after the config's own ``${PORT}`` models;
* its ``ttl`` is ``library.idleMinutes`` (a preset's idle timeout applies live, through the swap engine's
  serving controls, so changing it needs no restart).

Config entries always win: a file whose library id is a config model id or alias, or whose path appears in a
config model's ``cmd``, is served by that entry (reported as ``served_by``), never generated twice.
Safetensors folders and files whose metadata could not be read are listed by the library but not generated.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from core.config.schema import Capabilities, Config, LibraryConfig, ModelConfig
from core.library import LibraryModel
from core.presets import DEFAULT_HOST, ModelPreset, preset_to_cmd

_CTX_FLAGS = ("-c", "--ctx-size")


@dataclass(frozen=True, slots=True)
class GeneratedModels:
    """The result of :func:`generate_library_models`."""

    models: dict[str, ModelConfig] = field(default_factory=dict)
    #: library id → port its server listens on (pass back in to keep ports stable across rescans)
    ports: dict[str, int] = field(default_factory=dict)
    #: library id → the config model that serves the file instead
    served_by: dict[str, str] = field(default_factory=dict)
    #: library id → why it is not served (not a GGUF, unreadable metadata, missing parts)
    skipped: dict[str, str] = field(default_factory=dict)
    #: library id → the launch settings its command was built from
    launch: dict[str, ModelPreset] = field(default_factory=dict)


def generate_library_models(
    entries: Iterable[LibraryModel],
    presets: Mapping[str, ModelPreset],
    config: Config,
    *,
    ports: Mapping[str, int] | None = None,
    launch: Mapping[str, ModelPreset] | None = None,
) -> GeneratedModels:
    """Config entries for the library models no hand-written entry serves.

    `ports` are earlier assignments to keep (a rescan must not move a running model to another port).
    `launch` overrides the preset a model's command is built from: the caller keeps the previous launch
    settings of a running model whose preset changed, until it is restarted.
    """
    library = config.library or LibraryConfig()
    out = GeneratedModels()
    candidates: list[LibraryModel] = []
    for entry in entries:
        owner = config_model_for(entry, config)
        if owner is not None:
            out.served_by[entry.id] = owner
        elif entry.format != "gguf":
            out.skipped[entry.id] = "not a GGUF file (llama-server serves GGUF only)"
        elif entry.problem:
            out.skipped[entry.id] = entry.problem
        else:
            candidates.append(entry)
    assigned = assign_ports([e.id for e in candidates], config, ports or {})
    out.ports.update(assigned)
    for entry in candidates:
        preset = (launch or {}).get(entry.id) or presets.get(entry.id) or ModelPreset()
        if preset.embedding is None and entry.is_embedding:
            preset = replace(preset, embedding=True)
        out.launch[entry.id] = preset
        out.models[entry.id] = library_model_config(entry, preset, library, config, assigned[entry.id])
    return out


def library_model_config(
    entry: LibraryModel, preset: ModelPreset, library: LibraryConfig, config: Config, port: int
) -> ModelConfig:
    """The config entry of one library model served on `port`."""
    cmd = preset_to_cmd(entry.path, preset, library.llama_server, alias=entry.id, mmproj=entry.mmproj)
    inputs: tuple[str, ...] = ("text", "image") if entry.mmproj and not preset.embedding else ()
    details = " ".join(part for part in (entry.architecture, entry.size_label, entry.quantization) if part)
    return ModelConfig(
        id=entry.id,
        cmd=cmd.replace("${PORT}", str(port)),
        proxy=f"http://{DEFAULT_HOST}:{port}",
        ttl=round(library.idle_minutes * 60),
        unload_timeout=config.unload_timeout,
        name=entry.name or entry.id,
        description=f"{details} (model library)" if details else "model library",
        send_loading_state=config.send_loading_state,
        capabilities=Capabilities(
            inputs=inputs, outputs=("text",) if inputs else (), tools=entry.supports_tools, context=preset.ctx_size or 0
        ),
        health_check_timeout=config.health_check_timeout,
        metadata={"library": {"path": entry.path, "quantization": entry.quantization}},
    )


def merge_library_models(config: Config, generated: GeneratedModels) -> Config:
    """`config` with the generated models added (an id the config already has keeps its config entry)."""
    models = dict(config.models)
    added = set()
    for model_id, model in generated.models.items():
        if model_id not in models and model_id not in config.aliases:
            models[model_id] = model
            added.add(model_id)
    return replace(config, models=dict(sorted(models.items())), library_models=frozenset(added))


def config_model_for(entry: LibraryModel, config: Config) -> str | None:
    """The hand-written config model that serves `entry`'s file, if any."""
    if entry.id in config.models and entry.id not in config.library_models:
        return entry.id
    if entry.id in config.aliases:
        return config.aliases[entry.id]
    if entry.id in config.selectors or config.resolve_peer_model(entry.id) is not None:
        return entry.id
    wanted = {_real(path) for path in (entry.path, *entry.files)}
    for model_id, model in config.models.items():
        if model_id in config.library_models or model.upstream is not None:
            continue
        try:
            args = model.args
        except ValueError:
            continue
        if any(_real(_value(arg)) in wanted for arg in args if arg.lower().endswith(".gguf")):
            return model_id
    return None


def assign_ports(model_ids: Iterable[str], config: Config, previous: Mapping[str, int]) -> dict[str, int]:
    """A port per library model, after those the config's models use; earlier assignments are kept when free."""
    taken = {port for port in (_port_of(m.proxy) for m in config.models.values()
                               if m.id not in config.library_models) if port}  # fmt: skip
    ids = sorted(model_ids)
    out: dict[str, int] = {}
    for model_id in ids:
        port = previous.get(model_id)
        if port and port not in taken:
            out[model_id] = port
            taken.add(port)
    next_port = config.start_port
    for model_id in ids:
        if model_id in out:
            continue
        while next_port in taken:
            next_port += 1
        out[model_id] = next_port
        taken.add(next_port)
    return out


def context_from_args(args: Iterable[str]) -> int | None:
    """The ``-c`` / ``--ctx-size`` value of a llama-server command line (0 means "the file's own")."""
    words = list(args)
    for index, word in enumerate(words):
        value: str | None = None
        if word in _CTX_FLAGS and index + 1 < len(words):
            value = words[index + 1]
        elif word.startswith("--ctx-size="):
            value = word.split("=", 1)[1]
        if value is not None and re.fullmatch(r"\d+", value):
            return int(value) or None
    return None


def configured_context(model: ModelConfig) -> int | None:
    """The context a model is started with, from its command (``-c``/``--ctx-size``), else its
    ``capabilities.context``; None when neither says (llama-server then uses the file's trained context)."""
    try:
        from_args = context_from_args(model.args)
    except ValueError:
        from_args = None
    return from_args or model.capabilities.context or None


def model_file(model: ModelConfig) -> str | None:
    """The GGUF file a llama-server command loads (``-m``/``--model``), if it names one."""
    try:
        args = model.args
    except ValueError:
        return None
    for index, word in enumerate(args):
        if word in ("-m", "--model") and index + 1 < len(args):
            return args[index + 1]
        if word.startswith("--model="):
            return word.split("=", 1)[1]
    return None


def _value(arg: str) -> str:
    return arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg


def _real(path: str) -> str:
    return os.path.realpath(os.path.expanduser(path))


def _port_of(url: str) -> int | None:
    try:
        return urlsplit(url).port
    except ValueError:
        return None
