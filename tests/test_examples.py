"""The shipped examples run for real through the CLI, from another directory."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import run_cli


def _jobs(db: Path) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    return con.execute("SELECT * FROM job ORDER BY jid").fetchall()


def test_digits_svm_reaches_097_in_20_jobs(tmp_path: Path, examples: Path) -> None:
    pytest.importorskip("sklearn")
    db = tmp_path / "digits.db"
    proc = run_cli("run", str(examples / "digits_svm" / "experiment.json"), "--db",
                   f"sqlite:///{db}", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = _jobs(db)
    assert len(jobs) == 20 and all(j["status"] == "FINISHED" for j in jobs)
    assert max(j["score"] for j in jobs) >= 0.97


@pytest.mark.parametrize("name, n_jobs", [("experiment_grid.json", 81),
                                          ("experiment_random.json", 30)])
def test_rosenbrock(tmp_path: Path, examples: Path, name: str, n_jobs: int) -> None:
    db = tmp_path / "r.db"
    proc = run_cli("run", str(examples / "rosenbrock" / name), "--db", f"sqlite:///{db}",
                   cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = _jobs(db)
    assert len(jobs) == n_jobs
    best = min(jobs, key=lambda j: j["score"])
    if name == "experiment_grid.json":  # the grid contains the optimum (1, 1)
        assert json.loads(best["job_config"])["x"] == 1 and best["score"] == 0


def test_bash_job(tmp_path: Path, examples: Path) -> None:
    db = tmp_path / "b.db"
    proc = run_cli("run", str(examples / "bash_job" / "experiment.json"), "--db",
                   f"sqlite:///{db}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for j in _jobs(db):
        cfg = json.loads(j["job_config"])
        assert j["score"] == pytest.approx((cfg["x"] - 1) ** 2 + cfg["n"], abs=1e-5)
