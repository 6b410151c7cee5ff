"""Model lifecycle endpoints in llama-swap's shapes: /running, unload, profiles."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get, post, put
from litestar.exceptions import NotFoundException, ValidationException

from api.admin.deps import get_runtime


class RunningModel(msgspec.Struct):
    model: str
    state: str
    cmd: str
    proxy: str
    ttl: int
    name: str
    description: str
    pid: int | None = None
    in_flight: int = 0
    queued: int = 0


class RunningList(msgspec.Struct):
    running: list[RunningModel]
    swaps: int


class ActiveProfile(msgspec.Struct):
    active: str | None


@get("/running", tags=["models"], summary="Models whose server is starting or ready (llama-swap shape)")
async def running(request: Request) -> RunningList:
    runtime = get_runtime(request)
    out = []
    for status in runtime.engine.status():
        if status["state"] not in ("ready", "starting", "stopping"):
            continue
        model = runtime.config.models[status["model"]]
        out.append(
            RunningModel(
                model=model.id,
                state=status["state"],
                cmd=model.cmd,
                proxy=model.proxy,
                ttl=model.ttl,
                name=model.name,
                description=model.description,
                pid=status["pid"],
                in_flight=status["in_flight"],
                queued=status["queued"],
            )  # fmt: skip
        )
    return RunningList(running=out, swaps=runtime.engine.swap_count)


class ModelLifecycleController(Controller):
    path = "/api/models"
    tags = ["models"]

    @post("/unload", summary="Unload every model", status_code=200)
    async def unload_all(self, request: Request) -> dict[str, Any]:
        runtime = get_runtime(request)
        await runtime.engine.unload(None, reason="api")
        return {"msg": "ok", "unloaded": "all"}

    @post("/unload/{model:path}", summary="Unload one model (ids may contain slashes)", status_code=200)
    async def unload_one(self, request: Request, model: str) -> dict[str, Any]:
        runtime = get_runtime(request)
        model = model.lstrip("/")
        real = runtime.config.real_model_id(model)
        if real is None:
            raise NotFoundException(f"model {model!r} not found")
        await runtime.engine.unload([real], reason="api")
        return {"msg": "ok", "unloaded": real}


class ProfileController(Controller):
    path = "/api/profiles"
    tags = ["models"]

    @get("/", summary="Configured profiles and the active one")
    async def list_profiles(self, request: Request) -> dict[str, Any]:
        runtime = get_runtime(request)
        return {
            "active": runtime.active_profile,
            "profiles": [
                {"id": p.id, "description": p.description, "pins": p.pins} for p in runtime.config.profiles.values()
            ],
        }

    @put("/active", summary="Switch the active profile (null for none)")
    async def set_active(self, request: Request, data: ActiveProfile) -> ActiveProfile:
        runtime = get_runtime(request)
        try:
            runtime.set_profile(data.active)
        except KeyError:
            raise ValidationException(f"unknown profile {data.active!r}") from None
        return ActiveProfile(active=runtime.active_profile)
