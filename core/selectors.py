"""Profiles and selectors: virtual model ids resolved to concrete targets per request.

* A **profile** (one or none active) pins requested ids to other targets before anything
  else happens; an empty pin disables the id (404).
* A **selector** picks one of its targets by strategy:

  - ``pin`` — always the first target;
  - ``warm`` — the first target that is ready, else one that is starting, else cold-start the first;
  - ``spillover`` — fill active targets up to ``spillover`` requests each (least busy first, round
    robin among ties), start the next cold target once every active one is full, and when nothing is
    cold, keep spreading over the active ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from core.config.schema import Config, ProfileConfig, SelectorConfig

_ACTIVE = ("ready", "starting")
_GONE = ("stopping", "shutdown")


class ModelDisabled(Exception):
    """The active profile pins this id to nothing."""

    def __init__(self, model: str, profile: str):
        super().__init__(f"model {model!r} is disabled by the active profile {profile!r}")


class NoSelectorTarget(Exception):
    """Every target of a spillover selector is stopping or shut down (llama-swap answers 503)."""

    def __init__(self, selector: str):
        super().__init__(f"selector {selector!r} has no available spillover targets")


def apply_profile(profile: ProfileConfig | None, model: str) -> str:
    """The id to route after the active profile's pins; raises ModelDisabled for an empty pin."""
    if profile is None or model not in profile.pins:
        return model
    target = profile.pins[model]
    if not target:
        raise ModelDisabled(model, profile.id)
    return target


@dataclass
class _SpilloverState:
    in_flight: dict[str, int] = field(default_factory=dict)
    round_robin: int = 0


class SelectorRouter:
    """Chooses selector targets; keeps spillover reservations (call :meth:`release` when done)."""

    def __init__(self, config: Config):
        self.config = config
        self._spill: dict[str, _SpilloverState] = {
            s.id: _SpilloverState() for s in config.selectors.values() if s.strategy == "spillover"
        }

    def is_selector(self, name: str) -> bool:
        return name in self.config.selectors

    def choose(self, selector_id: str, states: Mapping[str, str]) -> str:
        """Pick a target. `states` maps local model ids to their process state ("ready", "starting", …)."""
        selector = self.config.selectors[selector_id]
        if selector.strategy == "pin":
            return selector.targets[0]
        if selector.strategy == "warm":
            return self._warm(selector, states)
        return self._spillover(selector, states)

    def release(self, selector_id: str, target: str) -> None:
        state = self._spill.get(selector_id)
        if state is None:
            return
        key = self._key(target)
        if state.in_flight.get(key, 0) > 0:
            state.in_flight[key] -= 1

    def _key(self, target: str) -> str:
        return self.config.real_model_id(target) or target

    def _warm(self, selector: SelectorConfig, states: Mapping[str, str]) -> str:
        for wanted in ("ready", "starting"):
            for target in selector.targets:
                if states.get(self._key(target)) == wanted:
                    return target
        return selector.targets[0]

    def _spillover(self, selector: SelectorConfig, states: Mapping[str, str]) -> str:
        state = self._spill.setdefault(selector.id, _SpilloverState())
        active: list[str] = []
        cold: list[str] = []
        for target in selector.targets:
            key = self._key(target)
            local = self.config.real_model_id(target) is not None
            busy = state.in_flight.get(key, 0) > 0
            if local:
                process_state = states.get(key, "stopped")
                if process_state in _GONE:
                    continue
                (active if process_state in _ACTIVE or busy else cold).append(target)
            else:
                (active if busy else cold).append(target)
        if not active and not cold:
            raise NoSelectorTarget(selector.id)
        if not active:
            chosen = cold[0]
        else:
            least = min(state.in_flight.get(self._key(t), 0) for t in active)
            if least >= selector.spillover and cold:
                chosen = cold[0]
            else:
                tied = [t for t in active if state.in_flight.get(self._key(t), 0) == least]
                chosen = tied[state.round_robin % len(tied)]
                state.round_robin += 1
        key = self._key(chosen)
        state.in_flight[key] = state.in_flight.get(key, 0) + 1
        return chosen
