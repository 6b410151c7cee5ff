"""llama-swap's macro language: `${env.NAME}`, global and model macros, `${PORT}`, `${MODEL_ID}`, `${PID}`.

Order of work, as llama-swap documents it:

1. `${env.NAME}` is replaced in the raw text first; an unset variable is an error.
2. Declarations are validated (name rules, scalar values, no self-reference, reserved names).
3. Global macros expand in every top-level value except `models`.
4. Each model (in sorted id order) expands with `MODEL_ID`, the global macros and its
   own macros (which override globals of the same name). Macros are applied last to
   first, so a macro may use any macro declared *before* it.
5. A model whose `cmd` uses `${PORT}` gets the next free port from `startPort`.
6. Anything still unresolved is an error, except `${PID}` inside `cmdStop`.

A value that is exactly `${name}` takes the macro's type (a number stays a number);
a macro inside a longer string is formatted the way Go's `%v` does it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import yaml

from core.config.source import Path, Position

ENV_MACRO = re.compile(r"\$\{env\.([a-zA-Z_][a-zA-Z0-9_]*)\}")
MACRO_REF = re.compile(r"\$\{([a-zA-Z0-9_-]+)\}")
MACRO_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
RESERVED_MACROS = frozenset({"PID", "PORT", "MODEL_ID"})
DEFAULT_PROXY = "http://localhost:${PORT}"


class MacroError(ValueError):
    def __init__(self, message: str, path: Path = (), position: Position | None = None):
        super().__init__(message)
        self.path = path
        self.position = position


@dataclass(frozen=True, slots=True)
class Macro:
    name: str
    value: str | int | float | bool


def format_value(value: Any) -> str:
    """Format a scalar the way Go's fmt `%v` does, as llama-swap interpolates it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    return str(value)


def substitute_env(text: str) -> str:
    """Replace `${env.NAME}` in raw YAML text; references inside comments are ignored."""
    try:
        clean = yaml.safe_dump(yaml.safe_load(text))
    except yaml.YAMLError:
        clean = text
    for match in ENV_MACRO.finditer(clean):
        name = match.group(1)
        if name not in os.environ:
            raise MacroError(f"environment variable '{name}' is not set", position=_text_position(text, match.group(0)))
        value = os.environ[name]
        if any(ch in value for ch in "\n\r\x00"):
            raise MacroError(
                f"environment variable '{name}' contains newlines or null bytes which are not allowed in YAML substitution",
                position=_text_position(text, match.group(0)),
            )
        text = text.replace(match.group(0), value.replace("\\", "\\\\").replace('"', '\\"'))
    return text


def _text_position(text: str, needle: str) -> Position | None:
    for number, line in enumerate(text.splitlines(), start=1):
        column = line.find(needle)
        if column >= 0 and not line.lstrip().startswith("#"):
            return Position(number, column + 1)
    return None


def read_declarations(raw: Any, path: Path) -> list[Macro]:
    """Validate a `macros:` mapping and return its entries in declaration order."""
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise MacroError("macros must be a mapping", path)
    macros = []
    for name, value in raw.items():
        name = str(name)
        where = path + (name,)
        if len(name) >= 64:
            raise MacroError(f"macro name '{name}' exceeds maximum length of 63 characters", where)
        if not MACRO_NAME.match(name):
            raise MacroError(f"macro name '{name}' contains invalid characters, must match ^[a-zA-Z0-9_-]+$", where)
        if name in RESERVED_MACROS:
            raise MacroError(f"macro name '{name}' is reserved", where)
        if not isinstance(value, (str, int, float, bool)):
            raise MacroError(
                f"macro '{name}' has invalid type {type(value).__name__}, must be a string, number or bool", where
            )
        if isinstance(value, str) and "${" + name + "}" in value:
            raise MacroError(f"macro '{name}' contains self-reference", where)
        macros.append(Macro(name, value))
    return macros


def substitute(value: Any, macros: list[Macro]) -> Any:
    """Apply macros last to first, so later macros may use earlier ones."""
    for macro in reversed(macros):
        value = _substitute_one(value, "${" + macro.name + "}", macro.value)
    return value


def _substitute_one(value: Any, slug: str, replacement: Any) -> Any:
    if isinstance(value, str):
        if value == slug:
            return replacement
        if slug in value:
            return value.replace(slug, format_value(replacement))
        return value
    if isinstance(value, dict):
        return {key: _substitute_one(item, slug, replacement) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute_one(item, slug, replacement) for item in value]
    return value


def strip_comment_lines(command: str) -> str:
    """Drop lines whose first non-blank character is `#` from a multi-line command."""
    return "\n".join(line for line in command.split("\n") if not line.strip().startswith("#"))


def merge_model_macros(model_id: str, global_macros: list[Macro], model_macros: list[Macro]) -> list[Macro]:
    merged = [Macro("MODEL_ID", model_id), *global_macros]
    for entry in model_macros:
        for index, existing in enumerate(merged):
            if existing.name == entry.name:
                merged[index] = entry
                break
        else:
            merged.append(entry)
    return merged


