"""Alembic environment: runs migrations on the async engine named by SWITCHYARD_DATABASE_URL."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import context
from api.db import access as _access_models  # noqa: F401  (registers the access tables)
from api.db import admin_models  # noqa: F401 - registers the admin tables on the metadata
from api.db.engine import configure_engine, ensure_sqlite_directory
from api.db.models import Base

config = context.config
target_metadata = Base.metadata


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


#: Several nodes that start together on one server database all run the migrations: a lock held for the whole run
#: makes the others wait and then find the schema already at head. SQLite is one machine's file; it needs none.
_PG_LOCK = ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)", {"key": 0x53574954})  # "SWIT"
_MY_LOCK = ("SELECT GET_LOCK(:key, 600)", "SELECT RELEASE_LOCK(:key)", {"key": "switchyard_migrations"})
_LOCKS = {"postgresql": _PG_LOCK, "mysql": _MY_LOCK, "mariadb": _MY_LOCK}


async def run_migrations_online() -> None:
    url = _url()
    ensure_sqlite_directory(url)
    engine = configure_engine(create_async_engine(url))
    try:
        async with engine.connect() as connection:
            lock, unlock, params = _LOCKS.get(connection.dialect.name, (None, None, {}))
            if lock:
                # a session lock: it outlives the commit. pg_advisory_lock waits; GET_LOCK answers 0 when it gave up
                if (await connection.execute(text(lock), params)).scalar() == 0:
                    raise RuntimeError("another node has held the migration lock for 10 minutes")
                await connection.commit()
            try:
                await connection.run_sync(_run)
                await connection.commit()
            finally:
                if unlock:
                    await connection.execute(text(unlock), params)
                    await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
