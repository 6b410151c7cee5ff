"""Library files become config entries: generated commands, ports after the config's, config entries win,
the `library:` config key, effective context lengths."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_config_text
from core.config.schema import ModelConfig
from core.library import ModelLibrary
from core.library_models import (
    assign_ports,
    config_model_for,
    configured_context,
    context_from_args,
    generate_library_models,
    merge_library_models,
    model_file,
)
from core.presets import ModelPreset, SamplingOverrides
from tests.unit.test_library import write_gguf


@pytest.fixture
def library_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    write_gguf(folder / "chat-Q4_K_M.gguf", chat_template="{{ messages }}", context_length=8192)
    write_gguf(folder / "embed.gguf", "bert", context_length=512)
    write_gguf(folder / "vision" / "see.gguf", chat_template="{{ tools }}")
    write_gguf(folder / "vision" / "mmproj-see-f16.gguf", "clip")
    (folder / "broken.gguf").write_bytes(b"GGUF nonsense")
    return folder


def config_for(folder: Path, extra: str = "") -> str:
    return f"""
startPort: 9000
library:
  paths: [{folder}]
  llamaServer: /opt/llama/llama-server
  maxLoaded: 2
  idleMinutes: 1.5
{extra}"""


def scan(folder: Path):
    return ModelLibrary([folder]).scan()


class TestLibraryConfigKey:
    def test_is_parsed_without_unknown_key_warnings(self, tmp_path):
        config = load_config_text(config_for(tmp_path))
        assert config.library is not None
        assert config.library.paths == (str(tmp_path),)
        assert config.library.llama_server == "/opt/llama/llama-server"
        assert (config.library.max_loaded, config.library.idle_minutes) == (2, 1.5)
        assert config.warnings == ()

    def test_defaults_and_absence(self):
        assert load_config_text("models: {}").library is None
        library = load_config_text("library:\n  paths: [/m]\n").library
        assert library is not None and (library.llama_server, library.max_loaded, library.idle_minutes) == (
            "llama-server", 1, 0,
        )  # fmt: skip

    def test_unknown_keys_inside_it_do_warn_and_bad_values_fail(self):
        config = load_config_text("library:\n  paths: [/m]\n  maxloaded: 3\n")
        assert [w.path for w in config.warnings] == ["library.maxloaded"]
        with pytest.raises(Exception, match="maxLoaded: must be >= 0"):
            load_config_text("library:\n  maxLoaded: -1\n")


class TestGeneratedModels:
    def test_every_readable_gguf_becomes_a_model_with_a_llama_server_command(self, library_dir):
        config = load_config_text(config_for(library_dir))
        generated = generate_library_models(scan(library_dir), {}, config)
        assert sorted(generated.models) == ["chat-Q4_K_M", "embed", "see"]
        assert "broken" in generated.skipped
        chat = generated.models["chat-Q4_K_M"]
        assert chat.args[:7] == ["/opt/llama/llama-server", "-m", str(library_dir / "chat-Q4_K_M.gguf"),
                                 "--host", "127.0.0.1", "--port", str(chat.proxy.rsplit(":", 1)[1])]  # fmt: skip
        assert "--alias" in chat.args and chat.ttl == 90
        assert "--embeddings" in generated.models["embed"].args  # a BERT file is an embedding model
        see = generated.models["see"]
        assert see.args[see.args.index("--mmproj") + 1].endswith("mmproj-see-f16.gguf")
        assert see.capabilities.inputs == ("text", "image") and see.capabilities.tools

    def test_presets_shape_the_command(self, library_dir):
        config = load_config_text(config_for(library_dir))
        presets = {"chat-Q4_K_M": ModelPreset(ctx_size=4096, n_gpu_layers=-1, parallel=2, extra_args="--flash-attn on")}
        chat = generate_library_models(scan(library_dir), presets, config).models["chat-Q4_K_M"]
        args = chat.args
        assert args[args.index("-c") + 1] == "4096" and args[args.index("-ngl") + 1] == "999"
        assert args[args.index("-np") + 1] == "2" and args[-2:] == ["--flash-attn", "on"]
        assert configured_context(chat) == 4096

    def test_ports_come_after_the_config_models_and_stay_put_across_rescans(self, library_dir):
        text = config_for(library_dir, "models:\n  mine:\n    cmd: server --port ${PORT}\n")
        config = load_config_text(text)
        assert config.models["mine"].proxy.endswith(":9000")
        first = generate_library_models(scan(library_dir), {}, config)
        assert sorted(first.ports.values()) == [9001, 9002, 9003]
        write_gguf(library_dir / "aaa-new.gguf")  # sorts first
        second = generate_library_models(scan(library_dir), {}, config, ports=first.ports)
        assert {m: second.ports[m] for m in first.ports} == first.ports
        assert second.ports["aaa-new"] == 9004

    def test_assign_ports_skips_ports_in_use(self):
        config = load_config_text("startPort: 100\nmodels:\n  a:\n    cmd: x\n    proxy: http://127.0.0.1:101\n")
        assert assign_ports(["x", "y"], config, {"y": 101}) == {"x": 100, "y": 102}

    def test_config_entries_win(self, library_dir):
        text = config_for(
            library_dir,
            f"""models:
  chat-Q4_K_M:
    cmd: server --port ${{PORT}}
  custom:
    cmd: server -m {library_dir}/vision/see.gguf --port ${{PORT}}
    aliases: [embed]
""",
        )
        config = load_config_text(text)
        generated = generate_library_models(scan(library_dir), {}, config)
        assert generated.models == {}
        assert generated.served_by == {"chat-Q4_K_M": "chat-Q4_K_M", "see": "custom", "embed": "custom"}

    def test_merge_adds_generated_models_and_marks_them(self, library_dir):
        config = load_config_text(config_for(library_dir, "models:\n  mine:\n    cmd: server --port ${PORT}\n"))
        generated = generate_library_models(scan(library_dir), {}, config)
        merged = merge_library_models(config, generated)
        assert sorted(merged.models) == ["chat-Q4_K_M", "embed", "mine", "see"]
        assert merged.library_models == {"chat-Q4_K_M", "embed", "see"}
        assert merged.models["mine"] is config.models["mine"]
        # the merged config itself is not mistaken for hand-written entries on the next merge
        assert config_model_for(scan(library_dir)[0], merged) is None

    def test_serving_settings_do_not_change_the_command(self, library_dir):
        config = load_config_text(config_for(library_dir))
        live = ModelPreset(idle_timeout=30, max_concurrent=1, queue_depth=2, sampling=SamplingOverrides(temperature=0))
        before = generate_library_models(scan(library_dir), {}, config).models["chat-Q4_K_M"]
        after = generate_library_models(scan(library_dir), {"chat-Q4_K_M": live}, config).models["chat-Q4_K_M"]
        assert before == after, "live settings must not restart a running model"


@pytest.mark.parametrize(
    ("cmd", "context"),
    [
        ("llama-server -m m.gguf -c 4096", 4096),
        ("llama-server -m m.gguf --ctx-size 1024 --port 1", 1024),
        ("llama-server -m m.gguf --ctx-size=512", 512),
        ("llama-server -m m.gguf -c 0", None),
        ("llama-server -m m.gguf", None),
    ],
)
def test_context_from_a_command_line(cmd, context):
    assert context_from_args(cmd.split()) == context


def test_configured_context_falls_back_to_capabilities():
    from core.config.schema import Capabilities

    model = ModelConfig(id="m", cmd="server -m /x/m.gguf", capabilities=Capabilities(context=3000))
    assert configured_context(model) == 3000 and model_file(model) == "/x/m.gguf"
