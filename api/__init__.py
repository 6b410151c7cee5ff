"""Switchyard's Litestar application: gateway, admin API, database, workers, CLI."""

__version__ = "0.1.0"
