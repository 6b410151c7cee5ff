"""`switchyard` command line: serve, config check, db upgrade."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from api.settings import Settings, load_dotenv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchyard", description="Self-hosted AI gateway.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway on Granian")
    serve.add_argument("--config", type=Path, help="path to config.yaml (SWITCHYARD_CONFIG)")
    serve.add_argument("--host", help="address to listen on (SWITCHYARD_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (SWITCHYARD_PORT)")
    serve.add_argument("--workers", type=int, help="Granian worker processes (SWITCHYARD_WORKERS)")
    serve.add_argument("--no-dashboard", action="store_true", help="serve the API only (SWITCHYARD_DASHBOARD=false)")

    config_cmd = commands.add_parser("config", help="config file tools")
    config_sub = config_cmd.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config.yaml and print every problem")
    check.add_argument("path", type=Path)

    db_cmd = commands.add_parser("db", help="database tools")
    db_sub = db_cmd.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply database migrations (alembic upgrade head)")

    args = parser.parse_args(argv)
    load_dotenv()
    if args.command == "serve":
        return _serve(args)
    if args.command == "config":
        return _config_check(args.path)
    if args.command == "db":
        return _db_upgrade(Settings())
    return 2


def _config_check(path: Path) -> int:
    from core.config import check_config_text

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    config, problems = check_config_text(text)
    for problem in problems:
        print(f"{path}:{problem.position.line}:{problem.position.column}: " if problem.position else f"{path}: ",
              end="", file=sys.stderr)  # fmt: skip
        print(f"{problem.severity}: {problem.path}: {problem.message}", file=sys.stderr)
    if config is None:
        errors = sum(1 for p in problems if p.severity == "error")
        print(f"{path}: {errors} error(s); the config is not valid", file=sys.stderr)
        return 1
    print(f"{path}: OK ({len(config.models)} models, {len(config.peers)} peers)")
    return 0


def _db_upgrade(settings: Settings) -> int:
    from api.db.migrate import upgrade

    upgrade(settings.database_url)
    print(f"database is up to date ({_redact(settings.database_url)})")
    return 0


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _serve(args: argparse.Namespace) -> int:
    overrides = {
        "SWITCHYARD_CONFIG": str(args.config) if args.config else None,
        "SWITCHYARD_HOST": args.host,
        "SWITCHYARD_PORT": str(args.port) if args.port else None,
        "SWITCHYARD_WORKERS": str(args.workers) if args.workers else None,
    }
    for name, value in overrides.items():
        if value is not None:
            os.environ[name] = value
    settings = Settings()
    if _config_check(settings.config_path) != 0:
        return 1
    from core.config import load_config

    config = load_config(settings.config_path)
    if settings.workers > 1 and config.models:
        print(
            "warning: each Granian worker runs its own swap engine; with local models use one worker "
            "(SWITCHYARD_WORKERS=1) so a model is started only once",
            file=sys.stderr,
        )
    _db_upgrade(settings)
    os.environ.update(settings.as_env())

    from api.web import FrontendBuildError, build_frontend, serve

    dashboard = settings.dashboard and not args.no_dashboard
    if dashboard:
        try:
            build_frontend(settings.port)  # built once, reused while the port and the UI sources match
        except FrontendBuildError as exc:
            print(f"dashboard not built, serving the API only: {exc}", file=sys.stderr)
    serve(settings, dashboard=dashboard)
    return 0


if __name__ == "__main__":
    sys.exit(main())
