"""MatrixPolicy: which set to keep, priced by eviction multipliers × learned load times."""

from __future__ import annotations

import math
import textwrap

import pytest

from core.config import load_config_text
from core.config.schema import MatrixConfig
from core.swap.matrix import LoadTimes, MatrixError, MatrixPolicy
from core.swap.policy import GroupPolicy, policy_for


def policy(sets: dict[str, str], models: set[str], **kwargs) -> MatrixPolicy:
    matrix_fields = {k: kwargs.pop(k) for k in ("vars", "evict_costs") if k in kwargs}
    return MatrixPolicy(MatrixConfig(sets=sets, **matrix_fields), models, **kwargs)


def record(p: MatrixPolicy, model: str, seconds: float, times: int = 1) -> None:
    for _ in range(times):
        p.record_load(model, seconds)


STUDIO = {
    "sets": {
        "standard": "(g | q) & v",
        "with_rerank": "(g | q) & v & e",
        "creative": "(g | q) & sd",
        "full": "big",
    },
    "models": {"gemma", "qwen", "voxtral", "rerank", "sd", "big", "solo"},
    "vars": {"g": "gemma", "q": "qwen", "v": "voxtral", "e": "rerank"},
    "evict_costs": {"v": 50, "big": 30},
}


class TestSetChoice:
    def test_a_compatible_model_starts_without_evicting_anything(self):
        p = policy(**STUDIO)
        assert p.evictions("rerank", ["gemma", "voxtral"]) == []
        assert p.decide("rerank", ["gemma", "voxtral"]).set_name == "with_rerank"

    def test_only_models_outside_the_chosen_set_stop(self):
        p = policy(**STUDIO)
        decision = p.decide("sd", ["gemma", "voxtral", "rerank"])
        assert decision.set_name == "creative"
        assert decision.evict == ["voxtral", "rerank"]
        assert decision.cost == 51  # nothing measured yet: 1 ms each × multipliers 50 and 1

    def test_alternatives_in_a_set_are_exclusive(self):
        p = policy(**STUDIO)
        assert p.evictions("qwen", ["gemma", "voxtral"]) == ["gemma"]

    def test_a_model_in_no_set_runs_alone(self):
        p = policy(**STUDIO)
        assert p.evictions("solo", ["gemma", "voxtral"]) == ["gemma", "voxtral"]
        assert p.decide("solo", ["gemma"]).set_name is None
        # and whatever comes next stops it
        assert p.evictions("gemma", ["solo"]) == ["solo"]

    def test_a_single_model_set_evicts_everything_else(self):
        assert policy(**STUDIO).evictions("big", ["gemma", "voxtral"]) == ["gemma", "voxtral"]

    def test_the_target_is_never_its_own_eviction(self):
        assert policy(**STUDIO).evictions("gemma", ["gemma", "voxtral", "sd"]) == ["sd"]

    def test_ties_go_to_the_set_defined_first(self):
        sets = {"keep_a": "t & a", "keep_b": "t & b"}
        assert policy(sets, {"t", "a", "b"}).evictions("t", ["a", "b"]) == ["b"]
        flipped = {"keep_b": "t & b", "keep_a": "t & a"}
        assert policy(flipped, {"t", "a", "b"}).evictions("t", ["a", "b"]) == ["a"]

    def test_a_multiplier_outweighs_definition_order(self):
        sets = {"keep_a": "t & a", "keep_b": "t & b"}
        p = policy(sets, {"t", "a", "b"}, evict_costs={"b": 3})
        assert p.evictions("t", ["a", "b"]) == ["a"]

    def test_multipliers_may_name_a_var_or_a_model(self):
        p = policy(**STUDIO)
        assert p.multiplier("voxtral") == 50  # given as the var v
        assert p.multiplier("big") == 30  # given as the model id
        assert p.multiplier("gemma") == 1

    def test_a_broken_matrix_is_refused(self):
        with pytest.raises(MatrixError) as info:
            policy({"s": "a & (b"}, {"a", "b"})
        assert info.value.path == ("routing", "router", "settings", "matrix", "sets", "s")


