"""Alembic environment: runs migrations on the async engine named by SWITCHYARD_DATABASE_URL."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import create_async_engine

from alembic import context
from api.db import access as _access_models  # noqa: F401  (registers the access tables)
from api.db.engine import configure_engine, ensure_sqlite_directory
from api.db import admin_models  # noqa: F401 - registers the admin tables on the metadata
from api.db.models import BigIntBase

config = context.config
target_metadata = BigIntBase.metadata


def _url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        from api.settings import Settings

        url = Settings.from_env().database_url
    return url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    url = _url()
    ensure_sqlite_directory(url)
    engine = configure_engine(create_async_engine(url))
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
