"""core.policy: ordered rules compiled once; first deciding rule wins; hits counted; body rewrites."""

from __future__ import annotations

import time

import msgspec
import pytest

from core.policy import (
    CompiledPolicy,
    HeaderMatcher,
    PolicyError,
    PolicyRule,
    RequestFacts,
    RouteTarget,
    RuleHits,
    RuleMatch,
    SamplingOverrides,
    body_shape,
    compile_pattern,
    compile_policy,
    inject_system_prompt,
)
from core.vault import CredentialBinding

CHAT = "/v1/chat/completions"


def facts(model: str | None = "qwen3", path: str = CHAT, key_id: str | None = "k1", headers=None, body_size=100):
    return RequestFacts(path=path, model=model, key_id=key_id, headers=headers or {}, body_size=body_size)


def rule(rule_id: str, position: int = 0, **kwargs) -> PolicyRule:
    return PolicyRule(id=rule_id, position=position, **kwargs)


class TestPatterns:
    @pytest.mark.parametrize(
        ("pattern", "value", "expected"),
        [
            ("gpt-4o", "gpt-4o", True),
            ("gpt-4o", "gpt-4o-mini", False),
            ("gpt-*", "gpt-4o-mini", True),
            ("*", "", True),
            ("/v1/*", "/v1/chat/completions", True),  # * crosses /
            ("qwen?", "qwen3", True),
            ("Qwen*", "qwen3", False),  # case-sensitive
            ("re:^qwen.*instruct$", "qwen2.5-7b-instruct", True),
            ("re:instruct", "qwen2.5-7b-instruct-q4", True),  # searched, not anchored
            ("re:(?i)^QWEN", "qwen3", True),
            ("re:^llama", "qwen3", False),
        ],
    )
    def test_glob_and_regex(self, pattern, value, expected):
        assert compile_pattern(pattern)(value) is expected


class TestMatching:
    def test_no_rules_means_continue_with_the_requested_model(self):
        decision = compile_policy([]).evaluate(facts())
        assert (decision.action, decision.model, decision.rule_id, decision.hit) == ("continue", "qwen3", None, False)

    def test_a_rule_without_conditions_matches_everything(self):
        decision = compile_policy([rule("all", action="reject")]).evaluate(facts(model=None, key_id=None))
        assert decision.action == "reject"

    def test_every_set_condition_must_hold(self):
        only = rule(
            "r", action="reject",
            match=RuleMatch(path="/v1/chat/*", model="qwen*", key_ids=("k1", "k2"),
                            headers=(HeaderMatcher("X-Team", "re:^(ml|infra)$"),)),
        )  # fmt: skip
        policy = compile_policy([only])
        team = {"x-team": "ml"}
        assert policy.evaluate(facts(headers=team)).action == "reject"
        assert policy.evaluate(facts(headers=team, path="/v1/embeddings")).action == "continue"
        assert policy.evaluate(facts(headers=team, model="llama")).action == "continue"
        assert policy.evaluate(facts(headers=team, key_id="k3")).action == "continue"
        assert policy.evaluate(facts(headers=team, key_id=None)).action == "continue"
        assert policy.evaluate(facts(headers={"x-team": "sales"})).action == "continue"
        assert policy.evaluate(facts(headers={})).action == "continue"  # an absent header never matches

    def test_a_model_condition_never_matches_a_request_without_a_model(self):
        policy = compile_policy([rule("r", action="reject", match=RuleMatch(model="*"))])
        assert policy.evaluate(facts(model=None)).action == "continue"

    def test_disabled_rules_are_skipped(self):
        policy = compile_policy([rule("off", enabled=False, action="reject")])
        assert policy.evaluate(facts()).action == "continue"
        assert len(policy) == 0


