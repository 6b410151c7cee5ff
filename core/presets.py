"""Per-model serving presets: how a library model without a hand-written config entry is started and served.

A preset has two kinds of settings. Launch settings (context size, GPU layers, threads, parallel slots,
extra arguments, embedding mode) become the llama-server command line, so changing one means restarting the
model. Serving settings (idle timeout, max concurrent requests, queue depth, sampling overrides) are read by
the gateway for each request, so they apply to a running model at once. :func:`restart_needed` tells the two
apart.

Every field is optional: ``None`` means "not set here, use the default". That is what makes a restore merge
possible: a value present in the stored preset is never overwritten by an imported one.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

EXPORT_FORMAT = "switchyard.library/1"
DEFAULT_HOST = "127.0.0.1"

#: Flags the preset (or the gateway) owns; `extra_args` may not repeat them.
_RESERVED_FLAGS = frozenset({
    "-m", "--model", "--host", "--port", "-c", "--ctx-size", "-ngl", "--gpu-layers", "--n-gpu-layers",
    "-t", "--threads", "-np", "--parallel", "--embedding", "--embeddings", "--mmproj", "-mm",
})  # fmt: skip


class PresetError(ValueError):
    """A preset document is invalid; `problems` lists every field that is wrong."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True, slots=True)
class SamplingOverrides:
    """Sampling values forced onto every request to the model (they replace what the client sent)."""

    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @property
    def empty(self) -> bool:
        return not self.as_dict()


@dataclass(frozen=True, slots=True)
class ModelPreset:
    # launch settings: a change needs a restart
    ctx_size: int | None = None
    n_gpu_layers: int | None = None  # -1: all layers
    threads: int | None = None
    parallel: int | None = None
    extra_args: str | None = None
    embedding: bool | None = None
    # serving settings: applied live
    idle_timeout: int | None = None  # seconds without requests before the model is stopped; 0 = never
    max_concurrent: int | None = None  # requests served at once; 0 = unlimited
    queue_depth: int | None = None  # requests waiting beyond max_concurrent before 429
    sampling: SamplingOverrides = field(default_factory=SamplingOverrides)

    # ------------------------------------------------------------- conversion

    def as_dict(self) -> dict[str, Any]:
        """The set fields only (unset ones are left out), JSON-ready."""
        out: dict[str, Any] = {}
        for name in _SCALAR_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        sampling = self.sampling.as_dict()
        if sampling:
            out["sampling"] = sampling
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelPreset:
        """Validate a stored or submitted preset; raises :class:`PresetError` listing every problem."""
        if not isinstance(data, Mapping):
            raise PresetError(["a preset must be an object"])
        problems: list[str] = []
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name == "sampling":
                continue
            if name not in _FIELD_RULES:
                problems.append(f"{name}: unknown setting")
                continue
            if value is None:
                continue
            problem = _FIELD_RULES[name](value)
            if problem:
                problems.append(f"{name}: {problem}")
            else:
                values[name] = value
        if isinstance(values.get("extra_args"), str):
            problems.extend(f"extra_args: {p}" for p in _extra_args_problems(values["extra_args"]))
        sampling = data.get("sampling")
        overrides: dict[str, Any] = {}
        if sampling is not None:
            if not isinstance(sampling, Mapping):
                problems.append("sampling: must be an object")
            else:
                for name, value in sampling.items():
                    if name not in _SAMPLING_RULES:
                        problems.append(f"sampling.{name}: unknown sampling parameter")
                    elif value is not None:
                        problem = _SAMPLING_RULES[name](value)
                        if problem:
                            problems.append(f"sampling.{name}: {problem}")
                        else:
                            overrides[name] = value
        if problems:
            raise PresetError(problems)
        return cls(**values, sampling=SamplingOverrides(**overrides))


_SCALAR_FIELDS = tuple(f.name for f in fields(ModelPreset) if f.name != "sampling")
LAUNCH_FIELDS = frozenset({"ctx_size", "n_gpu_layers", "threads", "parallel", "extra_args", "embedding"})
LIVE_FIELDS = frozenset({"idle_timeout", "max_concurrent", "queue_depth", "sampling"})


