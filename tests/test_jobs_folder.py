"""One database per jobs/ folder, also for runs started at the same moment (real CLI
processes, real SQLite databases, real flock locks)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from aup.jobs_folder import claim_jobs_dir
from aup.store.store import open_store
from tests.conftest import run_cli, write_experiment, write_script

X = [{"name": "x", "range": [-1, 1], "type": "float"}]

# score = x + 10, after a short pause so that runs overlap
SLOW_SCORE = """
import json, sys, time
cfg = json.load(open(sys.argv[-1]))
time.sleep(0.3)
print("#Auptimizer:", cfg["x"] + 10)
"""


def _scores_match_job_files(db: Path, jobs: Path) -> list[int]:
    """Job ids of ``db`` whose recorded score is x + 10 for the x of their job file."""
    con = sqlite3.connect(db)
    rows = con.execute("SELECT jid, score, job_config FROM job").fetchall()
    con.close()
    good = []
    for jid, score, job_config in rows:
        on_disk = json.loads((jobs / f"{jid}.json").read_text())
        recorded = json.loads(job_config)
        if on_disk["x"] == recorded["x"] and abs(score - (recorded["x"] + 10)) < 1e-9:
            good.append(jid)
    return good


def _popen(*args: str, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("AUP_DB", None)
    return subprocess.Popen([sys.executable, "-m", "aup", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_databases_started_together_never_share_the_jobs_folder(tmp_path: Path) -> None:
    # Both runs used to pass the check before either had written a file: the job files of
    # one overwrote the other's and a.db recorded b's scores against a's x.
    write_script(tmp_path, "slow.py", SLOW_SCORE)
    path = write_experiment(tmp_path, script="slow.py", n_samples=3, parameter_config=X)
    dbs = [tmp_path / "a.db", tmp_path / "b.db"]
    procs = [_popen("run", "--db", f"sqlite:///{db}", str(path), cwd=tmp_path) for db in dbs]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    refused = next(i for i, p in enumerate(procs) if p.returncode == 2)
    stderr = outs[refused][1]
    assert "Traceback" not in stderr and "Fix:" in stderr, stderr
    assert "in use by a running experiment" in stderr or "holds the files" in stderr, stderr
    winner = dbs[1 - refused]
    assert _scores_match_job_files(winner, tmp_path / "jobs") == [1, 2, 3]
    assert not dbs[refused].exists()  # the refused run leaves no empty database behind


def test_a_running_experiment_keeps_other_databases_out_until_it_ends(tmp_path: Path) -> None:
    write_script(tmp_path, "slow.py", SLOW_SCORE)
    path = write_experiment(tmp_path, script="slow.py", n_samples=1, parameter_config=X)
    jobs = tmp_path / "jobs"
    holder = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    claim = claim_jobs_dir(jobs, holder)  # what a run of a.db holds while it runs
    proc = run_cli("run", "--db", f"sqlite:///{tmp_path / 'b.db'}", str(path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "in use by a running experiment of the database sqlite:///" in proc.stderr
    assert str(tmp_path / "a.db") in proc.stderr and "Traceback" not in proc.stderr
    assert not list(jobs.glob("*.json"))  # refused before any job file was written
    claim.release()
    holder.close()
    # a lock left by a run that ended is no obstacle (the folder holds no job files)
    proc = run_cli("run", "--db", f"sqlite:///{tmp_path / 'b.db'}", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _scores_match_job_files(tmp_path / "b.db", jobs) == [1]
    # the stale lock of a.db was removed; b.db's own lock is free again
    locks = sorted(p.name for p in jobs.glob(".aup-db-*.lock"))
    assert len(locks) == 1


def test_experiments_of_one_database_share_the_folder_at_the_same_time(tmp_path: Path) -> None:
    write_script(tmp_path, "slow.py", SLOW_SCORE)
    path = write_experiment(tmp_path, script="slow.py", n_samples=3, parameter_config=X)
    db = tmp_path / "shared.db"
    first = run_cli("run", "--db", f"sqlite:///{db}", str(path), cwd=tmp_path)  # creates it
    assert first.returncode == 0, first.stderr
    procs = [_popen("run", "--db", f"sqlite:///{db}", str(path), cwd=tmp_path)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert _scores_match_job_files(db, tmp_path / "jobs") == list(range(1, 10))


def test_the_other_databases_hint_pastes_with_pgpassword(tmp_path: Path) -> None:
    """Trial 58: the jobs-folder refusal named a PostgreSQL database as '--db
    postgresql+psycopg://aup:***@...': pasted, that sent the password '***'. Like the resume
    hints, it now puts $PGPASSWORD where the password goes."""
    import pytest

    from aup.errors import UsageError
    from aup.jobs_folder import check_jobs_dir
    from aup.store.store import pasteable_db

    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "7.json").write_text("{}")
    (jobs / ".aup-db-0123456789abcdef.lock").write_text(
        "postgresql+psycopg://aup:***@db.lan:5432/team")
    with pytest.raises(UsageError) as info:
        check_jobs_dir(jobs, f"sqlite:///{tmp_path / 'other.db'}")
    text = str(info.value)
    assert 'add --db "postgresql+psycopg://aup:$PGPASSWORD@db.lan:5432/team"' in text, text
    assert "***@" not in text.split("add --db", 1)[1]
    # no password, and SQLite paths, are quoted as before
    assert pasteable_db("postgresql+psycopg://aup@db/team") == "postgresql+psycopg://aup@db/team"
    assert pasteable_db("sqlite:////tmp/a b.db") == "'sqlite:////tmp/a b.db'"
