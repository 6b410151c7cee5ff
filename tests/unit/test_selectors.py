"""core.selectors: llama-swap's profiles (pins) and selectors (`pin`, `warm`, `spillover`)."""

from __future__ import annotations

import textwrap
from collections import Counter

import pytest

from core.config import ConfigError, load_config_text
from core.selectors import ModelDisabled, NoSelectorTarget, SelectorRouter, apply_profile

MODELS = """
models:
  a: {cmd: "srv --port ${PORT}", aliases: [alias-a]}
  b: {cmd: "srv --port ${PORT}"}
  c:
    cmd: "srv --port ${PORT}"
    filters:
      setParamsByID:
        variant: {thinking: true}
peers:
  remote:
    proxy: http://remote.example:8080
    models: [rm]
"""


def load(extra: str):
    return load_config_text(MODELS + textwrap.dedent(extra))


def router(extra: str) -> SelectorRouter:
    return SelectorRouter(load(extra))


def spillover(targets: str, limit: int = 1) -> SelectorRouter:
    return router(f"""
        selectors:
          pool: {{strategy: spillover, targets: {targets}, settings: {{spillover: {limit}}}}}
    """)


class TestPin:
    def test_always_the_first_target_whatever_is_running(self):
        r = router("""
            selectors:
              s: {strategy: pin, targets: [b, a]}
        """)
        assert r.choose("s", {}) == "b"
        assert r.choose("s", {"a": "ready", "b": "stopped"}) == "b"

    def test_a_peer_model_may_be_the_pinned_target(self):
        r = router("""
            selectors:
              s: {strategy: pin, targets: [remote/rm, a]}
        """)
        assert r.choose("s", {"a": "ready"}) == "remote/rm"

    def test_is_selector_knows_selectors_but_not_models(self):
        r = router("""
            selectors:
              s: {strategy: pin, targets: [a]}
        """)
        assert r.is_selector("s")
        assert not r.is_selector("a")
        assert not r.is_selector("alias-a")


class TestWarm:
    WARM = """
        selectors:
          w: {strategy: warm, targets: [a, b, c]}
    """

    def test_a_ready_target_wins_over_an_earlier_starting_one(self):
        assert router(self.WARM).choose("w", {"a": "starting", "c": "ready"}) == "c"

    def test_the_first_ready_target_in_order(self):
        assert router(self.WARM).choose("w", {"a": "starting", "b": "ready", "c": "ready"}) == "b"

    def test_the_first_starting_target_when_none_is_ready(self):
        assert router(self.WARM).choose("w", {"a": "stopped", "b": "starting", "c": "starting"}) == "b"

    def test_cold_starts_the_first_target_when_nothing_runs(self):
        r = router(self.WARM)
        assert r.choose("w", {}) == "a"
        assert r.choose("w", {"b": "stopping", "c": "failed"}) == "a"

    def test_alias_targets_are_looked_up_by_their_model_id(self):
        r = router("""
            selectors:
              w: {strategy: warm, targets: [b, alias-a, variant]}
        """)
        assert r.choose("w", {"a": "ready"}) == "alias-a"
        assert r.choose("w", {"c": "ready"}) == "variant"

    def test_a_peer_target_is_rejected_at_load(self):
        with pytest.raises(ConfigError) as info:
            load("""
                selectors:
                  w: {strategy: warm, targets: [a, remote/rm]}
            """)
        assert "warm selector's targets must be local models" in str(info.value)


