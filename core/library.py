"""The model library: GGUF files and Hugging Face model folders found in the configured model directories.

For every model the library reports size, quantization, architecture, layer count, trained context and
parameter count, read from the GGUF metadata key/value section only. The reader stops at the end of that
section: it never touches the tensor-info table or the tensor data, and it steps over long arrays (the
tokenizer's 150 000-entry vocabulary and merges) instead of decoding them, so describing a 40 GB file costs
a few megabytes of reads. ``gguf.GGUFReader`` would memory-map the whole file and turn every vocabulary
entry into a numpy array, which takes seconds per large model; this module uses the ``gguf`` package's
constants (value types, file types, key names) and its own sequential reader instead.

Results are cached by (path, mtime, size) in memory and, optionally, in a JSON file so that a restart
does not re-read hundreds of files. Multi-part GGUFs (``name-00001-of-00003.gguf``) are one model whose
first part holds the metadata. ``mmproj*.gguf`` vision projectors are not models: they are attached to the
model(s) in the same folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, BinaryIO, Literal

from gguf import GGUF_MAGIC, GGUFValueType, LlamaFileType

from core.jsonvalues import as_int

#: Longest string value kept (chat templates run to tens of kilobytes; longer values are skipped).
MAX_STRING_BYTES = 256 * 1024
#: Longest array kept (per-layer head counts and the like); longer arrays are stepped over, their length kept.
MAX_ARRAY_ITEMS = 256
CACHE_FORMAT = 1

_SHARD = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})\.gguf$", re.IGNORECASE)
_QUANT_IN_NAME = re.compile(
    r"(?<![A-Za-z0-9])(I?Q\d(?:_[A-Z0-9]+)*|BF16|F16|F32|FP16|FP32|MXFP4(?:_MOE)?|TQ\d_\d)(?![A-Za-z0-9])",
    re.IGNORECASE,
)
#: Encoder architectures llama.cpp serves as embedding models.
_EMBEDDING_ARCHITECTURES = frozenset({
    "bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert", "neo-bert",
    "t5encoder", "eurobert",
})  # fmt: skip
_SCALARS: dict[int, tuple[str, int]] = {
    GGUFValueType.UINT8: ("B", 1),
    GGUFValueType.INT8: ("b", 1),
    GGUFValueType.UINT16: ("H", 2),
    GGUFValueType.INT16: ("h", 2),
    GGUFValueType.UINT32: ("I", 4),
    GGUFValueType.INT32: ("i", 4),
    GGUFValueType.FLOAT32: ("f", 4),
    GGUFValueType.BOOL: ("?", 1),
    GGUFValueType.UINT64: ("Q", 8),
    GGUFValueType.INT64: ("q", 8),
    GGUFValueType.FLOAT64: ("d", 8),
}


class GGUFFormatError(ValueError):
    """The file is not a GGUF file this reader understands (or it is truncated)."""


@dataclass(frozen=True, slots=True)
class SkippedArray:
    """An array value too long to keep: its element type and length."""

    item_type: str
    length: int


@dataclass(frozen=True, slots=True)
class GGUFMetadata:
    """The header and key/value metadata of one GGUF file."""

    version: int
    tensor_count: int
    fields: dict[str, Any]
    #: where the key/value section ends: the number of bytes that had to be read
    metadata_bytes: int


def read_gguf_metadata(path: str | os.PathLike[str]) -> GGUFMetadata:
    """Read a GGUF file's header and metadata key/value section, and nothing after it."""
    with open(path, "rb", buffering=1 << 20) as handle:
        return _MetadataReader(handle, os.fstat(handle.fileno()).st_size).read()