def _int_rule(minimum: int) -> Any:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        if value < minimum:
            return f"must be at least {minimum}"
        return None

    return check


def _number_rule(minimum: float | None = None, maximum: float | None = None) -> Any:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        if minimum is not None and value < minimum:
            return f"must be at least {minimum}"
        if maximum is not None and value > maximum:
            return f"must be at most {maximum}"
        return None

    return check


def _str_rule(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def _bool_rule(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


_FIELD_RULES = {
    "ctx_size": _int_rule(1),
    "n_gpu_layers": _int_rule(-1),
    "threads": _int_rule(1),
    "parallel": _int_rule(1),
    "extra_args": _str_rule,
    "embedding": _bool_rule,
    "idle_timeout": _int_rule(0),
    "max_concurrent": _int_rule(0),
    "queue_depth": _int_rule(0),
}
_SAMPLING_RULES = {
    "temperature": _number_rule(0),
    "top_k": _int_rule(0),
    "top_p": _number_rule(0, 1),
    "min_p": _number_rule(0, 1),
    "repeat_penalty": _number_rule(0),
    "presence_penalty": _number_rule(-2, 2),
    "frequency_penalty": _number_rule(-2, 2),
}


def _extra_args_problems(extra_args: str) -> list[str]:
    try:
        words = shlex.split(extra_args)
    except ValueError as exc:
        return [f"cannot be split into arguments ({exc})"]
    reserved = sorted({w.split("=", 1)[0] for w in words if w.split("=", 1)[0] in _RESERVED_FLAGS})
    if reserved:
        return [f"{', '.join(reserved)} is set by the preset itself; use its field instead"]
    return []


# ========================================================================== use


def preset_to_cmd(
    model_path: str,
    preset: ModelPreset,
    server_bin: str,
    *,
    alias: str | None = None,
    mmproj: str | None = None,
    host: str = DEFAULT_HOST,
) -> str:
    """A llama-swap ``cmd`` for llama-server; the swap engine fills in ``${PORT}``.

    Unset launch settings are left to llama-server's own defaults (except the context size, which
    llama-server would otherwise take from the file's trained maximum; that is its default too, so it is
    only passed when set).
    """
    words = [shlex.quote(server_bin), "-m", shlex.quote(model_path), "--host", host, "--port", "${PORT}"]
    if alias:
        words += ["--alias", shlex.quote(alias)]
    if preset.ctx_size is not None:
        words += ["-c", str(preset.ctx_size)]
    if preset.n_gpu_layers is not None:
        words += ["-ngl", "999" if preset.n_gpu_layers < 0 else str(preset.n_gpu_layers)]
    if preset.threads is not None:
        words += ["-t", str(preset.threads)]
    if preset.parallel is not None:
        words += ["-np", str(preset.parallel)]
    if preset.embedding:
        words.append("--embeddings")
    elif mmproj:
        words += ["--mmproj", shlex.quote(mmproj)]
    if preset.extra_args:
        words += [shlex.quote(word) for word in shlex.split(preset.extra_args)]
    return " ".join(words)


def changed_fields(old: ModelPreset, new: ModelPreset) -> list[str]:
    """Names of the settings that differ (``sampling`` counts as one)."""
    return [f.name for f in fields(ModelPreset) if getattr(old, f.name) != getattr(new, f.name)]


def restart_needed(old: ModelPreset, new: ModelPreset) -> bool:
    """True when a running model must be restarted for `new` to take effect (a launch setting changed)."""
    return any(name in LAUNCH_FIELDS for name in changed_fields(old, new))


def apply_sampling_overrides(body: Mapping[str, Any], overrides: SamplingOverrides) -> dict[str, Any]:
    """A copy of an OpenAI-shaped request body with the preset's sampling values forced onto it."""
    out = dict(body)
    out.update(overrides.as_dict())
    return out


# ============================================================= export / restore


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What a restore did. `presets` is the complete merged set to store (unchanged ones included)."""

    presets: dict[str, ModelPreset]
    added: list[str] = field(default_factory=list)  # models that had no preset
    merged: list[str] = field(default_factory=list)  # models that got some unset fields filled in
    unchanged: list[str] = field(default_factory=list)  # nothing new for these
    unknown: list[str] = field(default_factory=list)  # in the document, not in the library
    problems: list[str] = field(default_factory=list)  # entries that could not be read

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "merged": self.merged,
            "unchanged": self.unchanged,
            "unknown": self.unknown,
            "problems": self.problems,
        }


def export_library(
    models: Iterable[Mapping[str, Any]], presets: Mapping[str, ModelPreset], *, now: datetime | None = None
) -> dict[str, Any]:
    """A JSON document of every model's metadata and preset.

    `models` are plain descriptions (e.g. ``LibraryModel.as_dict()``), each with an ``id``; machine-specific
    paths are dropped (the file name is kept so a model can be found again on another machine).
    Presets of models not in `models` are exported too, so nothing configured is lost.
    """
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for model in models:
        model_id = model["id"]
        seen.add(model_id)
        entry = {k: v for k, v in model.items() if k not in ("path", "files", "mmproj", "chat_template")}
        if model.get("path"):
            entry["file"] = model["path"].replace("\\", "/").rsplit("/", 1)[-1]
        preset = presets.get(model_id)
        if preset is not None and preset.as_dict():
            entry["preset"] = preset.as_dict()
        entries.append(entry)
    for model_id in sorted(set(presets) - seen):
        if presets[model_id].as_dict():
            entries.append({"id": model_id, "preset": presets[model_id].as_dict()})
    moment = now or datetime.now(UTC)
    return {"format": EXPORT_FORMAT, "exported_at": moment.isoformat(), "models": entries}


def restore_presets(
    document: Mapping[str, Any], existing: Mapping[str, ModelPreset], known_models: Collection[str]
) -> RestoreReport:
    """Merge an exported document into the stored presets without overwriting anything.

    A field set in the stored preset keeps its value; only unset fields are taken from the document (for
    sampling, per parameter). Models the library does not know are reported in `unknown` and not stored.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("models"), list):
        raise PresetError(['the document must be an object with a "models" list'])
    if document.get("format") not in (None, EXPORT_FORMAT):
        raise PresetError([f"unsupported export format {document.get('format')!r}"])
    report = RestoreReport(presets=dict(existing))
    for index, entry in enumerate(document["models"]):
        model_id = entry.get("id") if isinstance(entry, Mapping) else None
        if not isinstance(model_id, str) or not model_id:
            report.problems.append(f"models[{index}]: missing id")
            continue
        if model_id not in known_models:
            report.unknown.append(model_id)
            continue
        raw = entry.get("preset")
        if raw is None:
            report.unchanged.append(model_id)
            continue
        try:
            incoming = ModelPreset.from_dict(raw)
        except PresetError as exc:
            report.problems.extend(f"{model_id}: {problem}" for problem in exc.problems)
            continue
        current = existing.get(model_id)
        if current is None:
            report.presets[model_id] = incoming
            (report.added if incoming.as_dict() else report.unchanged).append(model_id)
            continue
        merged = merge_presets(current, incoming)
        report.presets[model_id] = merged
        (report.merged if merged != current else report.unchanged).append(model_id)
    return report


def merge_presets(current: ModelPreset, incoming: ModelPreset) -> ModelPreset:
    """`current` with its unset fields taken from `incoming`."""
    values = {name: getattr(current, name) for name in _SCALAR_FIELDS}
    for name in _SCALAR_FIELDS:
        if values[name] is None:
            values[name] = getattr(incoming, name)
    sampling = {**incoming.sampling.as_dict(), **current.sampling.as_dict()}
    return ModelPreset(**values, sampling=SamplingOverrides(**sampling))
