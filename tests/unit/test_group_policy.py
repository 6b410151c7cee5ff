"""GroupPolicy: llama-swap's `swap`, `exclusive` and `persistent` group flags."""

from __future__ import annotations

import textwrap

import pytest

from core.config import load_config_text
from core.config.schema import GroupConfig
from core.swap.policy import GroupPolicy


def groups(**specs: tuple[tuple[str, ...], dict[str, bool]]) -> GroupPolicy:
    return GroupPolicy({gid: GroupConfig(id=gid, members=members, **flags) for gid, (members, flags) in specs.items()})


def models_yaml(*ids: str) -> str:
    return "models:\n" + "".join(
        f'  {i}: {{cmd: "srv --port ${{PORT}}", proxy: "http://127.0.0.1:${{PORT}}"}}\n' for i in ids
    )


class TestWithinAGroup:
    def test_swap_true_runs_one_member_at_a_time(self):
        p = groups(g=(("a", "b", "c"), {"swap": True, "exclusive": True}))
        assert p.evictions("b", ["a", "c"]) == ["a", "c"]

    def test_swap_false_lets_members_run_together(self):
        p = groups(g=(("a", "b", "c"), {"swap": False, "exclusive": False}))
        assert p.evictions("b", ["a", "c"]) == []

    def test_persistent_does_not_stop_swapping_inside_its_own_group(self):
        p = groups(keep=(("a", "b"), {"swap": True, "exclusive": False, "persistent": True}))
        assert p.evictions("b", ["a"]) == ["a"]


class TestAcrossGroups:
    def test_an_exclusive_group_stops_every_other_group(self):
        p = groups(
            one=(("a",), {"swap": True, "exclusive": True}),
            two=(("b", "c"), {"swap": False, "exclusive": False}),
        )
        assert p.evictions("a", ["b", "c"]) == ["b", "c"]

    def test_a_non_exclusive_group_leaves_other_groups_alone(self):
        p = groups(
            one=(("a",), {"swap": True, "exclusive": False}),
            two=(("b",), {"swap": True, "exclusive": True}),
        )
        # llama-swap's documented gotcha: even an exclusive group's running member survives
        assert p.evictions("a", ["b"]) == []

    def test_persistent_groups_survive_exclusive_ones(self):
        p = groups(
            main=(("a", "b"), {"swap": True, "exclusive": True}),
            forever=(("f1", "f2"), {"swap": False, "exclusive": False, "persistent": True}),
            other=(("o",), {"swap": True, "exclusive": False}),
        )
        assert p.evictions("a", ["b", "f1", "f2", "o"]) == ["b", "o"]

    def test_a_persistent_member_still_follows_its_own_exclusive_flag(self):
        p = groups(
            main=(("a",), {"swap": True, "exclusive": True}),
            forever=(("f",), {"swap": True, "exclusive": True, "persistent": True}),
        )
        assert p.evictions("f", ["a"]) == ["a"]

    @pytest.mark.parametrize(
        ("swap", "exclusive", "persistent_other", "expected"),
        [
            (True, True, False, ["sibling", "stranger"]),
            (True, True, True, ["sibling"]),
            (True, False, False, ["sibling"]),
            (False, True, False, ["stranger"]),
            (False, True, True, []),
            (False, False, False, []),
        ],
    )
    def test_flag_combinations(self, swap, exclusive, persistent_other, expected):
        p = groups(
            mine=(("target", "sibling"), {"swap": swap, "exclusive": exclusive}),
            theirs=(("stranger",), {"swap": True, "exclusive": True, "persistent": persistent_other}),
        )
        assert p.evictions("target", ["sibling", "stranger"]) == expected

    def test_models_outside_every_group_are_never_evicted(self):
        # e.g. peer models: the group policy only governs local group members
        p = groups(g=(("a", "b"), {"swap": True, "exclusive": True}))
        assert p.evictions("a", ["b", "peer/x"]) == ["b"]
        assert p.evictions("peer/x", ["a"]) == []


class TestFromConfig:
    def test_no_groups_means_one_model_at_a_time(self):
        p = GroupPolicy(load_config_text(models_yaml("a", "b", "c")).groups)
        assert p.evictions("a", ["b", "c"]) == ["b", "c"]
        assert p.evictions("a", []) == []

    def test_models_left_out_of_groups_share_the_default_swapping_group(self):
        text = models_yaml("a", "b", "x", "y") + textwrap.dedent("""
            groups:
              together:
                swap: false
                exclusive: false
                members: [a, b]
        """)
        p = GroupPolicy(load_config_text(text).groups)
        assert p.evictions("a", ["b"]) == []
        # the default group is swapping and exclusive: x stops y and the non-exclusive group
        assert p.evictions("x", ["a", "b", "y"]) == ["a", "b", "y"]
        # and starting a non-exclusive member leaves the default group's model running
        assert p.evictions("a", ["x"]) == []

    def test_the_routing_form_means_the_same_as_the_legacy_form(self):
        legacy = models_yaml("a", "b", "c") + "groups:\n  g: {swap: true, exclusive: false, members: [a, b]}\n"
        routing = models_yaml("a", "b", "c") + textwrap.dedent("""
            routing:
              router:
                use: group
                settings:
                  groups:
                    g: {swap: true, exclusive: false, members: [a, b]}
        """)
        for text in (legacy, routing):
            p = GroupPolicy(load_config_text(text).groups)
            assert p.evictions("a", ["b", "c"]) == ["b"]
            assert p.evictions("c", ["a"]) == ["a"]
