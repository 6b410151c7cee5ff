"""core.routing: llama-swap's request filters for local models, and how a requested name is resolved."""

from __future__ import annotations

import textwrap

from core.config import load_config_text
from core.routing import needs_rewrite, resolve_target, rewrite_body

FILTERED = """
models:
  m:
    cmd: "srv --port ${PORT}"
    aliases: [m-alias]
    filters:
      stripParams: "temperature, top_p ,, top_k, model"
      setParams:
        top_p: 0.9
        model: hijacked
        provider: {zdr: true, order: [a, b]}
      setParamsByID:
        "${MODEL_ID}":
          chat_template_kwargs: {reasoning_effort: medium}
        "${MODEL_ID}:high":
          chat_template_kwargs: {reasoning_effort: high}
          top_p: 0.5
          model: also-hijacked
        "${MODEL_ID}:plain": {}
  plain: {cmd: "srv --port ${PORT}"}
  renamed:
    cmd: "srv --port ${PORT}"
    useModelName: "org/Renamed-7B"
"""


def load(text: str):
    return load_config_text(textwrap.dedent(text))


def rewrite(config, requested: str, body: dict) -> dict:
    target = resolve_target(config, requested)
    assert target is not None, requested
    return rewrite_body(dict(body), target)


class TestStripParams:
    def test_listed_keys_are_removed_and_others_kept(self):
        config = load(FILTERED)
        body = rewrite(config, "m", {"model": "m", "temperature": 1.2, "top_k": 40, "max_tokens": 64})
        assert "temperature" not in body and "top_k" not in body
        assert body["max_tokens"] == 64

    def test_model_cannot_be_stripped(self):
        config = load(FILTERED)
        assert config.models["m"].filters.strip_params == ("temperature", "top_k", "top_p")
        assert rewrite(config, "m", {"model": "m"})["model"] == "m"

    def test_stripping_an_absent_key_is_harmless(self):
        body = rewrite(load(FILTERED), "m", {"model": "m", "messages": []})
        assert body["messages"] == []


class TestSetParams:
    def test_values_are_set_and_override_the_client(self):
        body = rewrite(load(FILTERED), "m-alias", {"model": "m-alias", "top_p": 0.1})
        assert body["top_p"] == 0.9
        assert body["provider"] == {"zdr": True, "order": ["a", "b"]}

    def test_a_stripped_key_can_still_be_set(self):
        # top_p is both stripped and set: strip runs first, so the configured value is what goes upstream
        body = rewrite(load(FILTERED), "m-alias", {"model": "m-alias"})
        assert body["top_p"] == 0.9

    def test_model_cannot_be_set_and_the_attempt_is_a_warning(self):
        config = load(FILTERED)
        assert "model" not in config.models["m"].filters.set_params
        assert any(p.path == "models.m.filters.setParams.model" for p in config.warnings)
        assert rewrite(config, "m", {"model": "m"})["model"] == "m"


class TestSetParamsByID:
    def test_applies_only_to_the_id_that_was_requested(self):
        config = load(FILTERED)
        by_id = rewrite(config, "m", {"model": "m"})
        high = rewrite(config, "m:high", {"model": "m:high"})
        alias = rewrite(config, "m-alias", {"model": "m-alias"})
        assert by_id["chat_template_kwargs"] == {"reasoning_effort": "medium"}
        assert high["chat_template_kwargs"] == {"reasoning_effort": "high"}
        assert "chat_template_kwargs" not in alias

    def test_runs_after_set_params_and_overrides_them(self):
        config = load(FILTERED)
        assert rewrite(config, "m:high", {"model": "m:high"})["top_p"] == 0.5
        assert rewrite(config, "m", {"model": "m"})["top_p"] == 0.9

    def test_keys_become_aliases_of_their_model(self):
        config = load(FILTERED)
        assert config.real_model_id("m:high") == "m"
        assert config.real_model_id("m:plain") == "m"
        target = resolve_target(config, "m:high")
        assert (target.kind, target.model_id, target.requested) == ("local", "m", "m:high")

    def test_model_is_never_overridden_by_id(self):
        config = load(FILTERED)
        assert "model" not in config.models["m"].filters.set_params_by_id["m:high"]
        body = rewrite(config, "m:high", {"model": "m:high"})
        assert body["model"] == "m:high"


class TestModelField:
    def test_the_requested_id_is_forwarded_as_is(self):
        for requested in ("m", "m-alias", "m:high", "plain"):
            assert rewrite(load(FILTERED), requested, {"model": requested})["model"] == requested

    def test_use_model_name_replaces_it(self):
        assert rewrite(load(FILTERED), "renamed", {"model": "renamed"})["model"] == "org/Renamed-7B"

    def test_a_body_without_model_does_not_gain_one(self):
        body = rewrite(load(FILTERED), "renamed", {"input": "hi"})
        assert body == {"input": "hi"}


