"""`switchyard` command line: serve, config check, db upgrade, keys create/list."""

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

    keys_cmd = commands.add_parser("keys", help="API keys")
    keys_sub = keys_cmd.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create an API key and print its secret (shown this once)")
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument("--rpm", type=int, help="requests per minute (default unlimited)")
    create.add_argument("--tpm", type=int, help="tokens per minute (default unlimited)")
    create.add_argument("--models", nargs="+", metavar="GLOB", help="models the key may use (default all)")
    create.add_argument("--relays", nargs="+", metavar="GLOB", help="MCP relays the key may use (default none)")
    create.add_argument("--admin", action="store_true", help="also allow the admin API")
    keys_sub.add_parser("list", help="list API keys (never their secrets)")

    args = parser.parse_args(argv)
    load_dotenv()
    if args.command == "serve":
        return _serve(args)
    if args.command == "config":
        return _config_check(args.path)
    if args.command == "db":
        return _db_upgrade(Settings())
    if args.command == "keys":
        return _keys(args, Settings())
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


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from api.db.migrate import upgrade

    for flag in ("rpm", "tpm"):
        value = getattr(args, flag, None)
        if value is not None and value < 0:
            print(f"--{flag} must be zero (unlimited) or more", file=sys.stderr)
            return 2
    if args.keys_command == "create" and not args.name.strip():
        print("--name must not be blank", file=sys.stderr)
        return 2
    upgrade(settings.database_url)
    return asyncio.run(_keys_async(args, settings))


async def _keys_async(args: argparse.Namespace, settings: Settings) -> int:
    import secrets
    from datetime import UTC, datetime

    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from api.access_store import bump_access_version, key_record
    from api.db.access import ApiKey
    from api.db.engine import make_alchemy_config
    from core.keys import generate_key, hash_key

    engine = make_alchemy_config(settings.database_url).get_engine()
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            if args.keys_command == "list":
                rows = (await session.scalars(select(ApiKey).order_by(ApiKey.created_at))).all()
                if not rows:
                    print("no API keys; create one with: switchyard keys create --name NAME")
                for row in rows:
                    record = key_record(row)
                    state = (
                        "revoked" if record.revoked else "expired" if record.expired(datetime.now(UTC)) else "active"
                    )
                    limits = f"rpm={row.rpm_limit or '-'} tpm={row.tpm_limit or '-'}"
                    models = ",".join(row.allowed_models or ()) or "*"
                    print(f"{row.id}  {row.prefix}…  {state:7}  {limits}  models={models}  "
                          f"scopes={','.join(row.scopes)}  {row.name}")  # fmt: skip
                return 0
            secret, prefix = generate_key()
            row = ApiKey(
                id=f"key_{secrets.token_hex(6)}", name=args.name.strip(), prefix=prefix, key_hash=hash_key(secret),
                created_at=datetime.now(UTC), rpm_limit=args.rpm or None, tpm_limit=args.tpm or None,
                allowed_models=list(args.models or ()), allowed_relays=list(args.relays or ()),
                scopes=["admin", "inference"] if args.admin else ["inference"],
            )  # fmt: skip
            async with session.begin():
                session.add(row)
                await bump_access_version(session)  # a running gateway picks the key up within seconds
    finally:
        await engine.dispose()
    print(f"created API key {row.id} ({row.name}); its secret is shown only now:\n")
    print(f"    {secret}\n")
    print("use it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'", file=sys.stderr)
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
