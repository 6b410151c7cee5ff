"""The `switchyard` command line as a user runs it: config check, serve refusing a bad config, `.env`."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.servers import ROOT, free_port

BROKEN = """\
models:
  a:
    cmd: run-a --port ${PORT}
    ttl: soon
  b:
    proxy: 17
"""


def switchyard(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_config_check_prints_every_problem_with_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    result = switchyard("config", "check", str(bad), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{bad}:4:5: error: models.a.ttl: must be an integer, got string 'soon'",
        f"{bad}:5:3: error: models.b.cmd: is required (or upstream: for a remote API)",
        f"{bad}:6:5: error: models.b.proxy: must be a string, got integer 17",
        f"{bad}: 3 error(s); the config is not valid",
    ]

    good = tmp_path / "good.yaml"
    good.write_text("models:\n  a:\n    cmd: run-a --port ${PORT}\n")
    result = switchyard("config", "check", str(good), cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"{good}: OK (1 models, 0 peers)"

    missing = switchyard("config", "check", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_serve_refuses_to_start_with_an_invalid_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    env = {"SWITCHYARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", "SWITCHYARD_DASHBOARD": "false"}
    result = switchyard("serve", "--config", str(bad), "--port", str(free_port()), cwd=tmp_path, env=env)
    assert result.returncode != 0
    assert "models.a.ttl" in result.stderr + result.stdout


def test_dot_env_is_honoured_and_the_environment_wins(tmp_path):
    from_file = tmp_path / "from-dotenv.db"
    (tmp_path / ".env").write_text(f'# settings\nexport SWITCHYARD_DATABASE_URL="sqlite+aiosqlite:///{from_file}"\n')
    assert switchyard("db", "upgrade", cwd=tmp_path).returncode == 0
    with sqlite3.connect(from_file) as db:
        assert db.execute("select count(*) from alembic_version").fetchone() == (1,)

    from_env = tmp_path / "from-environment.db"
    result = switchyard(
        "db", "upgrade", cwd=tmp_path, env={"SWITCHYARD_DATABASE_URL": f"sqlite+aiosqlite:///{from_env}"}
    )
    assert result.returncode == 0 and from_env.exists()