class _MetadataReader:
    def __init__(self, handle: BinaryIO, file_size: int):
        self._handle = handle
        self._file_size = file_size
        self._order = "<"

    def read(self) -> GGUFMetadata:
        magic = self._exact(4)
        if struct.unpack("<I", magic)[0] != GGUF_MAGIC:
            raise GGUFFormatError("not a GGUF file (bad magic)")
        version = struct.unpack("<I", self._exact(4))[0]
        if version & 0xFFFF == 0:  # written on a big-endian machine
            self._order = ">"
            version = struct.unpack(">I", struct.pack("<I", version))[0]
        if version not in (2, 3):
            raise GGUFFormatError(f"unsupported GGUF version {version}")
        tensor_count, kv_count = self._unpack("QQ")
        if kv_count > 1_000_000:
            raise GGUFFormatError(f"implausible metadata key count {kv_count}")
        values: dict[str, Any] = {}
        for _ in range(kv_count):
            key = self._string()
            (value_type,) = self._unpack("I")
            values[key] = self._value(value_type)
        return GGUFMetadata(version, tensor_count, values, self._handle.tell())

    def _exact(self, size: int) -> bytes:
        data = self._handle.read(size)
        if len(data) != size:
            raise GGUFFormatError("file ends inside the metadata section")
        return data

    def _unpack(self, codes: str) -> tuple[Any, ...]:
        fmt = self._order + codes
        return struct.unpack(fmt, self._exact(struct.calcsize(fmt)))

    def _skip(self, size: int) -> None:
        if self._handle.tell() + size > self._file_size:
            raise GGUFFormatError("file ends inside the metadata section")
        self._handle.seek(size, os.SEEK_CUR)

    def _skip_strings(self, count: int) -> None:
        """Step over `count` length-prefixed strings, parsing their lengths from 1 MiB blocks."""
        unpack_length = struct.Struct(self._order + "Q").unpack_from
        block = b""
        position = 0
        for _ in range(count):
            if len(block) - position < 8:
                block = block[position:] + self._handle.read(1 << 20)
                position = 0
                if len(block) < 8:
                    raise GGUFFormatError("file ends inside the metadata section")
            (length,) = unpack_length(block, position)
            position += 8
            if length > self._file_size:
                raise GGUFFormatError("string longer than the file")
            if position + length <= len(block):
                position += length
            else:
                overshoot = position + length - len(block)
                block, position = b"", 0
                self._skip(overshoot)
        self._handle.seek(position - len(block), os.SEEK_CUR)  # give back what was read ahead

    def _string_length(self) -> int:
        (length,) = self._unpack("Q")
        if length > self._file_size:
            raise GGUFFormatError("string longer than the file")
        return length

    def _string(self) -> str:
        return self._exact(self._string_length()).decode("utf-8", "replace")

    def _value(self, value_type: int) -> Any:
        if value_type in _SCALARS:
            return self._unpack(_SCALARS[value_type][0])[0]
        if value_type == GGUFValueType.STRING:
            length = self._string_length()
            if length > MAX_STRING_BYTES:
                self._skip(length)
                return None
            return self._exact(length).decode("utf-8", "replace")
        if value_type == GGUFValueType.ARRAY:
            item_type, count = self._unpack("IQ")
            return self._array(item_type, count)
        raise GGUFFormatError(f"unknown metadata value type {value_type}")

    def _array(self, item_type: int, count: int) -> Any:
        if count <= MAX_ARRAY_ITEMS:
            return [self._value(item_type) for _ in range(count)]
        if item_type in _SCALARS:
            self._skip(_SCALARS[item_type][1] * count)
        elif item_type == GGUFValueType.STRING:
            self._skip_strings(count)
        else:  # arrays of arrays: walk them, keeping nothing
            for _ in range(count):
                self._value(item_type)
        try:
            type_name = GGUFValueType(item_type).name
        except ValueError:
            type_name = str(item_type)
        return SkippedArray(type_name, count)


# ===================================================================== the library


