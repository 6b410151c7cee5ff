"""Admin routes of the model library, presets, downloads and the admin-side load action.

* ``GET /api/library`` — every scanned model with its metadata, preset, how it is served and its state
* ``GET /api/library/{id}`` — one model; ``GET|PUT /api/library/{id}/preset`` — its preset
  (``PUT ...?restart=true`` restarts a running model whose launch settings changed)
* ``POST /api/library/{id}/load`` and ``POST /api/models/{id}/load`` — load a model as an admin
  (admin-loaded models outrank API-loaded ones under ``library.maxLoaded``)
* ``GET /api/library/export``, ``POST /api/library/restore`` (merge, never overwrite), ``POST /api/library/rescan``
* ``POST /api/downloads`` (``repo`` + ``file`` or ``quantization``, ``revision``), ``GET /api/downloads``,
  ``DELETE /api/downloads/{id}``; progress is published on ``/api/events`` as ``download.progress``

Model ids may contain slashes, so the routes taking an id match the rest of the path and read the action
(``/preset``, ``/load``) from its end.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, delete, get, post, put
from litestar.exceptions import HTTPException, NotFoundException, ValidationException

from api.admin.deps import get_runtime
from api.admin.model_admin import admin_load
from api.runtime import Runtime
from core.downloads import HubError, HubNotFoundError
from core.presets import PresetError


def _split(rest: str, actions: tuple[str, ...]) -> tuple[str, str]:
    """``"a/b/preset"`` → ``("a/b", "preset")``; an id alone → ``(id, "")``."""
    rest = rest.strip("/")
    for action in actions:
        if rest.endswith("/" + action):
            return rest[: -len(action) - 1], action
    return rest, ""


def _library_entry(runtime: Runtime, model_id: str) -> Any:
    entry = runtime.library.entry(model_id)
    if entry is None:
        raise NotFoundException(f"model {model_id!r} is not in the library")
    return entry


@get("/api/library", tags=["library"], summary="Scanned models with metadata, presets and serving state")
async def library_index(request: Request) -> dict[str, Any]:
    runtime = get_runtime(request)
    library = runtime.library
    config = library.config
    return {
        "configured": config is not None,
        "paths": [str(p) for p in library.paths],
        "llama_server": config.llama_server if config else None,
        "max_loaded": config.max_loaded if config else None,
        "idle_minutes": config.idle_minutes if config else None,
        "models": [library.describe(entry) for entry in library.entries],
    }


@post("/api/library/rescan", tags=["library"], summary="Scan the library paths again", status_code=200)
async def library_rescan(request: Request) -> dict[str, Any]:
    return await get_runtime(request).library.rescan()


@get("/api/library/export", tags=["library"], summary="Every model's metadata and preset as one JSON document")
async def library_export(request: Request) -> dict[str, Any]:
    return get_runtime(request).library.export()


@post("/api/library/restore", tags=["library"], summary="Merge presets from an export (set values are kept)",
      status_code=200)  # fmt: skip
async def library_restore(request: Request, data: dict[str, Any]) -> dict[str, Any]:
    try:
        report = await get_runtime(request).library.restore(data)
    except PresetError as exc:
        raise ValidationException(str(exc), extra={"problems": exc.problems}) from None
    return report.as_dict()


@get("/api/library/{rest:path}", tags=["library"], summary="One library model, or its preset (…/preset)")
async def library_model(request: Request, rest: str) -> dict[str, Any]:
    runtime = get_runtime(request)
    model_id, action = _split(rest, ("preset",))
    entry = _library_entry(runtime, model_id)
    described = runtime.library.describe(entry)
    if action == "preset":
        return {"model": model_id, "preset": described["preset"], "restart_pending": described["restart_pending"]}
    return described


@put("/api/library/{rest:path}", tags=["library"], summary="Replace a model's preset (…/preset)")
async def library_set_preset(request: Request, rest: str, data: dict[str, Any]) -> dict[str, Any]:
    runtime = get_runtime(request)
    model_id, action = _split(rest, ("preset",))
    if action != "preset":
        raise NotFoundException("PUT /api/library/{id}/preset")
    _library_entry(runtime, model_id)
    restart = request.query_params.get("restart", "").lower() in ("1", "true", "yes")
    try:
        return await runtime.library.set_preset(model_id, data, restart=restart)
    except PresetError as exc:
        raise ValidationException(str(exc), extra={"problems": exc.problems}) from None


@post("/api/library/{rest:path}", tags=["library"], summary="Load a library model as an admin (…/load)",
      status_code=200)  # fmt: skip
async def library_load(request: Request, rest: str) -> dict[str, Any]:
    runtime = get_runtime(request)
    model_id, action = _split(rest, ("load",))
    if action != "load":
        raise NotFoundException("POST /api/library/{id}/load")
    _library_entry(runtime, model_id)
    if model_id not in runtime.config.library_models:
        served_by = runtime.library.generated.served_by.get(model_id)
        if served_by is None:
            raise HTTPException(status_code=409, detail=f"library model {model_id!r} is not served")
        model_id = served_by
    return msgspec.to_builtins(await admin_load(runtime, model_id))


# ------------------------------------------------------------------ downloads


@get("/api/downloads", tags=["downloads"], summary="Downloads and their progress")
async def downloads_index(request: Request) -> dict[str, Any]:
    return {"downloads": get_runtime(request).library.downloads()}


@post("/api/downloads", tags=["downloads"], summary="Download a GGUF file from the hub into the first library path",
      status_code=202)  # fmt: skip
async def downloads_start(request: Request, data: dict[str, Any]) -> dict[str, Any]:
    runtime = get_runtime(request)
    repo = data.get("repo")
    filename = data.get("file") or data.get("filename")
    quantization = data.get("quantization")
    revision = data.get("revision") or "main"
    problems = []
    if not isinstance(repo, str) or repo.count("/") != 1:
        problems.append('repo: required, as "owner/name"')
    if not filename and not quantization:
        problems.append("give file (a file in the repository) or quantization (e.g. Q4_K_M)")
    for key, value in (("file", filename), ("quantization", quantization), ("revision", revision)):
        if value is not None and not isinstance(value, str):
            problems.append(f"{key}: must be a string")
    if problems:
        raise ValidationException("; ".join(problems))
    try:
        jobs = await runtime.library.start_download(repo, filename=filename, quantization=quantization,
                                                    revision=revision)  # fmt: skip
    except LookupError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    except HubNotFoundError as exc:
        raise NotFoundException(str(exc)) from None
    except HubError as exc:
        status = 409 if exc.status_code is None else 502
        raise HTTPException(status_code=status, detail=str(exc)) from None
    return {"downloads": [job.as_dict() for job in jobs]}


@delete("/api/downloads/{job_id:str}", tags=["downloads"], summary="Cancel a download (its partial file is kept)",
        status_code=200)  # fmt: skip
async def downloads_cancel(request: Request, job_id: str) -> dict[str, Any]:
    runtime = get_runtime(request)
    try:
        cancelled = runtime.library.cancel_download(job_id)
    except KeyError:
        raise NotFoundException(f"no download {job_id!r}") from None
    return {"id": job_id, "cancelled": cancelled}


LIBRARY_ROUTES = [
    library_index, library_rescan, library_export, library_restore, library_model, library_set_preset, library_load,
    downloads_index, downloads_start, downloads_cancel,
]  # fmt: skip
