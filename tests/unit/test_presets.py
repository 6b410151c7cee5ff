"""Per-model presets: validation, the llama-server command they produce, live vs restart, export/restore."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from core.config.schema import split_command
from core.presets import (
    EXPORT_FORMAT,
    ModelPreset,
    PresetError,
    SamplingOverrides,
    apply_sampling_overrides,
    changed_fields,
    export_library,
    merge_presets,
    preset_to_cmd,
    restart_needed,
    restore_presets,
)

SERVER = "/opt/llama.cpp/llama-server"


class TestValidation:
    def test_round_trip_keeps_only_set_fields(self):
        data = {
            "ctx_size": 8192,
            "n_gpu_layers": -1,
            "threads": 8,
            "parallel": 2,
            "extra_args": "--flash-attn on --cache-type-k q8_0",
            "idle_timeout": 600,
            "max_concurrent": 2,
            "queue_depth": 10,
            "sampling": {"temperature": 0.6, "top_k": 40},
        }
        preset = ModelPreset.from_dict(data)
        assert preset.sampling == SamplingOverrides(temperature=0.6, top_k=40)
        assert preset.as_dict() == data
        assert ModelPreset().as_dict() == {}
        assert ModelPreset.from_dict({"ctx_size": None}).ctx_size is None

    def test_every_problem_is_listed(self):
        with pytest.raises(PresetError) as info:
            ModelPreset.from_dict(
                {
                    "ctx_size": 0,
                    "threads": "eight",
                    "embedding": "yes",
                    "turbo": True,
                    "sampling": {"top_p": 1.5, "mirostat": 2},
                }
            )
        assert info.value.problems == [
            "ctx_size: must be at least 1",
            "threads: must be an integer",
            "embedding: must be true or false",
            "turbo: unknown setting",
            "sampling.top_p: must be at most 1",
            "sampling.mirostat: unknown sampling parameter",
        ]

    @pytest.mark.parametrize("extra", ["--port 9000", "-c 4096", "--ctx-size=4096", "-m other.gguf", "--jinja 'open"])
    def test_extra_args_may_not_fight_the_preset(self, extra):
        with pytest.raises(PresetError, match="extra_args"):
            ModelPreset.from_dict({"extra_args": extra})


class TestCommand:
    def test_full_preset(self):
        preset = ModelPreset(
            ctx_size=8192, n_gpu_layers=-1, threads=8, parallel=4, extra_args="--flash-attn on --jinja"
        )
        cmd = preset_to_cmd("/models/Qwen2.5-7B-Instruct-Q4_K_M.gguf", preset, SERVER, alias="qwen2.5-7b")
        assert cmd == (
            "/opt/llama.cpp/llama-server -m /models/Qwen2.5-7B-Instruct-Q4_K_M.gguf --host 127.0.0.1 --port ${PORT}"
            " --alias qwen2.5-7b -c 8192 -ngl 999 -t 8 -np 4 --flash-attn on --jinja"
        )

    def test_unset_fields_are_left_to_llama_server(self):
        assert (
            preset_to_cmd("/m.gguf", ModelPreset(), SERVER) == f"{SERVER} -m /m.gguf --host 127.0.0.1 --port ${{PORT}}"
        )

    def test_paths_with_spaces_survive_llama_swaps_command_splitting(self):
        cmd = preset_to_cmd(
            "/my models/it's here.gguf",
            ModelPreset(ctx_size=2048, extra_args="--chat-template-file '/my templates/t.jinja'"),
            "/opt/llama server/llama-server",
            mmproj="/my models/mmproj f16.gguf",
        )
        assert split_command(cmd) == [
            "/opt/llama server/llama-server",
            "-m",
            "/my models/it's here.gguf",
            "--host",
            "127.0.0.1",
            "--port",
            "${PORT}",
            "-c",
            "2048",
            "--mmproj",
            "/my models/mmproj f16.gguf",
            "--chat-template-file",
            "/my templates/t.jinja",
        ]

    def test_embedding_models_get_embeddings_and_no_projector(self):
        cmd = preset_to_cmd("/e.gguf", ModelPreset(embedding=True, n_gpu_layers=0), SERVER, mmproj="/p.gguf")
        assert cmd.endswith("-ngl 0 --embeddings")

    def test_the_real_server_accepts_the_command(self):
        """Every flag the preset writes is one the shared llama-server build knows."""
        import os
        import shutil
        import subprocess

        server = os.environ.get("LLAMA_SERVER_BIN") or shutil.which("llama-server") or "/work/shared/llama/llama-server"
        words = split_command(
            preset_to_cmd(
                "/work/shared/llama/tiny.gguf",
                ModelPreset(ctx_size=512, n_gpu_layers=0, threads=1, parallel=1),
                server,
                alias="tiny",
            ).replace("${PORT}", "0")
        )
        result = subprocess.run([*words, "--help"], check=False, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0
        for flag in ("--alias", "-c", "-ngl", "-t", "-np", "--embeddings", "--mmproj"):
            assert flag in result.stdout + result.stderr


class TestLiveChanges:
    @pytest.mark.parametrize(
        "change",
        [
            {"idle_timeout": 60},
            {"max_concurrent": 4},
            {"queue_depth": 0},
            {"sampling": SamplingOverrides(temperature=0.1)},
        ],
    )
    def test_serving_settings_apply_live(self, change):
        old = ModelPreset(ctx_size=4096, idle_timeout=300, max_concurrent=1, queue_depth=5)
        new = ModelPreset(**{**{f: getattr(old, f) for f in old.__dataclass_fields__}, **change})
        assert restart_needed(old, new) is False
        assert changed_fields(old, new) == list(change)

    @pytest.mark.parametrize(
        "change",
        [{"ctx_size": 8192}, {"n_gpu_layers": 20}, {"threads": 4}, {"parallel": 2}, {"extra_args": "--jinja"}],
    )
    def test_launch_settings_need_a_restart(self, change):
        old = ModelPreset(ctx_size=4096)
        new = ModelPreset(**{"ctx_size": 4096, **change})
        assert restart_needed(old, new) is True

    def test_identical_presets_need_nothing(self):
        assert restart_needed(ModelPreset(ctx_size=1), ModelPreset(ctx_size=1)) is False

    def test_sampling_overrides_replace_what_the_client_sent(self):
        body = {"model": "m", "temperature": 1.5, "top_p": 0.5, "messages": []}
        forced = apply_sampling_overrides(body, SamplingOverrides(temperature=0.2, min_p=0.05))
        assert forced == {"model": "m", "temperature": 0.2, "top_p": 0.5, "min_p": 0.05, "messages": []}
        assert body["temperature"] == 1.5  # the original is untouched


class TestExportRestore:
    def library(self):
        return [
            {"id": "qwen", "path": "/srv/models/qwen-Q4_K_M.gguf", "files": ["/srv/models/qwen-Q4_K_M.gguf"],
             "size": 4_000_000_000, "quantization": "Q4_K_M", "architecture": "qwen2", "context_length": 32768},
            {"id": "llama", "path": "/srv/models/llama.gguf", "files": [], "size": 10, "quantization": "F16"},
        ]  # fmt: skip

    def test_export_document(self):
        presets = {
            "qwen": ModelPreset(ctx_size=8192, sampling=SamplingOverrides(top_k=20)),
            "gone": ModelPreset(threads=2),
        }
        document = export_library(self.library(), presets, now=datetime(2025, 5, 1, tzinfo=UTC))
        assert json.loads(json.dumps(document)) == document
        assert document["format"] == EXPORT_FORMAT
        assert document["exported_at"] == "2025-05-01T00:00:00+00:00"
        qwen, llama, gone = document["models"]
        assert qwen == {
            "id": "qwen",
            "file": "qwen-Q4_K_M.gguf",
            "size": 4_000_000_000,
            "quantization": "Q4_K_M",
            "architecture": "qwen2",
            "context_length": 32768,
            "preset": {"ctx_size": 8192, "sampling": {"top_k": 20}},
        }
        assert "preset" not in llama
        assert gone == {"id": "gone", "preset": {"threads": 2}}  # presets without a file are not lost

    def test_round_trip_into_an_empty_installation(self):
        presets = {"qwen": ModelPreset(ctx_size=8192, idle_timeout=60), "llama": ModelPreset(parallel=2)}
        document = json.loads(json.dumps(export_library(self.library(), presets)))
        report = restore_presets(document, {}, known_models={"qwen", "llama"})
        assert report.presets == presets
        assert sorted(report.added) == ["llama", "qwen"]
        assert report.unknown == [] and report.problems == []

    def test_existing_values_are_never_overwritten(self):
        existing = {
            "qwen": ModelPreset(ctx_size=4096, sampling=SamplingOverrides(temperature=0.7)),
            "llama": ModelPreset(parallel=2),
        }
        document = {
            "format": EXPORT_FORMAT,
            "models": [
                {"id": "qwen", "preset": {"ctx_size": 65536, "threads": 8, "sampling": {"temperature": 0, "top_k": 5}}},
                {"id": "llama", "preset": {"parallel": 8}},
                {"id": "mistral", "preset": {"ctx_size": 1}},
                {"id": "phi"},
                {"preset": {}},
                {"id": "llama2", "preset": {"ctx_size": -5}},
            ],
        }
        report = restore_presets(document, existing, known_models={"qwen", "llama", "phi", "llama2"})
        assert report.presets["qwen"] == ModelPreset(
            ctx_size=4096, threads=8, sampling=SamplingOverrides(temperature=0.7, top_k=5)
        )
        assert report.presets["llama"] == ModelPreset(parallel=2)
        assert "mistral" not in report.presets
        assert report.merged == ["qwen"]
        assert report.unchanged == ["llama", "phi"]
        assert report.unknown == ["mistral"]
        assert report.problems == ["models[4]: missing id", "llama2: ctx_size: must be at least 1"]
        assert existing["qwen"].threads is None  # the caller's mapping is not modified

    def test_documents_that_are_not_exports_are_refused(self):
        with pytest.raises(PresetError):
            restore_presets({"models": "all"}, {}, known_models=())
        with pytest.raises(PresetError, match="format"):
            restore_presets({"format": "llamaman", "models": []}, {}, known_models=())

    def test_merge_fills_only_unset_fields(self):
        merged = merge_presets(
            ModelPreset(ctx_size=1, embedding=False), ModelPreset(ctx_size=2, embedding=True, threads=3)
        )
        assert merged == ModelPreset(ctx_size=1, embedding=False, threads=3)