@dataclass(frozen=True, slots=True)
class LibraryModel:
    """One model found on disk.

    `id` is the file name without ``.gguf`` and without the ``-00001-of-00003`` part suffix (or the folder
    name of a Hugging Face model); when two directories hold the same name, the parent folder is prepended.
    `path` is what a server is started with: the (first part of the) GGUF file, or the folder.
    """

    id: str
    path: str
    format: Literal["gguf", "safetensors"]
    files: tuple[str, ...]
    size: int
    modified_at: float
    architecture: str = ""
    quantization: str = ""
    file_type: int | None = None
    block_count: int | None = None
    context_length: int | None = None  # trained maximum
    embedding_length: int | None = None
    parameter_count: int | None = None
    size_label: str = ""  # general.size_label, e.g. "7B"
    name: str = ""  # general.name
    pooling_type: int | None = None
    chat_template: str | None = None
    mmproj: str | None = None  # vision projector found next to the model
    problem: str | None = None  # why the metadata could not be read, or a part is missing

    @property
    def is_embedding(self) -> bool:
        """An encoder model, or one that declares a pooling type and has no chat template."""
        if self.architecture in _EMBEDDING_ARCHITECTURES:
            return True
        return self.pooling_type not in (None, 0) and not self.chat_template

    @property
    def supports_tools(self) -> bool:
        """The chat template renders tool definitions (how Ollama decides the ``tools`` capability)."""
        return bool(self.chat_template and "tools" in self.chat_template)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["files"] = list(self.files)
        data["is_embedding"] = self.is_embedding
        return data


@dataclass(frozen=True, slots=True)
class _Facts:
    """What is read from one file's metadata (the cached part)."""

    architecture: str = ""
    quantization: str = ""
    file_type: int | None = None
    block_count: int | None = None
    context_length: int | None = None
    embedding_length: int | None = None
    parameter_count: int | None = None
    size_label: str = ""
    name: str = ""
    pooling_type: int | None = None
    chat_template: str | None = None
    problem: str | None = None


_FACT_NAMES = tuple(f.name for f in fields(_Facts))


def quantization_name(file_type: int | None) -> str:
    """``general.file_type`` → "Q4_K_M", "F16", "BF16"... ("" when unknown)."""
    if file_type is None:
        return ""
    try:
        name = LlamaFileType(file_type).name
    except ValueError:
        return f"type {file_type}"
    if name == "GUESSED":
        return ""
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def quantization_from_filename(filename: str) -> str:
    """The quantization a file name advertises ("model-Q4_K_M.gguf" → "Q4_K_M"), or ""."""
    matches = _QUANT_IN_NAME.findall(Path(filename).stem)
    return matches[-1].upper() if matches else ""


def gguf_facts(metadata: GGUFMetadata) -> dict[str, Any]:
    """The library's facts from one file's metadata."""
    values = metadata.fields
    arch = _str(values.get("general.architecture"))

    def arch_int(key: str) -> int | None:
        return as_int(values.get(f"{arch}.{key}")) if arch else None

    file_type = as_int(values.get("general.file_type"))
    template = values.get("tokenizer.chat_template")
    return {
        "architecture": arch,
        "file_type": file_type,
        "quantization": quantization_name(file_type),
        "block_count": arch_int("block_count"),
        "context_length": arch_int("context_length"),
        "embedding_length": arch_int("embedding_length"),
        "parameter_count": as_int(values.get("general.parameter_count")),
        "size_label": _str(values.get("general.size_label")),
        "name": _str(values.get("general.name")),
        "pooling_type": arch_int("pooling_type"),
        "chat_template": template if isinstance(template, str) else None,
    }