class TestLearnedLoadTimes:
    def test_the_slower_model_to_reload_is_kept(self):
        sets = {"keep_fast": "t & fast", "keep_slow": "t & slow"}
        p = policy(sets, {"t", "fast", "slow"})
        assert p.evictions("t", ["fast", "slow"]) == ["slow"]  # nothing measured: tie, first set
        record(p, "fast", 2.0, times=5)
        record(p, "slow", 30.0, times=5)
        assert p.evictions("t", ["fast", "slow"]) == ["fast"]

    def test_cost_is_multiplier_times_expected_milliseconds(self):
        sets = {"keep_a": "t & a", "keep_b": "t & b"}
        p = policy(sets, {"t", "a", "b"}, evict_costs={"a": 10})
        record(p, "a", 1.0, times=20)  # 1000 ms, 10× → 10 000
        record(p, "b", 8.0, times=20)  # 8000 ms, 1× → well above a's without the multiplier
        assert p.eviction_cost("a") == pytest.approx(10 * (20 * 1000 + 2 * 4500) / 22)
        assert p.evictions("t", ["a", "b"]) == ["b"]

    def test_a_never_loaded_model_is_assumed_at_the_fleet_median(self):
        sets = {"keep_measured": "t & measured", "keep_new": "t & new"}
        p = policy(sets, {"t", "measured", "new", "other"})
        record(p, "measured", 2.0, times=10)
        record(p, "other", 10.0, times=10)
        assert p.load_times.expected_ms("new") == pytest.approx(6000)
        assert p.evictions("t", ["measured", "new"]) == ["measured"]

    def test_one_slow_first_load_is_shrunk_toward_the_fleet(self):
        times = LoadTimes(prior_weight=2)
        for model in ("a", "b", "c"):
            for _ in range(4):
                times.record(model, 1.0)
        times.record("cold", 60.0)
        assert times.fleet_median_ms == pytest.approx(1000)
        assert times.expected_ms("cold") == pytest.approx((60_000 + 2 * 1000) / 3)
        for _ in range(19):
            times.record("cold", 60.0)
        assert times.expected_ms("cold") == pytest.approx((20 * 60_000 + 2 * 1000) / 22)

    def test_samples_are_a_bounded_window(self):
        times = LoadTimes(window=3)
        for seconds in (100.0, 100.0, 1.0, 2.0, 3.0):
            times.record("a", seconds)
        assert times.samples("a") == [1000.0, 2000.0, 3000.0]
        assert times.expected_ms("a") == pytest.approx(2000)

    def test_nothing_measured_means_one_millisecond_each(self):
        times = LoadTimes()
        assert times.expected_ms("anything") == 1.0
        times.record("a", float("nan"))
        times.record("a", -1.0)
        assert times.samples("a") == [] and times.fleet_median_ms is None
        assert not math.isnan(times.expected_ms("a"))

    def test_load_times_can_outlive_a_policy(self):
        shared = LoadTimes()
        first = policy({"s": "a"}, {"a"}, load_times=shared)
        first.record_load("a", 4.0)
        second = policy({"s": "a"}, {"a"}, load_times=shared)
        assert second.load_times.expected_ms("a") == pytest.approx(4000)


MODELS = """
models:
  a: {cmd: "srv --port ${PORT}", proxy: "http://127.0.0.1:${PORT}"}
  b: {cmd: "srv --port ${PORT}", proxy: "http://127.0.0.1:${PORT}"}
"""


class TestPolicyFor:
    def test_the_default_router_is_groups(self):
        config = load_config_text(MODELS)
        assert isinstance(policy_for(config), GroupPolicy)
        assert policy_for(config).evictions("a", ["b"]) == ["b"]  # one model at a time

    def test_use_matrix_builds_a_matrix_policy(self):
        config = load_config_text(
            MODELS
            + textwrap.dedent("""
            routing:
              router:
                use: matrix
                settings:
                  matrix:
                    sets: {pair: "a & b"}
            """)
        )
        chosen = policy_for(config)
        assert isinstance(chosen, MatrixPolicy)
        assert chosen.evictions("a", ["b"]) == []

    def test_the_legacy_top_level_matrix_builds_a_matrix_policy(self):
        config = load_config_text(MODELS + 'matrix:\n  sets: {alone_a: "a", alone_b: "b"}\n')
        shared = LoadTimes()
        chosen = policy_for(config, load_times=shared)
        assert isinstance(chosen, MatrixPolicy) and chosen.load_times is shared
        assert chosen.evictions("a", ["b"]) == ["b"]

    def test_an_inactive_matrix_is_ignored(self):
        config = load_config_text(
            MODELS + 'routing:\n  router:\n    use: group\n    settings: {matrix: {sets: {pair: "a & b"}}}\n'
        )
        assert isinstance(policy_for(config), GroupPolicy)