def expand_config(raw: dict[str, Any]) -> tuple[dict[str, Any], list[MacroError]]:
    """Expand every macro in a parsed (env-substituted) config tree.

    Returns a new tree and a list of warnings. The `macros` keys are removed from
    the result; `startPort` is read after the global pass because it may itself
    be a macro.
    """
    warnings: list[MacroError] = []
    raw = dict(raw)
    global_macros = read_declarations(raw.pop("macros", None), ("macros",))
    models_in = raw.get("models")
    if models_in is not None and not isinstance(models_in, dict):
        raise MacroError("models must be a mapping of model id to settings", ("models",))
    models_in = models_in or {}

    for key in list(raw):
        if key != "models":
            raw[key] = substitute(raw[key], global_macros)

    start_port = raw.get("startPort", 5800)
    if start_port is None:
        start_port = 5800
    if not isinstance(start_port, int) or isinstance(start_port, bool) or start_port < 1:
        raise MacroError("startPort must be an integer greater than 0", ("startPort",))

    models_out: dict[str, Any] = {}
    next_port = start_port
    for model_id in sorted(models_in, key=str):
        model = models_in[model_id]
        model_id = str(model_id)
        if not isinstance(model, dict):
            models_out[model_id] = model  # the schema pass reports the wrong type
            continue
        model = dict(model)
        own_macros = read_declarations(model.pop("macros", None), ("models", model_id, "macros"))
        for field in ("cmd", "cmdStop"):
            if isinstance(model.get(field), str):
                model[field] = strip_comment_lines(model[field])
        if model.get("proxy") is None and model.get("upstream") is None:
            model["proxy"] = DEFAULT_PROXY

        macros = merge_model_macros(model_id, global_macros, own_macros)
        model = substitute(model, macros)
        _substitute_set_params_keys(model, macros, model_id)

        cmd = model.get("cmd") if isinstance(model.get("cmd"), str) else ""
        proxy = model.get("proxy") if isinstance(model.get("proxy"), str) else ""
        if "${PORT}" in cmd or "${PORT}" in proxy:
            if "${PORT}" not in cmd:
                # llama-swap refuses this; its own example has such a model, so we load it
                # and say which port the server must listen on.
                warnings.append(
                    MacroError(
                        f"proxy uses ${{PORT}} but cmd does not; the server must listen on port {next_port} itself",
                        ("models", model_id, "proxy"),
                    )
                )
            port_macro = [Macro("PORT", next_port)]
            model = substitute(model, port_macro)
            _substitute_set_params_keys(model, port_macro, model_id)
            next_port += 1
        models_out[model_id] = model

    raw["models"] = models_out
    _check_unresolved(raw)
    return raw, warnings


def _substitute_set_params_keys(model: dict[str, Any], macros: list[Macro], model_id: str) -> None:
    filters = model.get("filters")
    if not isinstance(filters, dict) or not isinstance(filters.get("setParamsByID"), dict):
        return
    resolved: dict[str, Any] = {}
    for key, value in filters["setParamsByID"].items():
        new_key = str(key)
        for macro in reversed(macros):
            new_key = new_key.replace("${" + macro.name + "}", format_value(macro.value))
        if new_key in resolved:
            raise MacroError(
                f"keys {key!r} and {new_key!r} resolve to the same value",
                ("models", model_id, "filters", "setParamsByID", str(key)),
            )
        resolved[new_key] = value
    filters = dict(filters)
    filters["setParamsByID"] = resolved
    model["filters"] = filters


def _check_unresolved(raw: dict[str, Any]) -> None:
    for key, value in raw.items():
        if key == "models":
            for model_id, model in value.items():
                if not isinstance(model, dict):
                    continue
                for field, field_value in model.items():
                    _check_value(field_value, ("models", model_id, field), allow_pid=field == "cmdStop")
                filters = model.get("filters")
                if isinstance(filters, dict) and isinstance(filters.get("setParamsByID"), dict):
                    for set_key in filters["setParamsByID"]:
                        match = MACRO_REF.search(set_key)
                        if match:
                            raise MacroError(
                                f"unknown macro '${{{match.group(1)}}}' in filters.setParamsByID key",
                                ("models", model_id, "filters", "setParamsByID", set_key),
                            )
        else:
            _check_value(value, (key,), allow_pid=False)


def _check_value(value: Any, path: Path, *, allow_pid: bool) -> None:
    if isinstance(value, str):
        for match in MACRO_REF.finditer(value):
            name = match.group(1)
            if name == "PID" and allow_pid:
                continue
            if name == "PORT":
                raise MacroError("${PORT} is only available to a model whose cmd uses it", path)
            raise MacroError(f"unknown macro '${{{name}}}'", path)
        match = ENV_MACRO.search(value)
        if match:
            raise MacroError(f"environment variable '{match.group(1)}' is not set", path)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_value(item, path + (str(key),), allow_pid=allow_pid)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(item, path + (index,), allow_pid=allow_pid)
