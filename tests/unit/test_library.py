"""The model library: GGUF metadata read from the key/value section only, folders scanned, results cached."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import gguf
import numpy as np
import pytest
from ollama._types import ShowResponse

from core.library import (
    GGUFFormatError,
    ModelLibrary,
    SkippedArray,
    quantization_from_filename,
    quantization_name,
    read_gguf_metadata,
)
from core.ollama import OllamaModel, show_response

MAKE_TINY = Path("/work/shared/llama/make_tiny_gguf.py")


def write_gguf(
    path: Path,
    arch: str = "llama",
    *,
    file_type: int | None = None,
    block_count: int | None = 32,
    context_length: int | None = 4096,
    parameter_count: int | None = None,
    size_label: str | None = None,
    vocab: int = 0,
    pooling: int | None = None,
    chat_template: str | None = None,
    endianess: gguf.GGUFEndian = gguf.GGUFEndian.LITTLE,
    extra: dict | None = None,
) -> Path:
    """A GGUF with the given metadata and one small tensor."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch, endianess=endianess)
    if block_count is not None:
        writer.add_block_count(block_count)
    if context_length is not None:
        writer.add_context_length(context_length)
    if file_type is not None:
        writer.add_file_type(file_type)
    if parameter_count is not None:
        writer.add_uint64("general.parameter_count", parameter_count)
    if size_label is not None:
        writer.add_string("general.size_label", size_label)
    if pooling is not None:
        writer.add_pooling_type(gguf.PoolingType(pooling))
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    if vocab:
        writer.add_token_list([f"token{i}" for i in range(vocab)])
        writer.add_token_scores([0.0] * vocab)
        writer.add_token_merges([f"a{i} b{i}" for i in range(vocab)])
    for key, value in (extra or {}).items():
        writer.add_key_value(key, value, gguf.GGUFValueType.get_type(value))
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    """A fresh file from the shared generator (the same recipe as llama-server's test model)."""
    out = tmp_path_factory.mktemp("tiny") / "tiny-random-llama.gguf"
    subprocess.run([sys.executable, str(MAKE_TINY), str(out)], check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def big_vocab_gguf(tmp_path_factory) -> Path:
    """Metadata shaped like a real 7B model: 150 000 tokens and merges, Q4_K_M."""
    return write_gguf(
        tmp_path_factory.mktemp("big") / "Qwen2.5-7B-Instruct-Q4_K_M.gguf",
        "qwen2",
        file_type=gguf.LlamaFileType.MOSTLY_Q4_K_M,
        block_count=28,
        context_length=32768,
        parameter_count=7_615_616_512,
        size_label="7.6B",
        vocab=150_000,
        chat_template="{% for m in messages %}{{ m.content }}{% endfor %}{% if tools %}tools{% endif %}",
        extra={"test.after_vocabulary": "still read"},
    )


# ============================================================ the reader


class TestMetadataReader:
    def test_agrees_with_the_gguf_package_reader(self, tiny_gguf):
        ours = read_gguf_metadata(tiny_gguf)
        reference = gguf.GGUFReader(tiny_gguf)
        assert ours.tensor_count == len(reference.tensors)
        for name, reader_field in reference.fields.items():
            if name.startswith("GGUF."):
                continue
            value = ours.fields[name]
            if isinstance(value, SkippedArray):
                assert value.length == len(reader_field.data)
            else:
                assert value == pytest.approx(reader_field.contents()), name

    def test_tiny_model_facts(self, tiny_gguf):
        (model,) = ModelLibrary([tiny_gguf.parent]).scan()
        assert model.id == "tiny-random-llama"
        assert model.format == "gguf"
        assert model.architecture == "llama"
        assert (model.block_count, model.context_length, model.embedding_length) == (2, 2048, 64)
        assert (model.file_type, model.quantization) == (0, "F32")
        assert model.size == tiny_gguf.stat().st_size
        assert model.name == "tiny-random-llama"
        assert "<|im_start|>" in model.chat_template
        assert not model.is_embedding  # it declares mean pooling but is a chat model (it has a template)
        assert model.problem is None

    def test_big_vocabulary_is_stepped_over_not_decoded(self, big_vocab_gguf):
        started = time.perf_counter()
        metadata = read_gguf_metadata(big_vocab_gguf)
        elapsed = time.perf_counter() - started
        assert metadata.fields["tokenizer.ggml.tokens"] == SkippedArray("STRING", 150_000)
        assert metadata.fields["tokenizer.ggml.merges"] == SkippedArray("STRING", 150_000)
        assert metadata.fields["tokenizer.ggml.scores"] == SkippedArray("FLOAT32", 150_000)
        assert metadata.fields["qwen2.context_length"] == 32768
        assert metadata.fields["test.after_vocabulary"] == "still read"  # the stepping lands on the next key
        assert elapsed < 1.0  # ~0.07 s measured; gguf.GGUFReader needs ~10 s for the same file

    def test_a_multi_gigabyte_file_costs_only_its_header(self, big_vocab_gguf, tmp_path):
        huge = tmp_path / "huge-Q8_0.gguf"
        shutil.copyfile(big_vocab_gguf, huge)
        with open(huge, "r+b") as handle:
            handle.truncate(6 * 1024**3)  # sparse: 6 GiB of "tensor data" that is never read
        started = time.perf_counter()
        (model,) = ModelLibrary([tmp_path]).scan()
        elapsed = time.perf_counter() - started
        assert model.size == 6 * 1024**3
        assert model.quantization == "Q4_K_M"  # from general.file_type, not the misleading file name
        assert read_gguf_metadata(huge).metadata_bytes < 8 * 1024**2
        assert elapsed < 1.0

    def test_never_needs_the_tensor_section(self, tmp_path):
        path = write_gguf(tmp_path / "m.gguf", context_length=8192)
        end_of_metadata = read_gguf_metadata(path).metadata_bytes
        with open(path, "r+b") as handle:
            handle.truncate(end_of_metadata)  # tensor infos and data gone
        assert read_gguf_metadata(path).fields["llama.context_length"] == 8192
        with pytest.raises(Exception):  # noqa: B017 - the package reader does need them
            gguf.GGUFReader(path)

    def test_big_endian_files(self, tmp_path):
        path = write_gguf(tmp_path / "be.gguf", block_count=12, endianess=gguf.GGUFEndian.BIG)
        assert read_gguf_metadata(path).fields["llama.block_count"] == 12

    def test_small_arrays_and_all_scalar_types_are_kept(self, tmp_path):
        extra = {"test.heads": [8, 8, 4, 4], "test.flag": True, "test.ratio": 0.5, "test.names": ["a", "b"]}
        fields = read_gguf_metadata(write_gguf(tmp_path / "a.gguf", extra=extra)).fields
        assert fields["test.heads"] == [8, 8, 4, 4]
        assert fields["test.flag"] is True
        assert fields["test.ratio"] == 0.5
        assert fields["test.names"] == ["a", "b"]

    @pytest.mark.parametrize(
        "content",
        [b"", b"NOPE" + b"\0" * 64, b"GGUF\x03\0\0\0" + b"\0" * 8 + b"\x05" + b"\0" * 7 + b"\x03\0\0"],
        ids=["empty", "bad magic", "truncated in the metadata"],
    )
    def test_damaged_files_raise_a_format_error(self, tmp_path, content):
        path = tmp_path / "bad.gguf"
        path.write_bytes(content)
        with pytest.raises(GGUFFormatError):
            read_gguf_metadata(path)


@pytest.mark.parametrize(
    ("file_type", "name"),
    [(0, "F32"), (1, "F16"), (7, "Q8_0"), (15, "Q4_K_M"), (32, "BF16"), (30, "IQ4_XS"), (None, ""), (999, "type 999")],
)
def test_quantization_names(file_type, name):
    assert quantization_name(file_type) == name


@pytest.mark.parametrize(
    ("filename", "quant"),
    [
        ("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-0.5b-instruct-q8_0.gguf", "Q8_0"),
        ("gemma-2-9b-it-IQ4_XS.gguf", "IQ4_XS"),
        ("phi-3-mini-f16.gguf", "F16"),
        ("model.gguf", ""),
    ],
)
def test_quantization_from_file_names(filename, quant):
    assert quantization_from_filename(filename) == quant


# ============================================================== scanning


class TestScan:
    def test_multi_part_files_are_one_model(self, tmp_path):
        first = write_gguf(tmp_path / "big-00001-of-00003.gguf", file_type=gguf.LlamaFileType.MOSTLY_Q6_K)
        rest = [write_gguf(tmp_path / f"big-0000{i}-of-00003.gguf", block_count=None) for i in (2, 3)]
        (model,) = ModelLibrary([tmp_path]).scan()
        assert model.id == "big"
        assert model.path == str(first)
        assert model.files == (str(first), *map(str, rest))
        assert model.size == sum(p.stat().st_size for p in (first, *rest))
        assert (model.quantization, model.block_count) == ("Q6_K", 32)
        assert model.problem is None

    def test_a_missing_part_is_reported(self, tmp_path):
        write_gguf(tmp_path / "big-00001-of-00003.gguf")
        write_gguf(tmp_path / "big-00003-of-00003.gguf")
        (model,) = ModelLibrary([tmp_path]).scan()
        assert model.problem == "missing part(s) 2 of 3"

    def test_vision_projectors_attach_to_their_model(self, tmp_path):
        write_gguf(tmp_path / "vlm" / "gemma-3-4b-it-Q4_K_M.gguf", "gemma3")
        projector = write_gguf(tmp_path / "vlm" / "mmproj-gemma-3-4b-f16.gguf", "clip")
        (model,) = ModelLibrary([tmp_path]).scan()
        assert model.mmproj == str(projector)
        assert model.quantization == "Q4_K_M"  # no file_type in the metadata: taken from the name
        show = ShowResponse.model_validate(show_response(OllamaModel.from_library(model)))
        assert "vision" in show.capabilities

    def test_hugging_face_folders(self, tmp_path):
        folder = tmp_path / "Qwen2.5-0.5B-Instruct"
        folder.mkdir()
        config = {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "num_hidden_layers": 24,
            "max_position_embeddings": 32768,
            "hidden_size": 896,
            "torch_dtype": "bfloat16",
        }
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "model.safetensors").write_bytes(b"\0" * 1000)
        (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ tools }}"}))
        (model,) = ModelLibrary([tmp_path]).scan()
        assert (model.id, model.format, model.path) == ("Qwen2.5-0.5B-Instruct", "safetensors", str(folder))
        assert (model.architecture, model.block_count, model.context_length) == ("Qwen2ForCausalLM", 24, 32768)
        assert model.quantization == "BFLOAT16"
        assert model.size == sum(p.stat().st_size for p in folder.iterdir())
        assert model.supports_tools

    def test_embedding_models_are_recognised(self, tmp_path):
        write_gguf(tmp_path / "nomic-embed-text-v1.5.f16.gguf", "nomic-bert", pooling=1)
        write_gguf(tmp_path / "Qwen3-Embedding-0.6B-Q8_0.gguf", "qwen3", pooling=3)
        models = ModelLibrary([tmp_path]).scan()
        assert [(m.id, m.is_embedding) for m in models] == [
            ("Qwen3-Embedding-0.6B-Q8_0", True),
            ("nomic-embed-text-v1.5.f16", True),
        ]
        assert OllamaModel.from_library(models[0]).capabilities == ("embedding",)

    def test_same_name_in_two_directories(self, tmp_path):
        write_gguf(tmp_path / "a" / "model.gguf")
        write_gguf(tmp_path / "b" / "model.gguf")
        ids = [m.id for m in ModelLibrary([tmp_path / "a", tmp_path / "b"]).scan()]
        assert ids == ["a/model", "b/model"]

    def test_unreadable_files_are_listed_with_the_problem(self, tmp_path):
        (tmp_path / "broken.gguf").write_bytes(b"not a gguf at all")
        write_gguf(tmp_path / "good.gguf")
        broken, good = ModelLibrary([tmp_path]).scan()
        assert broken.problem and "bad magic" in broken.problem
        assert good.problem is None

    def test_symlink_loops_and_missing_directories_are_harmless(self, tmp_path):
        write_gguf(tmp_path / "m.gguf")
        (tmp_path / "loop").symlink_to(tmp_path)
        assert [m.id for m in ModelLibrary([tmp_path, tmp_path / "absent"]).scan()] == ["m"]


