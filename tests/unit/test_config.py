"""core.config: llama-swap's config.yaml, loaded with the same meaning."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from core.config import ConfigError, load_config, load_config_text
from core.config.schema import split_command

EXAMPLE = Path(__file__).resolve().parents[2].parent / "shared/compat/llama-swap/config.example.yaml"


def load(text: str):
    return load_config_text(textwrap.dedent(text))


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return [str(p) for p in info.value.problems]


class TestSharedExample:
    def test_llama_swap_example_loads_when_its_env_vars_are_set(self, monkeypatch):
        for name, value in {
            "HOME": "/home/me",
            "API_KEY_1": "k1",
            "API_KEY_2": "k2",
            "OPENROUTER_API_KEY": "or",
        }.items():
            monkeypatch.setenv(name, value)
        config = load_config(EXAMPLE)
        gpt = config.models["gpt-oss-120b"]
        # macro-in-macro, model macros override globals, comment lines dropped from cmd
        assert gpt.args == [
            "/path/to/llama-server/llama-server-ec9e0301", "--port", "10002",
            "--model", "path/to/gpt-oss-120B.gguf", "--ctx-size", "16384", "--temperature", "0.7",
        ]  # fmt: skip
        # types kept in metadata: the port stays an int, the temperature a float
        assert gpt.metadata["port"] == 10002
        assert gpt.metadata["temperature"] == 0.7
        assert gpt.metadata["an_obj"]["c"] == [0.7, False, "model: gpt-oss-120b"]
        assert gpt.metadata["note"].startswith("The gpt-oss-120b is running on port 10002 temp=0.7")
        assert gpt.proxy == "http://127.0.0.1:8999"
        # setParamsByID keys became aliases
        assert config.real_model_id("gpt-oss-120b:high") == "gpt-oss-120b"
        assert config.real_model_id("gpt-4o-mini") == "gpt-oss-120b"
        assert config.api_keys == (
            "sk-hunter2",
            "sk-gyCPiKUcIfPlaM4OSMZekkprgijPx6+OsmQs8Rsg0xZ9qpy6gKWsIKqHOk+cgXVx",
            "k1",
            "k2",
        )
        assert config.peers["openrouter"].api_key == "or"
        assert config.peers["openrouter"].filters.strip_params == ("temperature", "top_p")
        assert config.health_check_timeout == 500
        assert config.start_port == 10001
        docker = config.models["docker-llama"]
        assert docker.stop_args == ["docker", "stop", "docker-llama"]
        assert config.models["unlisted-model"].unlisted

    def test_example_with_an_unset_env_var_fails_naming_it(self, monkeypatch):
        monkeypatch.setenv("HOME", "/home/me")
        monkeypatch.delenv("API_KEY_1", raising=False)
        with pytest.raises(ConfigError) as info:
            load_config(EXAMPLE)
        assert "API_KEY_1" in str(info.value)
        assert info.value.problems[0].position is not None


class TestMacros:
    def test_env_macro_is_substituted_first_and_unset_is_an_error(self, monkeypatch):
        monkeypatch.setenv("SY_MODELS", "/srv/models")
        config = load("""
            macros:
              dir: "${env.SY_MODELS}/gguf"
            models:
              m:
                cmd: server --model ${dir}/m.gguf --port ${PORT}
        """)
        assert config.models["m"].args[2] == "/srv/models/gguf/m.gguf"
        monkeypatch.delenv("SY_MODELS")
        problems = errors_of("""
            models:
              m:
                cmd: server ${env.SY_MODELS} --port ${PORT}
        """)
        assert "environment variable 'SY_MODELS' is not set" in problems[0]
        assert problems[0].startswith("line 4, column")

    def test_env_macro_in_a_comment_is_ignored(self, monkeypatch):
        monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
        config = load("""
            # apiKeys: ["${env.NOT_SET_ANYWHERE}"]
            models:
              m: {cmd: "server --port ${PORT}"}
        """)
        assert config.api_keys == ()

    def test_macro_in_macro_must_be_defined_before_use(self):
        config = load("""
            macros:
              ctx: 4096
              args: "--ctx-size ${ctx}"
            models:
              m: {cmd: "server ${args} --port ${PORT}"}
        """)
        assert config.models["m"].args == ["server", "--ctx-size", "4096", "--port", "5800"]
        problems = errors_of("""
            macros:
              args: "--ctx-size ${ctx}"
              ctx: 4096
            models:
              m: {cmd: "server ${args} --port ${PORT}"}
        """)
        assert "unknown macro '${ctx}'" in problems[0]
        assert "models.m.cmd" in problems[0]

    def test_model_macros_override_global_ones_and_model_id_is_available(self):
        config = load("""
            macros: {ctx: 1024}
            models:
              a:
                macros: {ctx: 8192}
                cmd: "server --alias ${MODEL_ID} -c ${ctx} --port ${PORT}"
              b:
                cmd: "server --alias ${MODEL_ID} -c ${ctx} --port ${PORT}"
        """)
        assert config.models["a"].args[1:4] == ["--alias", "a", "-c"] and config.models["a"].args[4] == "8192"
        assert config.models["b"].args[4] == "1024"

    @pytest.mark.parametrize("name", ["PORT", "PID", "MODEL_ID"])
    def test_reserved_macro_names_are_rejected(self, name):
        problems = errors_of(f"""
            macros:
              {name}: 1
            models:
              m: {{cmd: "server"}}
        """)
        assert f"macro name '{name}' is reserved" in problems[0]

    @pytest.mark.parametrize("name", ["has space", "dollar$", "x" * 64])
    def test_macro_name_rules(self, name):
        problems = errors_of(f"""
            macros:
              "{name}": 1
            models:
              m: {{cmd: "server"}}
        """)
        assert "macro name" in problems[0]

    def test_macro_values_must_be_scalars_and_not_self_referencing(self):
        assert (
            "invalid type"
            in errors_of("""
            macros: {a: [1, 2]}
            models: {m: {cmd: server}}
        """)[0]
        )
        assert (
            "self-reference"
            in errors_of("""
            macros: {a: "x ${a}"}
            models: {m: {cmd: server}}
        """)[0]
        )

    def test_types_are_kept_for_whole_value_macros(self):
        config = load("""
            macros: {n: 42, f: 0.5, flag: true, s: "text"}
            models:
              m:
                cmd: server --port ${PORT}
                metadata: {n: "${n}", f: "${f}", flag: "${flag}", s: "${s}", mixed: "n=${n} flag=${flag} f=${f}"}
        """)
        meta = config.models["m"].metadata
        assert meta == {"n": 42, "f": 0.5, "flag": True, "s": "text", "mixed": "n=42 flag=true f=0.5"}

    def test_pid_is_only_allowed_in_cmd_stop(self):
        config = load("""
            models:
              m: {cmd: "server --port ${PORT}", cmdStop: "kill -TERM ${PID}"}
        """)
        assert config.models["m"].stop_args == ["kill", "-TERM", "${PID}"]
        assert (
            "unknown macro '${PID}'"
            in errors_of("""
            models:
              m: {cmd: "server --pid ${PID}"}
        """)[0]
        )

    def test_multiline_cmd_drops_comment_lines_and_joins_continuations(self):
        config = load("""
            models:
              m:
                cmd: |
                  # the server binary
                  server \\
                    --model "my model.gguf"
                  # a comment with ${PORT} in it never becomes an argument
                  --port ${PORT}
        """)
        assert config.models["m"].args == ["server", "--model", "my model.gguf", "--port", "5800"]


class TestDefaults:
    def test_defaults_match_llama_swap(self):
        config = load("""
            models:
              b: {cmd: "server --port ${PORT}"}
              a: {cmd: "server --port ${PORT}"}
              fixed: {cmd: "server --port 9000", proxy: "http://127.0.0.1:9000"}
        """)
        assert config.health_check_timeout == 120
        assert config.start_port == 5800
        # ports are assigned in sorted model-id order to models whose cmd uses ${PORT}
        assert config.models["a"].proxy == "http://localhost:5800"
        assert config.models["b"].proxy == "http://localhost:5801"
        assert config.models["fixed"].proxy == "http://127.0.0.1:9000"
        a = config.models["a"]
        assert (a.check_endpoint, a.ttl, a.unload_timeout, a.concurrency_limit) == ("/health", 0, 10, 10)
        assert (a.unlisted, a.name, a.description, a.metadata, a.aliases) == (False, "", "", {}, ())

    def test_health_check_timeout_has_a_minimum_of_15(self):
        assert load("healthCheckTimeout: 3\nmodels: {m: {cmd: s}}").health_check_timeout == 15

    def test_ttl_minus_one_means_global_ttl(self):
        config = load("""
            globalTTL: 300
            models:
              inherit: {cmd: s, ttl: -1}
              default: {cmd: s}
              never: {cmd: s, ttl: 0}
              own: {cmd: s, ttl: 20}
        """)
        assert [config.models[m].ttl for m in ("inherit", "default", "never", "own")] == [300, 300, 0, 20]

    def test_unload_timeout_global_and_per_model(self):
        config = load("""
            unloadTimeout: 4
            models:
              a: {cmd: s}
              b: {cmd: s, unloadTimeout: 30}
        """)
        assert (config.models["a"].unload_timeout, config.models["b"].unload_timeout) == (4, 30)

    def test_check_endpoint_none_is_kept(self):
        assert load("models: {m: {cmd: s, checkEndpoint: none}}").models["m"].check_endpoint == "none"

    def test_start_port_moves_assignments(self):
        config = load("startPort: 7000\nmodels: {m: {cmd: 'server --port ${PORT}'}}")
        assert config.models["m"].proxy == "http://localhost:7000"


class TestValidation:
    def test_aliases_must_be_globally_unique(self):
        problems = errors_of("""
            models:
              a: {cmd: s, aliases: [shared]}
              b: {cmd: s, aliases: [shared]}
        """)
        assert "duplicate alias 'shared'" in problems[0]
        assert "models.b.aliases[0]" in problems[0]

    def test_every_error_is_reported_with_key_path_and_position(self):
        with pytest.raises(ConfigError) as info:
            load("""
                healthCheckTimeout: soon
                models:
                  m:
                    cmd: server
                    ttl: -5
                    concurrencyLimit: many
            """)
        rendered = [str(p) for p in info.value.problems]
        assert any("healthCheckTimeout: must be an integer" in r and r.startswith("line 2, column 1") for r in rendered)
        assert any("models.m.ttl: invalid TTL value -5" in r for r in rendered)
        assert any("models.m.concurrencyLimit: must be an integer" in r for r in rendered)

    def test_yaml_syntax_error_has_line_and_column(self):
        problems = errors_of("""
            models:
              m: {cmd: server
            other: 1
        """)
        assert problems[0].startswith("line ")
        assert "invalid YAML" in problems[0]

    def test_missing_cmd_is_an_error(self):
        assert "models.m.cmd: is required" in errors_of("models: {m: {name: x}}")[0]

    def test_unknown_keys_are_warnings_not_errors(self):
        config = load("""
            brandNewKey: 1
            models:
              m: {cmd: s, mysterySetting: true}
        """)
        paths = {w.path for w in config.warnings}
        assert {"brandNewKey", "models.m.mysterySetting"} <= paths
        assert all(w.severity == "warning" for w in config.warnings)

    def test_proxy_port_without_cmd_port_loads_with_a_warning(self):
        config = load("models: {m: {cmd: some-server}}")
        assert config.models["m"].proxy == "http://localhost:5800"
        assert any("must listen on port 5800" in w.message for w in config.warnings)

    def test_legacy_groups_and_routing_cannot_be_mixed(self):
        problems = errors_of("""
            models: {a: {cmd: s}}
            groups: {g: {members: [a]}}
            routing: {router: {use: group}}
        """)
        assert "cannot be used together" in " ".join(problems)

    def test_a_model_in_two_groups_is_an_error(self):
        problems = errors_of("""
            models: {a: {cmd: s}}
            groups:
              one: {members: [a]}
              two: {members: [a]}
        """)
        assert "more than one group" in problems[0]

    def test_no_groups_means_one_default_group_with_every_model(self):
        config = load("models: {a: {cmd: s}, b: {cmd: s}}")
        default = config.groups["(default)"]
        assert default.members == ("a", "b") and default.swap and default.exclusive

    def test_peers(self):
        config = load("""
            models: {local: {cmd: s}}
            peers:
              box:
                proxy: http://10.0.0.2:8080/
                apiKey: secret
                models: [llama, shared]
              other:
                proxy: https://example.com
                models: [shared]
        """)
        assert config.resolve_peer_model("box/llama") == ("box", "llama")
        assert config.resolve_peer_model("llama") == ("box", "llama")
        assert config.resolve_peer_model("shared") is None  # two peers serve it
        assert config.peers["box"].proxy == "http://10.0.0.2:8080"
        assert "peer models can not be empty" in errors_of("peers: {p: {proxy: 'http://x'}}")[0]


def test_split_command_follows_posix_shell_words():
    assert split_command("a 'b c' \"d e\" f\\ g") == ["a", "b c", "d e", "f g"]
