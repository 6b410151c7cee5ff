"""core.catalog: the `/v1/models` listing, shaped as llama-swap shapes it."""

from __future__ import annotations

import textwrap

from core.catalog import known_model_ids, list_models
from core.config import load_config_text

CATALOG = """
macros:
  temp: 0.7
  ctx: 8192
models:
  zeta:
    cmd: "srv --port ${PORT}"
    name: "  Zeta Chat  "
    description: " A helpful model "
    aliases: [alpha-alias, "omega"]
    metadata:
      port: ${PORT}
      temperature: ${temp}
      ctx: "${ctx}"
      note: "ctx=${ctx} on ${MODEL_ID}"
      tags: [chat, "${MODEL_ID}"]
  beta: {cmd: "srv --port ${PORT}", name: "   "}
  hidden:
    cmd: "srv --port ${PORT}"
    unlisted: true
    aliases: [hidden-alias]
  thinker:
    cmd: "srv --port ${PORT}"
    filters:
      setParamsByID:
        "${MODEL_ID}": {think: true}
        "${MODEL_ID}:fast": {think: false}
peers:
  gamma:
    proxy: http://gamma.example:8080
    models: [remote-one]
selectors:
  picker:
    strategy: warm
    targets: [beta, zeta]
    name: Picker
    description: Whatever is loaded
    metadata: {purpose: coding}
  secret: {strategy: pin, targets: [zeta], unlisted: true}
"""


def load(text: str = CATALOG, *, aliases: bool = False):
    head = "includeAliasesInList: true\n" if aliases else ""
    return load_config_text(head + textwrap.dedent(text))


def by_id(records: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in records}


class TestListing:
    def test_sorted_by_id_across_models_peers_and_selectors(self):
        ids = [r["id"] for r in list_models(load())]
        assert ids == ["beta", "gamma/remote-one", "picker", "thinker", "zeta"]

    def test_sorted_including_aliases(self):
        ids = [r["id"] for r in list_models(load(aliases=True))]
        assert ids == sorted(ids)
        assert ids[0] == "alpha-alias"

    def test_openai_record_shape(self):
        record = by_id(list_models(load()))["beta"]
        assert record["object"] == "model"
        assert isinstance(record["created"], int) and record["created"] > 0
        assert record["owned_by"]

    def test_unlisted_models_and_their_aliases_are_hidden(self):
        ids = {r["id"] for r in list_models(load(aliases=True))}
        assert "hidden" not in ids
        assert "hidden-alias" not in ids
        assert "hidden" not in known_model_ids(load())

    def test_unlisted_selectors_are_hidden(self):
        ids = {r["id"] for r in list_models(load())}
        assert "picker" in ids
        assert "secret" not in ids

    def test_status_follows_the_running_models(self):
        records = by_id(list_models(load(), running={"zeta"}))
        assert records["zeta"]["status"] == {"value": "loaded"}
        assert records["beta"]["status"] == {"value": "unloaded"}


class TestAliases:
    def test_aliases_are_left_out_by_default(self):
        ids = {r["id"] for r in list_models(load())}
        assert not ids & {"alpha-alias", "omega", "thinker:fast"}

    def test_include_aliases_in_list_adds_one_record_per_alias(self):
        ids = [r["id"] for r in list_models(load(aliases=True))]
        for alias in ("alpha-alias", "omega", "thinker:fast"):
            assert ids.count(alias) == 1, alias
        # the setParamsByID key equal to the model id is not a second record of it
        assert ids.count("thinker") == 1

    def test_an_alias_duplicates_its_models_fields_except_the_id(self):
        records = by_id(list_models(load(aliases=True), running={"zeta"}))
        model, alias = records["zeta"], records["omega"]
        assert alias["name"] == model["name"] == "Zeta Chat"
        assert alias["description"] == model["description"] == "A helpful model"
        assert alias["status"] == model["status"] == {"value": "loaded"}
        for key in ("port", "temperature", "ctx", "note", "tags"):
            assert alias["meta"]["llamaswap"][key] == model["meta"]["llamaswap"][key], key
        assert alias["meta"]["llamaswap"]["modelID"] == "zeta"


class TestFields:
    def test_name_and_description_are_trimmed(self):
        zeta = by_id(list_models(load()))["zeta"]
        assert zeta["name"] == "Zeta Chat"
        assert zeta["description"] == "A helpful model"

    def test_blank_name_and_description_are_left_out(self):
        beta = by_id(list_models(load()))["beta"]
        assert "name" not in beta
        assert "description" not in beta

    def test_metadata_is_passed_through_under_meta_llamaswap(self):
        config = load()
        meta = by_id(list_models(config))["zeta"]["meta"]["llamaswap"]
        assert meta["note"] == "ctx=8192 on zeta"
        assert meta["tags"] == ["chat", "zeta"]

    def test_number_macros_stay_numbers(self):
        config = load()
        meta = by_id(list_models(config))["zeta"]["meta"]["llamaswap"]
        port = int(config.models["zeta"].args[-1])
        assert meta["port"] == port and type(meta["port"]) is int
        assert meta["temperature"] == 0.7 and type(meta["temperature"]) is float
        assert meta["ctx"] == 8192 and type(meta["ctx"]) is int

    def test_selector_name_description_and_metadata(self):
        picker = by_id(list_models(load(), running={"zeta"}))["picker"]
        assert picker["name"] == "Picker"
        assert picker["description"] == "Whatever is loaded"
        assert picker["meta"]["llamaswap"]["purpose"] == "coding"
        assert picker["meta"]["llamaswap"]["type"] == "selector"
        assert picker["status"] == {"value": "loaded"}  # warm: any running target counts

    def test_a_pin_selector_is_loaded_only_when_its_first_target_is(self):
        config = load("""
            models:
              a: {cmd: "srv --port ${PORT}"}
              b: {cmd: "srv --port ${PORT}"}
            selectors:
              p: {strategy: pin, targets: [a, b]}
        """)
        assert by_id(list_models(config, running={"b"}))["p"]["status"] == {"value": "unloaded"}
        assert by_id(list_models(config, running={"a"}))["p"]["status"] == {"value": "loaded"}

    def test_peer_models_are_listed_fully_qualified(self):
        record = by_id(list_models(load()))["gamma/remote-one"]
        assert record["meta"]["llamaswap"]["type"] == "peer"
        assert record["meta"]["llamaswap"]["peerID"] == "gamma"
