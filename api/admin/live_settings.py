"""`/api/settings` (the live settings of a running gateway) and `/api/maintenance/*` (prune, compact)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar import Controller, Request, get, patch, post
from litestar.exceptions import ValidationException

from api.admin.deps import get_runtime
from api.settings_store import RuntimeSettings
from api.workers.retention import compact, prune, prune_before


class SettingsPatch(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Any subset of the live settings; fields left out keep their value."""

    retention_days: int | msgspec.UnsetType = msgspec.UNSET
    capture_enabled: bool | msgspec.UnsetType = msgspec.UNSET
    capture_max_bytes: int | msgspec.UnsetType = msgspec.UNSET
    require_auth: bool | msgspec.UnsetType = msgspec.UNSET
    protect_metrics: bool | msgspec.UnsetType = msgspec.UNSET
    attribution: dict[str, Any] | None | msgspec.UnsetType = msgspec.UNSET


class PruneRequest(msgspec.Struct, kw_only=True):
    #: delete rows older than this many days instead of the retention setting
    older_than_days: int | None = None


class PruneReport(msgspec.Struct):
    cutoff: datetime | None
    request_logs: int
    model_events: int
    sessions: int


class CompactReport(msgspec.Struct):
    dialect: str
    size_before: int | None
    size_after: int | None
    seconds: float


class SettingsController(Controller):
    path = "/api/settings"
    tags = ["settings"]

    @get("/", summary="Live settings: retention, capture limits, require-auth, metrics protection, attribution")
    async def get_settings(self, request: Request) -> RuntimeSettings:
        return get_runtime(request).live

    @patch("/", summary="Change some live settings (validated; applied at once)")
    async def patch_settings(self, request: Request, data: SettingsPatch) -> RuntimeSettings:
        changes = msgspec.to_builtins(data)
        try:
            return await get_runtime(request).settings_store.update(changes)
        except ValueError as exc:
            raise ValidationException(str(exc)) from None


class MaintenanceController(Controller):
    path = "/api/maintenance"
    tags = ["settings"]

    @post("/prune", summary="Delete request rows and model events older than the retention now", status_code=200)
    async def prune_now(self, request: Request, data: PruneRequest | None = None) -> PruneReport:
        runtime = get_runtime(request)
        engine = runtime.alchemy.get_engine()
        if data is not None and data.older_than_days is not None:
            if data.older_than_days < 0:
                raise ValidationException("older_than_days must be 0 (everything) or more")
            result = await prune_before(engine, datetime.now(UTC) - timedelta(days=data.older_than_days))
        else:
            result = await prune(engine, runtime.live.retention_days)
        return PruneReport(result.cutoff, result.request_logs, result.model_events, result.sessions)

    @post("/compact", summary="Give freed space back (SQLite VACUUM, PostgreSQL VACUUM ANALYZE)", status_code=200)
    async def compact_now(self, request: Request) -> CompactReport:
        result = await compact(get_runtime(request).alchemy.get_engine())
        return CompactReport(result.dialect, result.size_before, result.size_after, round(result.seconds, 3))