class TestOrderAndActions:
    def test_first_deciding_rule_wins_in_position_order(self):
        policy = compile_policy([
            rule("late", position=20, action="reject", reject_status=451, reject_message="late"),
            rule("early", position=10, action="rewrite", rewrite_model="llama3"),
        ])  # fmt: skip
        decision = policy.evaluate(facts())
        assert (decision.rule_id, decision.action, decision.model, decision.rewritten) == (
            "early", "rewrite", "llama3", True,
        )  # fmt: skip
        assert decision.matched == ("early",)  # evaluation stopped: "late" was not reached

    def test_equal_positions_are_ordered_by_id(self):
        policy = compile_policy([rule("b", action="reject"), rule("a", action="rewrite", rewrite_model="m")])
        assert policy.evaluate(facts()).rule_id == "a"

    def test_continue_rules_count_hits_and_evaluation_goes_on(self):
        policy = compile_policy([
            rule("count-all", position=1),
            rule("count-qwen", position=2, match=RuleMatch(model="qwen*")),
            rule("block", position=3, action="reject", reject_status=403, reject_message="no"),
        ])  # fmt: skip
        decision = policy.evaluate(facts())
        assert decision.action == "reject" and decision.rule_id == "block"
        assert (decision.reject_status, decision.reject_message) == (403, "no")
        assert decision.matched == ("count-all", "count-qwen", "block")
        assert policy.hits.peek() == {"count-all": 1, "count-qwen": 1, "block": 1}

    def test_only_continue_rules_report_the_last_one(self):
        policy = compile_policy([rule("a", position=1), rule("b", position=2), rule("c", position=3,
                                match=RuleMatch(model="nope"))])  # fmt: skip
        decision = policy.evaluate(facts())
        assert (decision.action, decision.rule_id, decision.matched) == ("continue", "b", ("a", "b"))

    def test_route_to_a_direct_upstream_with_its_model(self):
        target = RouteTarget("upstream", "anthropic", model="claude-sonnet-4-5", base_url="https://api.anthropic.com",
                             auth_passthrough=True)  # fmt: skip
        policy = compile_policy([rule("r", action="route", target=target, match=RuleMatch(model="claude-*"))])
        decision = policy.evaluate(facts(model="claude-latest"))
        assert decision.action == "route" and decision.target is target
        assert decision.model == "claude-sonnet-4-5" and decision.rewritten

    def test_route_local_uses_its_value_as_the_model_and_peer_keeps_the_requested_one(self):
        local = compile_policy([rule("r", action="route", target=RouteTarget("local", "qwen3-8b"))])
        assert local.evaluate(facts(model="gpt-4o")).model == "qwen3-8b"
        peer = compile_policy([rule("r", action="route", target=RouteTarget("peer", "box2"))])
        decision = peer.evaluate(facts(model="gpt-4o"))
        assert (decision.model, decision.rewritten, decision.target.value) == ("gpt-4o", False, "box2")


class TestBodyLimitsAndBindings:
    def test_a_matching_rule_rejects_a_larger_body_with_413_before_its_action(self):
        policy = compile_policy([
            rule("small-only", position=1, max_body_bytes=1000, match=RuleMatch(path="/v1/embeddings")),
            rule("route", position=2, action="route", target=RouteTarget("peer", "p")),
        ])  # fmt: skip
        big = policy.evaluate(facts(path="/v1/embeddings", body_size=1001))
        assert (big.action, big.reject_status, big.rule_id) == ("reject", 413, "small-only")
        assert "1001" in big.reject_message and "1000" in big.reject_message
        assert policy.evaluate(facts(path="/v1/embeddings", body_size=1000)).action == "route"
        assert policy.evaluate(facts(path=CHAT, body_size=10**9)).action == "route"  # the rule does not match

    def test_bindings_accumulate_from_continue_rules_and_the_decider(self):
        org = CredentialBinding("org-id", header="openai-organization")
        key = CredentialBinding("openai-prod", header="authorization", template="Bearer {secret}")
        policy = compile_policy([
            rule("org", position=1, bindings=(org,)),
            rule("to-openai", position=2, action="route", bindings=(key,),
                 target=RouteTarget("upstream", "openai", base_url="https://api.openai.com")),
        ])  # fmt: skip
        decision = policy.evaluate(facts())
        assert decision.bindings == (org, key)
        assert decision.injects_credentials

    def test_a_reject_carries_no_bindings(self):
        policy = compile_policy([
            rule("org", position=1, bindings=(CredentialBinding("c", header="x-k"),)),
            rule("no", position=2, action="reject"),
        ])  # fmt: skip
        assert policy.evaluate(facts()).bindings == ()


