"""Eviction policies: pure functions from (target, running models) to the models that must stop.

They know nothing about queues, processes or time, so they are tested as plain functions.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from core.config.schema import Config, GroupConfig
from core.swap.matrix import MATRIX_PATH, LoadTimes, MatrixPolicy


class EvictionPolicy(Protocol):
    def evictions(self, target: str, running: Collection[str]) -> list[str]:
        """Models in `running` that must stop before `target` may start."""
        ...

    def record_load(self, model_id: str, seconds: float) -> None:
        """Learn how long a model took to load (cost-aware policies use it)."""
        ...


class GroupPolicy:
    """llama-swap's groups.

    * ``swap: true`` — starting a member stops the group's other running members.
    * ``exclusive: true`` — starting a member stops running members of every other
      group, except groups marked ``persistent``.
    * Starting a member of a non-exclusive group leaves other groups alone (even
      exclusive ones), as llama-swap does.
    * A config with no groups puts every model in one swapping, exclusive default
      group: one model at a time.
    """

    def __init__(self, groups: dict[str, GroupConfig]):
        self._groups = groups
        self._group_of = {member: group.id for group in groups.values() for member in group.members}

    def group_of(self, model_id: str) -> GroupConfig | None:
        group_id = self._group_of.get(model_id)
        return self._groups[group_id] if group_id else None

    def evictions(self, target: str, running: Collection[str]) -> list[str]:
        group = self.group_of(target)
        out = []
        for model_id in sorted(running):
            if model_id == target:
                continue
            other = self.group_of(model_id)
            if other is None:
                continue  # peers and models outside the swap domain
            if other.id == (group.id if group else None):
                if group is not None and group.swap:
                    out.append(model_id)
            elif group is not None and group.exclusive and not other.persistent:
                out.append(model_id)
        return out

    def record_load(self, model_id: str, seconds: float) -> None:
        return None


def policy_for(config: Config, *, load_times: LoadTimes | None = None) -> EvictionPolicy:
    """The eviction policy `config.router` selects.

    Pass the same `load_times` across config reloads so a matrix policy keeps
    what it learned about load times.
    """
    if config.router == "matrix" and config.matrix is not None:
        # problems point at the legacy top-level `matrix:` when that is where it came from
        path = ("matrix",) if config.resolved.get("matrix") is not None else MATRIX_PATH
        return MatrixPolicy(config.matrix, config.models, load_times=load_times, path=path)
    return GroupPolicy(config.groups)