class TestCache:
    def test_unchanged_files_are_not_read_again(self, tmp_path):
        path = write_gguf(tmp_path / "m.gguf", context_length=4096)
        library = ModelLibrary([tmp_path])
        library.scan()
        assert library.last_scan_reads == 1
        library.scan()
        assert library.last_scan_reads == 0

        write_gguf(path, context_length=8192)
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
        (model,) = library.scan()
        assert library.last_scan_reads == 1
        assert model.context_length == 8192

    def test_json_cache_survives_a_restart(self, tmp_path):
        models_dir = tmp_path / "models"
        write_gguf(models_dir / "m.gguf", parameter_count=1234)
        cache = tmp_path / "state" / "library.json"
        first = ModelLibrary([models_dir], cache_file=cache).scan()
        assert cache.is_file()

        restarted = ModelLibrary([models_dir], cache_file=cache)
        assert restarted.scan() == first
        assert restarted.last_scan_reads == 0

    def test_a_damaged_cache_is_rebuilt(self, tmp_path):
        write_gguf(tmp_path / "models" / "m.gguf")
        cache = tmp_path / "library.json"
        cache.write_text("{not json")
        library = ModelLibrary([tmp_path / "models"], cache_file=cache)
        assert [m.id for m in library.scan()] == ["m"]
        assert library.last_scan_reads == 1
        assert json.loads(cache.read_text())["format"] == 1


def test_ollama_description_of_a_scanned_model(big_vocab_gguf):
    (model,) = ModelLibrary([big_vocab_gguf.parent]).scan()
    description = OllamaModel.from_library(model, context_length=8192)
    show = ShowResponse.model_validate(show_response(description))
    assert show.details.family == "qwen2"
    assert show.details.quantization_level == "Q4_K_M"
    assert show.details.parameter_size == "7.6B"
    assert show.modelinfo["qwen2.context_length"] == 8192
    assert show.modelinfo["switchyard.trained_context_length"] == 32768
    assert show.capabilities == ["completion", "tools"]