class TestHits:
    def test_hits_are_drained_for_the_database_and_survive_a_recompile(self):
        hits = RuleHits()
        first = compile_policy([rule("a"), rule("b", match=RuleMatch(model="x"))], hits)
        for _ in range(3):
            first.evaluate(facts())
        second = compile_policy([rule("a")], hits)  # an admin edited the rules
        second.evaluate(facts())
        assert hits.drain() == {"a": 4}
        assert hits.drain() == {}


class TestValidation:
    def test_every_problem_is_reported_with_its_rule_and_field(self):
        bad = [
            rule("re", match=RuleMatch(model="re:(unclosed")),
            rule("rw", action="rewrite"),
            rule("rj", action="reject", reject_status=200),
            rule("rt", action="route"),
            rule("up", action="route", target=RouteTarget("upstream", base_url="api.openai.com")),
            rule("pe", action="route", target=RouteTarget("peer")),
            rule("hd", match=RuleMatch(headers=(HeaderMatcher(" "),))),
            rule("bd", bindings=(CredentialBinding("bad slug!", header="x-k", template="no secret"),)),
            rule("sz", max_body_bytes=-1),
            rule("re"),
        ]
        with pytest.raises(PolicyError) as info:
            compile_policy(bad)
        where = {(p.rule_id, p.field) for p in info.value.problems}
        assert where == {
            ("re", "match.model"), ("rw", "rewrite_model"), ("rj", "reject_status"), ("rt", "target"),
            ("up", "target.base_url"), ("pe", "target.value"), ("hd", "match.headers[0].name"),
            ("bd", "bindings[0]"), ("sz", "max_body_bytes"), ("re", "id"),
        }  # fmt: skip
        assert "unclosed" in str(info.value)

    def test_rules_convert_from_admin_json_with_type_checks(self):
        payload = {
            "id": "r1", "position": 5, "action": "route",
            "match": {"model": "gpt-*", "headers": [{"name": "x-team", "pattern": "ml"}]},
            "target": {"kind": "upstream", "value": "openai", "base_url": "https://api.openai.com"},
            "bindings": [{"credential": "openai-prod", "header": "authorization", "template": "Bearer {secret}"}],
        }  # fmt: skip
        converted = msgspec.convert(payload, PolicyRule)
        assert converted.match.headers[0] == HeaderMatcher("x-team", "ml")
        assert converted.bindings[0].credential == "openai-prod"
        assert msgspec.convert(msgspec.to_builtins(converted), PolicyRule) == converted
        with pytest.raises(msgspec.ValidationError, match="action"):
            msgspec.convert({"id": "r", "action": "explode"}, PolicyRule)


class TestSamplingOverrides:
    def test_openai_bodies_get_every_set_field(self):
        body = {"model": "m", "temperature": 1.2, "messages": []}
        applied = SamplingOverrides(temperature=0.2, top_k=20, repeat_penalty=1.1).apply(body, "openai_chat")
        assert applied == ("temperature", "top_k", "repeat_penalty")
        assert body == {"model": "m", "temperature": 0.2, "messages": [], "top_k": 20, "repeat_penalty": 1.1}

    def test_anthropic_bodies_get_only_fields_that_api_defines(self):
        body = {"model": "m", "max_tokens": 10}
        overrides = SamplingOverrides(temperature=0.5, top_p=0.9, top_k=40, presence_penalty=1.0, repeat_penalty=1.1)
        assert overrides.apply(body, "anthropic_messages") == ("temperature", "top_p", "top_k")
        assert "presence_penalty" not in body and "repeat_penalty" not in body

    def test_empty(self):
        assert SamplingOverrides().empty and not SamplingOverrides(top_p=1.0).empty