class TestSpillover:
    def test_fills_the_first_target_before_cold_starting_the_next(self):
        r = spillover("[a, b, c]", limit=2)
        assert [r.choose("pool", {}) for _ in range(3)] == ["a", "a", "b"]

    def test_a_released_slot_goes_to_the_least_busy_active_target(self):
        r = spillover("[a, b, c]", limit=2)
        for _ in range(3):
            r.choose("pool", {})  # a, a, b
        r.release("pool", "a")
        # a holds 1, b holds 1, c holds 0 and is now ready: c is the least busy
        assert r.choose("pool", {"a": "ready", "b": "ready", "c": "ready"}) == "c"

    def test_ready_and_starting_targets_are_active_without_reservations(self):
        r = spillover("[a, b, c]")
        states = {"a": "stopped", "b": "starting", "c": "ready"}
        # the idle active targets take requests before the cold one is started
        assert sorted(r.choose("pool", states) for _ in range(2)) == ["b", "c"]
        assert r.choose("pool", states) == "a"

    def test_idle_ready_targets_share_requests_before_any_doubles_up(self):
        r = spillover("[a, b, c]")
        ready = {"a": "ready", "b": "ready", "c": "ready"}
        assert sorted(r.choose("pool", ready) for _ in range(3)) == ["a", "b", "c"]

    def test_keeps_spreading_over_active_targets_when_nothing_is_cold(self):
        r = spillover("[a, b]")
        ready = {"a": "ready", "b": "ready"}
        assert Counter(r.choose("pool", ready) for _ in range(6)) == {"a": 3, "b": 3}

    def test_stopping_and_shut_down_targets_are_skipped(self):
        r = spillover("[a, b, c]")
        assert r.choose("pool", {"a": "stopping", "b": "shutdown"}) == "c"
        assert r.choose("pool", {"a": "stopping", "b": "shutdown", "c": "ready"}) == "c"

    def test_release_frees_the_slot_for_the_same_target(self):
        r = spillover("[a, b]")
        assert r.choose("pool", {"a": "ready"}) == "a"
        r.release("pool", "a")
        assert r.choose("pool", {"a": "ready"}) == "a"
        assert r.choose("pool", {"a": "ready"}) == "b"  # a is full now, b is cold-started

    def test_release_never_drops_below_zero(self):
        r = spillover("[a, b]")
        assert r.choose("pool", {}) == "a"
        r.release("pool", "a")
        r.release("pool", "a")  # one too many
        assert r.choose("pool", {}) == "a"
        assert r.choose("pool", {}) == "b"  # a's one reservation is still counted

    def test_an_alias_target_reserves_on_its_model(self):
        r = spillover("[alias-a, b]")
        assert r.choose("pool", {"a": "ready"}) == "alias-a"
        assert r.choose("pool", {"a": "ready"}) == "b"
        r.release("pool", "alias-a")
        assert r.choose("pool", {"a": "ready", "b": "starting"}) == "alias-a"

    def test_a_peer_target_is_active_only_while_it_holds_reservations(self):
        r = spillover("[a, remote/rm]")
        assert r.choose("pool", {}) == "a"  # an idle peer is not active: the first cold target starts
        assert r.choose("pool", {}) == "remote/rm"  # a is full, the peer takes the spill
        r.release("pool", "remote/rm")
        assert r.choose("pool", {"a": "starting"}) == "remote/rm"  # a is still full, the peer is free again

    def test_each_selector_keeps_its_own_reservations(self):
        r = router("""
            selectors:
              one: {strategy: spillover, targets: [a, b]}
              two: {strategy: spillover, targets: [a, b]}
        """)
        assert r.choose("one", {}) == "a"
        assert r.choose("two", {}) == "a"
        assert r.choose("one", {}) == "b"

    def test_spillover_defaults_to_one_reservation_per_target(self):
        config = load("""
            selectors:
              pool: {strategy: spillover, targets: [a, b]}
        """)
        assert config.selectors["pool"].spillover == 1
        r = SelectorRouter(config)
        assert [r.choose("pool", {}) for _ in range(2)] == ["a", "b"]

    def test_release_for_other_selectors_is_ignored(self):
        r = router("""
            selectors:
              pool: {strategy: spillover, targets: [a, b]}
              p: {strategy: pin, targets: [a]}
        """)
        assert r.choose("pool", {}) == "a"
        r.release("p", "a")
        r.release("nope", "a")
        assert r.choose("pool", {}) == "b"

    def test_no_target_is_handed_out_when_all_are_stopping_or_shut_down(self):
        r = spillover("[a, b, c]")
        gone = {"a": "stopping", "b": "stopping", "c": "shutdown"}
        with pytest.raises(NoSelectorTarget, match="'pool' has no available spillover targets"):
            r.choose("pool", gone)


class TestSelectorConfig:
    def test_unknown_targets_are_dropped_with_a_warning(self):
        config = load("""
            selectors:
              s: {strategy: pin, targets: [ghost, b]}
        """)
        assert config.selectors["s"].targets == ("b",)
        assert any("unknown model 'ghost'" in p.message for p in config.warnings)
        assert SelectorRouter(config).choose("s", {}) == "b"

    def test_a_selector_cannot_target_a_selector(self):
        with pytest.raises(ConfigError) as info:
            load("""
                selectors:
                  inner: {strategy: pin, targets: [a]}
                  outer: {strategy: pin, targets: [inner]}
            """)
        assert "selectors cannot target selectors" in str(info.value)

    def test_a_selector_id_cannot_reuse_a_model_id_or_alias(self):
        for taken in ("a", "alias-a", "variant"):
            with pytest.raises(ConfigError) as info:
                load(f"""
                    selectors:
                      {taken}: {{strategy: pin, targets: [b]}}
                """)
            assert "conflicts with a model id or alias" in str(info.value), taken


class TestProfiles:
    PROFILES = """
        selectors:
          coder: {strategy: pin, targets: [b]}
        profiles:
          coding:
            description: coding mode
            pins:
              llm-code: coder
              a: b
              llm-plan: alias-a
              image-gen: ~
              blank: ""
              llm-remote: remote/rm
    """

    def test_no_active_profile_leaves_the_id_alone(self):
        assert apply_profile(None, "a") == "a"

    def test_pins_replace_the_requested_id(self):
        coding = load(self.PROFILES).profiles["coding"]
        assert apply_profile(coding, "llm-plan") == "alias-a"
        assert apply_profile(coding, "llm-remote") == "remote/rm"

    def test_a_pin_overrides_an_existing_model_id(self):
        coding = load(self.PROFILES).profiles["coding"]
        assert apply_profile(coding, "a") == "b"

    def test_ids_without_a_pin_pass_through(self):
        coding = load(self.PROFILES).profiles["coding"]
        assert apply_profile(coding, "b") == "b"
        assert apply_profile(coding, "alias-a") == "alias-a"

    @pytest.mark.parametrize("disabled", ["image-gen", "blank"])
    def test_a_null_or_empty_pin_disables_the_id(self, disabled):
        coding = load(self.PROFILES).profiles["coding"]
        with pytest.raises(ModelDisabled) as info:
            apply_profile(coding, disabled)
        assert disabled in str(info.value) and "coding" in str(info.value)

    def test_a_pin_may_target_a_selector_which_then_chooses(self):
        config = load(self.PROFILES)
        routed = apply_profile(config.profiles["coding"], "llm-code")
        r = SelectorRouter(config)
        assert r.is_selector(routed)
        assert r.choose(routed, {}) == "b"

    def test_a_pin_to_an_unknown_model_is_dropped_with_a_warning(self):
        config = load("""
            profiles:
              p:
                pins: {llm: ghost, other: a}
        """)
        assert apply_profile(config.profiles["p"], "llm") == "llm"
        assert any("unknown model 'ghost'" in p.message for p in config.warnings)
