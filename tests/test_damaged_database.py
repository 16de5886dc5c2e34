"""A SQLite database damaged inside (a page overwritten: the header and schema still read, a
table does not): every view, the Python API and the dashboard name the file and the fix, with
exit code 2 from the CLI, instead of SQLAlchemy's traceback (trial 40). Real CLI processes, a
real SQLite file damaged on disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_experiment, write_script

SCORE = "import json, sys\nprint('#Auptimizer:', json.load(open(sys.argv[-1]))['x'])\n"


def _damage_table(db: Path, table: str) -> None:
    """Overwrite the root page of ``table`` with garbage (the way real damage looks)."""
    with sqlite3.connect(db) as con:
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        (root,) = con.execute("SELECT rootpage FROM sqlite_master WHERE type='table' AND name=?",
                              (table,)).fetchone()
    con.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xde\xad\xbe\xef" * (page_size // 4))


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    write_script(tmp_path, "job.py", SCORE)
    exp = write_experiment(tmp_path, script="job.py", n_samples=4,
                           parameter_config=[{"name": "x", "range": [0, 1], "type": "float"}])
    res = run_cli(str(exp), "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    db = tmp_path / ".aup" / "sqlite3.db"
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    _damage_table(db, "job")
    return tmp_path


@pytest.mark.parametrize("command", [["list"], ["show", "1"], ["best", "1"], ["export", "1"],
                                     ["experiment.json", "-q"]])
def test_every_command_names_the_damaged_file_and_the_fix(damaged: Path, command: list[str]):
    res = run_cli(*command, cwd=damaged)
    err = res.stderr
    assert res.returncode == 2, res.stdout + err
    assert "Traceback" not in err and "sqlalche" not in err, err
    db = damaged / ".aup" / "sqlite3.db"
    assert f"the database file {db} is damaged (database disk image is malformed)" in err, err
    assert "Fix: restore it from a backup, or move it away" in err and ".dump" in err, err


def test_the_python_api_raises_a_store_error(damaged: Path):
    import aup
    from aup.errors import StoreError

    with pytest.raises(StoreError, match="is damaged"):
        aup.load_experiment(1, db=damaged / ".aup" / "sqlite3.db").jobs()


def test_the_dashboard_says_damaged_not_retry_shortly(damaged: Path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from aup.dashboard.app import create_app
    from aup.store.store import open_store

    store = open_store(f"sqlite:///{damaged / '.aup' / 'sqlite3.db'}", create=False,
                       read_only=True)
    with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
        r = client.get("/api/experiments/1/jobs")
    assert r.status_code == 503, r.text
    assert "is damaged" in r.json()["detail"] and "retry" not in r.json()["detail"]
    assert "retry-after" not in r.headers
