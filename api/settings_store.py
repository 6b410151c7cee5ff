"""Runtime settings: values an admin changes while Switchyard runs (stored in the database).

Environment variables (api.settings) configure the process; these are the knobs of a running
gateway: retention, capture limits, require-auth, attribution mapping. They are loaded into
memory at start and after every change, so the hot path reads plain attributes.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.access_store import bump_access_version
from api.db.models import AppSetting


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


class RuntimeSettings(msgspec.Struct, kw_only=True):
    """Live settings; defaults apply until an admin changes them."""

    retention_days: int = 30
    capture_enabled: bool = True
    capture_max_bytes: int = 16 * 1024
    require_auth: bool = msgspec.field(default_factory=lambda: _env_bool("SWITCHYARD_REQUIRE_AUTH", True))
    protect_metrics: bool = False
    #: attribution mapping (see core.attribution); None → the built-in defaults
    attribution: dict[str, Any] | None = None

    def validate(self) -> list[str]:
        problems = []
        if not 0 <= self.retention_days <= 3650:
            problems.append("retention_days must be between 0 (keep forever) and 3650")
        if not 0 <= self.capture_max_bytes <= 16 * 1024 * 1024:
            problems.append("capture_max_bytes must be between 0 and 16 MiB")
        return problems


_KEY = "runtime"


class SettingsStore:
    def __init__(self, engine: AsyncEngine):
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.current = RuntimeSettings()

    async def load(self) -> RuntimeSettings:
        async with self._sessions() as session:
            row = await session.scalar(select(AppSetting).where(AppSetting.key == _KEY))
        if row is not None:
            merged = {**msgspec.to_builtins(RuntimeSettings()), **row.value}
            self.current = msgspec.convert(merged, RuntimeSettings)
        return self.current

    async def update(self, patch: dict[str, Any]) -> RuntimeSettings:
        """Validate and persist a partial update; raises ValueError listing every problem."""
        merged = {**msgspec.to_builtins(self.current), **patch}
        try:
            candidate = msgspec.convert(merged, RuntimeSettings)
        except msgspec.ValidationError as exc:
            raise ValueError(str(exc)) from None
        problems = candidate.validate()
        if problems:
            raise ValueError("; ".join(problems))
        async with self._sessions() as session, session.begin():
            await _upsert(session, msgspec.to_builtins(candidate))
            await bump_access_version(session)  # other workers and nodes reload within their refresh interval
        self.current = candidate
        return candidate


async def _upsert(session: AsyncSession, value: dict[str, Any]) -> None:
    row = await session.scalar(select(AppSetting).where(AppSetting.key == _KEY))
    now = datetime.now(UTC)
    if row is None:
        session.add(AppSetting(key=_KEY, value=value, updated_at=now))
    else:
        row.value = value
        row.updated_at = now