class TestNeedsRewrite:
    def test_an_unfiltered_model_under_its_own_name_passes_through(self):
        config = load(FILTERED)
        assert not needs_rewrite(resolve_target(config, "plain"))

    def test_filters_or_a_rename_need_a_rewrite(self):
        config = load(FILTERED)
        assert needs_rewrite(resolve_target(config, "m"))
        assert needs_rewrite(resolve_target(config, "renamed"))

    def test_set_params_by_id_alone_needs_a_rewrite_only_for_its_keys(self):
        config = load("""
            models:
              v:
                cmd: "srv --port ${PORT}"
                aliases: [v-alias]
                filters:
                  setParamsByID:
                    "v:fast": {speculative: true}
        """)
        assert needs_rewrite(resolve_target(config, "v:fast"))
        assert not needs_rewrite(resolve_target(config, "v"))
        assert not needs_rewrite(resolve_target(config, "v-alias"))


PRECEDENCE = """
models:
  llama:
    cmd: "srv --port ${PORT}"
    aliases: [gpt]
    filters:
      setParamsByID:
        "llama:think": {think: true}
peers:
  alpha:
    proxy: http://alpha.example:8080
    models: [llama, gpt, "llama:think", shared, solo, "embeddings/nomic", "beta/x"]
  beta:
    proxy: http://beta.example:8080
    models: [shared, x]
"""


class TestResolutionPrecedence:
    def test_a_local_model_wins_over_a_peer_with_the_same_id(self):
        target = resolve_target(load(PRECEDENCE), "llama")
        assert (target.kind, target.model_id) == ("local", "llama")

    def test_an_alias_wins_over_a_peer_with_the_same_id(self):
        target = resolve_target(load(PRECEDENCE), "gpt")
        assert (target.kind, target.model_id) == ("local", "llama")

    def test_a_set_params_by_id_key_wins_over_a_peer_with_the_same_id(self):
        target = resolve_target(load(PRECEDENCE), "llama:think")
        assert (target.kind, target.model_id) == ("local", "llama")

    def test_the_qualified_peer_name_always_reaches_the_peer(self):
        config = load(PRECEDENCE)
        for name, model in (("alpha/llama", "llama"), ("alpha/gpt", "gpt"), ("alpha/llama:think", "llama:think")):
            target = resolve_target(config, name)
            assert (target.kind, target.peer.id, target.model_id) == ("peer", "alpha", model), name
            assert target.base_url == "http://alpha.example:8080"

    def test_an_unqualified_id_served_by_exactly_one_peer(self):
        target = resolve_target(load(PRECEDENCE), "solo")
        assert (target.kind, target.peer.id, target.model_id, target.display_id) == (
            "peer", "alpha", "solo", "alpha/solo",
        )  # fmt: skip

    def test_an_unqualified_id_served_by_two_peers_is_ambiguous(self):
        config = load(PRECEDENCE)
        assert resolve_target(config, "shared") is None
        assert resolve_target(config, "alpha/shared").peer.id == "alpha"
        assert resolve_target(config, "beta/shared").peer.id == "beta"

    def test_peer_model_ids_may_contain_slashes(self):
        config = load(PRECEDENCE)
        for name in ("embeddings/nomic", "alpha/embeddings/nomic"):
            target = resolve_target(config, name)
            assert (target.peer.id, target.model_id) == ("alpha", "embeddings/nomic"), name

    def test_a_qualified_name_wins_over_an_unqualified_id_that_looks_the_same(self):
        # alpha serves a model literally called "beta/x"; "beta/x" still means peer beta's model x
        target = resolve_target(load(PRECEDENCE), "beta/x")
        assert (target.peer.id, target.model_id) == ("beta", "x")
        assert resolve_target(load(PRECEDENCE), "alpha/beta/x").model_id == "beta/x"

    def test_unknown_names_resolve_to_nothing(self):
        config = load(PRECEDENCE)
        for name in ("nope", "gamma/llama", "alpha/nope", "alpha/"):
            assert resolve_target(config, name) is None, name

    def test_peer_filters_do_not_leak_onto_local_models(self):
        config = load("""
            models:
              llama: {cmd: "srv --port ${PORT}"}
            peers:
              alpha:
                proxy: http://alpha.example:8080
                models: [llama]
                filters: {stripParams: temperature, setParams: {zdr: true}}
        """)
        local = rewrite(config, "llama", {"model": "llama", "temperature": 0.3})
        remote = rewrite(config, "alpha/llama", {"model": "alpha/llama", "temperature": 0.3})
        assert local == {"model": "llama", "temperature": 0.3}
        assert remote == {"model": "llama", "zdr": True}