def hf_folder_facts(folder: Path) -> dict[str, Any]:
    """The library's facts from a Hugging Face model folder's ``config.json``."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise GGUFFormatError("config.json is not an object")
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    architectures = config.get("architectures")
    arch = architectures[0] if isinstance(architectures, list) and architectures else config.get("model_type")
    quant = config.get("quantization_config")
    if isinstance(quant, dict) and quant.get("quant_method"):
        bits = quant.get("bits")
        quantization = f"{quant['quant_method']}{'-' + str(bits) + 'bit' if bits else ''}".upper()
    else:
        quantization = str(config.get("torch_dtype") or config.get("dtype") or "").upper()
    template = None
    tokenizer_config = folder / "tokenizer_config.json"
    if tokenizer_config.is_file():
        with contextlib.suppress(ValueError, OSError):
            loaded = json.loads(tokenizer_config.read_text(encoding="utf-8"))
            template = loaded.get("chat_template") if isinstance(loaded, dict) else None
    return {
        "architecture": _str(arch),
        "quantization": quantization,
        "block_count": as_int(text.get("num_hidden_layers")),
        "context_length": as_int(text.get("max_position_embeddings")),
        "embedding_length": as_int(text.get("hidden_size")),
        "name": folder.name,
        "chat_template": template if isinstance(template, str) else None,
    }


class ModelLibrary:
    """Scans model directories; remembers what it read by (path, mtime, size).

    :meth:`scan` is synchronous file I/O: call it from a worker thread (``asyncio.to_thread``). Several
    threads may scan at once; the cache is shared and locked.
    """

    def __init__(self, directories: Sequence[str | os.PathLike[str]], cache_file: str | os.PathLike[str] | None = None):
        self.directories = [Path(d) for d in directories]
        self.cache_file = Path(cache_file) if cache_file else None
        self._cache: dict[str, tuple[int, int, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._dirty = False
        self._reads = 0
        #: files whose metadata was read (not served from the cache) by the last scan
        self.last_scan_reads = 0
        if self.cache_file is not None:
            self._load_cache()

    # ------------------------------------------------------------------ scan

    def scan(self) -> list[LibraryModel]:
        """Every model in the directories, sorted by id."""
        gguf_files: list[Path] = []
        hf_folders: list[Path] = []
        seen_dirs: set[tuple[int, int]] = set()
        for directory in self.directories:
            self._walk(directory, gguf_files, hf_folders, seen_dirs)
        reads_before = self._reads
        models = self._gguf_models(gguf_files) + [m for m in (self._hf_model(f) for f in hf_folders) if m]
        self.last_scan_reads = self._reads - reads_before
        models = _unique_ids(models)
        if self._dirty and self.cache_file is not None:
            self._save_cache()
        return sorted(models, key=lambda m: m.id)

    def _walk(
        self, directory: Path, gguf_files: list[Path], hf_folders: list[Path], seen: set[tuple[int, int]]
    ) -> None:
        try:
            info = directory.stat()
        except OSError:
            return
        if (info.st_dev, info.st_ino) in seen:
            return  # a symlink loop, or the same directory configured twice
        seen.add((info.st_dev, info.st_ino))
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        names = {entry.name for entry in entries}
        if "config.json" in names and any(n.endswith((".safetensors", ".bin")) for n in names):
            hf_folders.append(directory)
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    self._walk(Path(entry.path), gguf_files, hf_folders, seen)
                elif entry.is_file() and entry.name.lower().endswith(".gguf"):
                    gguf_files.append(Path(entry.path))
            except OSError:
                continue

    def describe(self, path: str | os.PathLike[str]) -> LibraryModel:
        """One GGUF file outside the scanned directories (a config model's ``-m``), cached like a scan."""
        file = Path(path)
        return self._gguf_model(file.stem, [file], None)

    def _gguf_models(self, files: list[Path]) -> list[LibraryModel]:
        projectors: dict[Path, list[Path]] = {}
        groups: dict[tuple[Path, str], dict[int, Path]] = {}
        totals: dict[tuple[Path, str], int] = {}
        singles: list[Path] = []
        for path in files:
            if path.name.lower().startswith("mmproj"):
                projectors.setdefault(path.parent, []).append(path)
                continue
            shard = _SHARD.match(path.name)
            if shard:
                key = (path.parent, shard["stem"])
                groups.setdefault(key, {})[int(shard["part"])] = path
                totals[key] = int(shard["total"])
            else:
                singles.append(path)
        models: list[LibraryModel] = []
        for path in singles:
            models.append(self._gguf_model(path.stem, [path], projectors.get(path.parent)))
        for (folder, stem), parts in groups.items():
            total = totals[(folder, stem)]
            ordered = [parts[i] for i in sorted(parts)]
            missing = [i for i in range(1, total + 1) if i not in parts]
            model = self._gguf_model(stem, ordered, projectors.get(folder), first_part=parts.get(1))
            if missing:
                problem = f"missing part(s) {', '.join(str(i) for i in missing)} of {total}"
                model = replace(model, problem=problem)
            models.append(model)
        return models

    def _gguf_model(
        self, model_id: str, paths: list[Path], projectors: list[Path] | None, first_part: Path | None = None
    ) -> LibraryModel:
        stats = [p.stat() for p in paths]
        head = first_part if first_part is not None else (paths[0] if len(paths) == 1 else None)
        facts = self._facts(head, "gguf") if head is not None else {"problem": "first part missing"}
        if not facts.get("quantization"):
            facts["quantization"] = quantization_from_filename(paths[0].name)
        return LibraryModel(
            id=model_id,
            path=str(head if head is not None else paths[0]),
            format="gguf",
            files=tuple(str(p) for p in paths),
            size=sum(s.st_size for s in stats),
            modified_at=max(s.st_mtime for s in stats),
            mmproj=str(projectors[0]) if projectors else None,
            **{k: v for k, v in facts.items() if k in _FACT_NAMES},
        )

    def _hf_model(self, folder: Path) -> LibraryModel | None:
        try:
            files = sorted(p for p in folder.rglob("*") if p.is_file())
            stats = [p.stat() for p in files]
        except OSError:
            return None
        facts = self._facts(folder / "config.json", "hf")
        return LibraryModel(
            id=folder.name,
            path=str(folder),
            format="safetensors",
            files=tuple(str(p) for p in files),
            size=sum(s.st_size for s in stats),
            modified_at=max((s.st_mtime for s in stats), default=0.0),
            **{k: v for k, v in facts.items() if k in _FACT_NAMES},
        )

    def _facts(self, path: Path, kind: Literal["gguf", "hf"]) -> dict[str, Any]:
        try:
            info = path.stat()
        except OSError as exc:
            return {"problem": f"cannot stat {path.name}: {exc.strerror}"}
        key = str(path)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] == info.st_mtime_ns and cached[1] == info.st_size:
            return dict(cached[2])
        try:
            facts = gguf_facts(read_gguf_metadata(path)) if kind == "gguf" else hf_folder_facts(path.parent)
        except (GGUFFormatError, OSError, ValueError, UnicodeDecodeError) as exc:
            facts = {"problem": f"unreadable metadata: {exc}"}
        with self._lock:
            self._cache[key] = (info.st_mtime_ns, info.st_size, facts)
            self._dirty = True
            self._reads += 1
        return dict(facts)

    # ----------------------------------------------------------------- cache

    def _load_cache(self) -> None:
        assert self.cache_file is not None
        try:
            document = json.loads(self.cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # no cache yet, or a damaged one: it is rebuilt by the next scan
        if not isinstance(document, dict) or document.get("format") != CACHE_FORMAT:
            return
        for key, entry in (document.get("files") or {}).items():
            if isinstance(entry, dict) and isinstance(entry.get("facts"), dict):
                mtime_ns, size = entry.get("mtime_ns"), entry.get("size")
                if isinstance(mtime_ns, int) and isinstance(size, int):
                    facts = {k: v for k, v in entry["facts"].items() if k in _FACT_NAMES}
                    self._cache[key] = (mtime_ns, size, facts)

    def _save_cache(self) -> None:
        assert self.cache_file is not None
        with self._lock:
            files = {k: {"mtime_ns": m, "size": s, "facts": f} for k, (m, s, f) in self._cache.items()}
            self._dirty = False
        document = {"format": CACHE_FORMAT, "files": files}
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".library-", dir=self.cache_file.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(document, out)
            os.replace(temp, self.cache_file)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temp)


def _unique_ids(models: Iterable[LibraryModel]) -> list[LibraryModel]:
    """Prefix the parent folder's name to ids that occur more than once."""
    models = list(models)
    counts: dict[str, int] = {}
    for model in models:
        counts[model.id] = counts.get(model.id, 0) + 1
    out = []
    for model in models:
        if counts[model.id] > 1:
            model = replace(model, id=f"{Path(model.path).parent.name}/{model.id}")
        out.append(model)
    return out


def _str(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""