class TestSystemPrompt:
    def test_openai_chat_gets_a_system_message_first(self):
        body = {"messages": [{"role": "user", "content": "hi"}]}
        assert inject_system_prompt(body, "Be brief.", "openai_chat")
        assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]

    def test_openai_chat_merges_into_an_existing_leading_system_message(self):
        body = {"messages": [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "hi"}]}
        inject_system_prompt(body, "Be brief.", "openai_chat")
        assert body["messages"][0] == {"role": "system", "content": "Be brief.\n\nYou are a pirate."}
        assert len(body["messages"]) == 2
        parts = {"messages": [{"role": "developer", "content": [{"type": "text", "text": "x"}]}]}
        inject_system_prompt(parts, "Be brief.", "openai_chat")
        assert parts["messages"][0]["content"][0] == {"type": "text", "text": "Be brief."}

    def test_responses_instructions(self):
        body = {"input": "hi"}
        inject_system_prompt(body, "Be brief.", "openai_responses")
        assert body["instructions"] == "Be brief."
        body = {"input": "hi", "instructions": "Speak French."}
        inject_system_prompt(body, "Be brief.", "openai_responses")
        assert body["instructions"] == "Be brief.\n\nSpeak French."

    def test_anthropic_system_string_or_blocks(self):
        body = {"messages": []}
        inject_system_prompt(body, "Be brief.", "anthropic_messages")
        assert body["system"] == "Be brief."
        body = {"system": "Old.", "messages": []}
        inject_system_prompt(body, "Be brief.", "anthropic_messages")
        assert body["system"] == "Be brief.\n\nOld."
        cached = {"type": "text", "text": "Old.", "cache_control": {"type": "ephemeral"}}
        body = {"system": [cached], "messages": []}
        inject_system_prompt(body, "Be brief.", "anthropic_messages")
        assert body["system"] == [{"type": "text", "text": "Be brief."}, cached]

    def test_shapes_without_a_system_role_or_with_odd_fields_are_left_alone(self):
        body = {"prompt": "hi"}
        assert not inject_system_prompt(body, "Be brief.", "openai_completions") and body == {"prompt": "hi"}
        assert not inject_system_prompt({"messages": "oops"}, "Be brief.", "openai_chat")
        assert not inject_system_prompt({"system": 5}, "Be brief.", "anthropic_messages")
        assert not inject_system_prompt({"messages": []}, "", "openai_chat")

    def test_body_shape_by_path(self):
        assert body_shape("/v1/messages") == "anthropic_messages"
        assert body_shape("/v1/responses") == "openai_responses"
        assert body_shape("/v1/embeddings") is None


def fifty_rules() -> list[PolicyRule]:
    rules = []
    for i in range(49):
        kind = i % 4
        match = [
            RuleMatch(model=f"model-{i}-*"),
            RuleMatch(path="/v1/embeddings", model=f"re:^emb-{i}$"),
            RuleMatch(key_ids=(f"key-{i}",), model="*"),
            RuleMatch(headers=(HeaderMatcher("x-team", f"team-{i}"),)),
        ][kind]
        rules.append(rule(f"r{i}", position=i, match=match, action="reject" if i % 2 else "continue"))
    rules.append(
        rule("final", position=99, action="route", target=RouteTarget("peer", "p"), match=RuleMatch(model="*"))
    )
    return rules


def test_fifty_rule_policy_micro_benchmark(capsys):
    """Not a pass/fail bound: prints µs per evaluation of a 50-rule policy that walks to its last rule."""
    policy: CompiledPolicy = compile_policy(fifty_rules())
    request = facts(model="qwen3", headers={"x-team": "ml", "user-agent": "bench"})
    assert policy.evaluate(request).rule_id == "final"
    runs = 10_000
    started = time.perf_counter()
    for _ in range(runs):
        policy.evaluate(request)
    elapsed = time.perf_counter() - started
    assert policy.hits.peek()["final"] == runs + 1
    with capsys.disabled():
        print(f"\n[policy bench] 50 rules, {runs} evaluations: {elapsed / runs * 1e6:.2f} µs/eval")
