"""The model process state machine: which transitions `ModelProcess` accepts, which it refuses (no processes)."""

from __future__ import annotations

import itertools

import pytest

from core.config.schema import ModelConfig
from core.logbook import LogRing
from core.upstream.process import _TRANSITIONS, ModelProcess, ProcessState

S = ProcessState

#: the documented lifecycle (module docstring of core/upstream/process.py), written out independently
ALLOWED: dict[ProcessState, set[ProcessState]] = {
    S.STOPPED: {S.STARTING, S.SHUTDOWN},
    S.STARTING: {S.READY, S.FAILED, S.STOPPING, S.SHUTDOWN},
    S.READY: {S.STOPPING, S.FAILED, S.SHUTDOWN},
    S.STOPPING: {S.STOPPED, S.SHUTDOWN},
    S.FAILED: {S.STARTING, S.STOPPING, S.STOPPED, S.SHUTDOWN},
    S.SHUTDOWN: set(),
}

PAIRS = [(old, new) for old, new in itertools.product(S, S) if old != new]
ACCEPTED = [pair for pair in PAIRS if pair[1] in ALLOWED[pair[0]]]
REFUSED = [pair for pair in PAIRS if pair[1] not in ALLOWED[pair[0]]]


def _ids(pairs):
    return [f"{old}->{new}" for old, new in pairs]


def make_process(state: ProcessState, seen: list[tuple[ProcessState, ProcessState]]) -> ModelProcess:
    """A ModelProcess that never runs anything, put directly into `state`; state changes are recorded in `seen`."""
    process = ModelProcess(
        ModelConfig(id="m", cmd="/bin/false", proxy="http://127.0.0.1:1"),
        LogRing("m"),
        http=None,  # type: ignore[arg-type]  # _set_state never touches HTTP
        on_state=lambda proc, old, new: seen.append((old, new)),
    )
    process._state = state
    return process


def test_the_state_set_is_the_llama_swap_one():
    assert {s.value for s in S} == {"starting", "ready", "stopping", "stopped", "failed", "shutdown"}


def test_the_transition_table_is_the_documented_lifecycle():
    assert set(_TRANSITIONS) == set(S)
    assert {k: set(v) for k, v in _TRANSITIONS.items()} == ALLOWED


def test_a_new_process_is_stopped():
    process = ModelProcess(ModelConfig(id="x"), LogRing("x"), http=None)  # type: ignore[arg-type]
    assert process.state == S.STOPPED


@pytest.mark.parametrize(("old", "new"), ACCEPTED, ids=_ids(ACCEPTED))
def test_allowed_transition_is_accepted_and_reported(old, new):
    seen: list[tuple[ProcessState, ProcessState]] = []
    process = make_process(old, seen)
    process._set_state(new)
    assert process.state == new
    assert seen == [(old, new)]


@pytest.mark.parametrize(("old", "new"), REFUSED, ids=_ids(REFUSED))
def test_other_transition_is_refused_with_runtime_error(old, new):
    seen: list[tuple[ProcessState, ProcessState]] = []
    process = make_process(old, seen)
    with pytest.raises(RuntimeError, match=f"invalid state transition {old} → {new}"):
        process._set_state(new)
    assert process.state == old  # unchanged
    assert seen == []  # no listener was told about a change that did not happen


@pytest.mark.parametrize("state", list(S), ids=[s.value for s in S])
def test_setting_the_current_state_again_is_a_silent_no_op(state):
    seen: list[tuple[ProcessState, ProcessState]] = []
    process = make_process(state, seen)
    process._set_state(state)
    assert process.state == state
    assert seen == []


def test_shutdown_is_terminal():
    for target in S:
        if target == S.SHUTDOWN:
            continue
        process = make_process(S.SHUTDOWN, [])
        with pytest.raises(RuntimeError):
            process._set_state(target)
        assert process.state == S.SHUTDOWN


def test_the_happy_path_round_trip_from_the_docstring():
    seen: list[tuple[ProcessState, ProcessState]] = []
    process = make_process(S.STOPPED, seen)
    for state in (S.STARTING, S.READY, S.STOPPING, S.STOPPED, S.STARTING, S.READY, S.FAILED, S.STARTING, S.SHUTDOWN):
        process._set_state(state)
    assert process.state == S.SHUTDOWN
    assert [new for _, new in seen] == [
        S.STARTING, S.READY, S.STOPPING, S.STOPPED, S.STARTING, S.READY, S.FAILED, S.STARTING, S.SHUTDOWN,
    ]  # fmt: skip
    assert [old for old, _ in seen[1:]] == [new for _, new in seen[:-1]]  # each change starts where the last ended
