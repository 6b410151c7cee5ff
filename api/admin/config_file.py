"""`/api/config`: read, validate and save the model config file, then hot-reload it.

A save is all or nothing. The text is validated first (every problem with its line and column);
a text with errors changes nothing, neither the file nor the running config. A valid text is
saved by copying the previous file next to it (`config.yaml.20261130T103000123456Z.bak`) and
writing the new one atomically: a temporary file in the same folder, fsync, rename over the old
name, fsync of the folder. A reader (or a crash) sees the old file or the new one, never half.
Then the running gateway reloads it (models whose settings did not change keep running).

`If-Match` with the ETag of `GET /api/config` makes a save conditional: when someone else saved
in between, it answers 412 instead of overwriting their change.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import tempfile
import weakref
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.exceptions import ClientException, HTTPException

from api.admin.deps import get_runtime
from api.admin.etag import etag_matches, etag_of
from api.runtime import Runtime
from core.config import Config, check_config_text

YAML_MEDIA_TYPE = "application/yaml"
_locks: weakref.WeakKeyDictionary[Runtime, asyncio.Lock] = weakref.WeakKeyDictionary()


class ConfigProblemInfo(msgspec.Struct):
    path: str
    message: str
    line: int | None
    column: int | None
    severity: str  # error | warning


class ConfigValidation(msgspec.Struct):
    valid: bool
    problems: list[ConfigProblemInfo]
    #: models defined by the text (when valid)
    models: int | None = None


class ConfigSaved(msgspec.Struct):
    saved: bool
    problems: list[ConfigProblemInfo]
    #: where the previous file was copied (None when there was none)
    backup: str | None = None
    models: int | None = None


def validate_text(text: str) -> tuple[Config | None, list[ConfigProblemInfo]]:
    config, problems = check_config_text(text)
    return config, [msgspec.convert(p.as_dict(), ConfigProblemInfo) for p in problems]


def backup_file(path: Path) -> Path | None:
    """Copy `path` to `<name>.<UTC timestamp>.bak` beside it; None when there is no file yet."""
    if not path.exists():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    backup = path.with_name(f"{path.name}.{stamp}.bak")
    shutil.copy2(path, backup)
    return backup


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see either the old or the new content."""
    folder = path.parent
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.chmod(temp_name, mode)
        try:
            os.replace(temp_name, path)
        except OSError:
            # a file bind-mounted into a container cannot be renamed over: rewrite it in place
            with path.open("r+b") as target:
                target.write(data)
                target.truncate()
                target.flush()
                os.fsync(target.fileno())
            os.unlink(temp_name)
            return
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _config_path(runtime: Runtime) -> Path:
    return runtime.settings.config_path.resolve()


async def _text_of(request: Request) -> str:
    try:
        return (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise ClientException("the config must be UTF-8 text") from None


class ConfigController(Controller):
    path = "/api/config"
    tags = ["config"]

    @get("/", summary="The model config file as YAML text", media_type=YAML_MEDIA_TYPE)
    async def get_config(self, request: Request) -> Response[bytes]:
        data = await asyncio.to_thread(_config_path(get_runtime(request)).read_bytes)
        return Response(data, media_type=YAML_MEDIA_TYPE)

    @post(
        "/validate",
        summary="Check a YAML text (request body) and list every problem with line and column",
        status_code=200,
    )
    async def validate(self, request: Request) -> ConfigValidation:
        config, problems = validate_text(await _text_of(request))
        return ConfigValidation(
            valid=config is not None, problems=problems, models=len(config.models) if config else None
        )

    @put("/", summary="Validate, back up the old file, save atomically and hot-reload (422 changes nothing)")
    async def save(self, request: Request) -> Response[ConfigSaved]:
        runtime = get_runtime(request)
        text = await _text_of(request)
        config, problems = validate_text(text)
        if config is None:
            return Response(ConfigSaved(saved=False, problems=problems), status_code=422)
        path = _config_path(runtime)
        lock = _locks.setdefault(runtime, asyncio.Lock())
        async with lock:
            if_match = request.headers.get("if-match")
            if if_match is not None:
                current = await asyncio.to_thread(path.read_bytes) if path.exists() else b""
                if not etag_matches(if_match, etag_of(current)):
                    raise HTTPException(status_code=412, detail="the config changed since you read it; reload it")
            backup = await asyncio.to_thread(backup_file, path)
            await asyncio.to_thread(write_atomically, path, text.encode("utf-8"))
            runtime.config_written()
            await runtime.reload_config(config)
        return Response(
            ConfigSaved(
                saved=True, problems=problems, backup=str(backup) if backup else None, models=len(config.models)
            ),
            status_code=200,
        )
