"""Run alembic migrations from code (`switchyard db upgrade`, and on every `serve`)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from alembic import command

MIGRATIONS = Path(__file__).resolve().parents[2] / "alembic"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)
