"""YAML text → plain Python values, remembering where every key came from.

The loader reports problems with their YAML key path and line/column, so the
parsed tree is kept next to a table of positions keyed by path tuples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars, as Go's yaml.v3 reads them.

    PyYAML follows YAML 1.1, where `yes`, `on`, `1:30` and dates are typed; in
    llama-swap (yaml.v3) only true/false, numbers and null are, so a model
    called `on` or a value `12:00` stays a string here too.
    """


_TYPED = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _TYPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


class YamlSyntaxError(ValueError):
    def __init__(self, message: str, position: Position | None):
        super().__init__(message)
        self.position = position


def parse_yaml(text: str) -> tuple[Any, dict[Path, Position]]:
    """Parse YAML text into Python values plus a path → position table."""
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(mark.line + 1, mark.column + 1) if mark else None
        problem = exc.problem or str(exc)
        raise YamlSyntaxError(f"invalid YAML: {problem}", pos) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"invalid YAML: {exc}", None) from None
    positions: dict[Path, Position] = {}
    if node is not None:
        _walk(node, (), positions, set())
    return data, positions


def _walk(node: yaml.Node, path: Path, out: dict[Path, Position], seen: set[int]) -> None:
    out.setdefault(path, Position(node.start_mark.line + 1, node.start_mark.column + 1))
    if id(node) in seen:  # an alias pointing back at an anchor
        return
    seen = seen | {id(node)}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = key_node.value
            out.setdefault(path + (key,), Position(key_node.start_mark.line + 1, key_node.start_mark.column + 1))
            _walk_value(value_node, path + (key,), out, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), out, seen)


def _walk_value(node: yaml.Node, path: Path, out: dict[Path, Position], seen: set[int]) -> None:
    # The key's own position is already recorded; children get theirs.
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        placeholder = out.pop(path)
        _walk(node, path, out, seen)
        out[path] = placeholder


def position_of(positions: dict[Path, Position], path: Path) -> Position | None:
    """The position of `path`, or of its nearest ancestor that has one."""
    while True:
        if path in positions:
            return positions[path]
        if not path:
            return None
        path = path[:-1]
