"""End to end on PostgreSQL: `aup run` with `storage` = a PostgreSQL URL, several experiments
from several processes at once, and bad URLs (exit 2, nothing written)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import QUADRATIC, REPO, run_cli, write_experiment, write_script

from aup.store.store import Store

pytestmark = pytest.mark.postgres


def _experiment(folder, storage: str, **extra):
    folder.mkdir(exist_ok=True)
    write_script(folder, "quad.py", QUADRATIC)
    cfg = {"script": "quad.py", "proposer": "random", "n_samples": 4, "n_parallel": 2,
           "target": "min", "storage": storage,
           "parameter_config": [{"name": "x", "type": "float", "range": [-1, 1]}]}
    cfg.update(extra)
    return write_experiment(folder, **cfg)


def test_aup_run_with_storage_postgresql(tmp_path, pg_url):
    exp = _experiment(tmp_path, pg_url, name="pg-e2e")
    r = run_cli("run", exp.name, "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "postgresql+psycopg" in r.stdout and "aup-test-pw" not in r.stdout
    assert not (tmp_path / ".aup").exists()  # nothing went to the default SQLite file
    rows = json.loads(run_cli("list", "--json", "--db", pg_url, cwd=tmp_path).stdout)
    assert [(r["name"], r["status"], r["n_finished"]) for r in rows] == [("pg-e2e", "FINISHED",
                                                                          4)]
    st = Store(pg_url)
    jobs = st.jobs(rows[0]["eid"])
    for j in jobs:
        assert abs(j["score"] - (j["job_config"]["x"] - 0.3) ** 2) < 1e-9
        assert [a["status"] for a in st.attempts(j["jid"])] == ["SUCCEEDED"]
    best = json.loads(run_cli("best", "pg-e2e", "--json", "--db", pg_url, cwd=tmp_path).stdout)
    assert best["score"] == min(j["score"] for j in jobs)
    st.close()


def test_several_experiments_from_several_processes_at_once(tmp_path, pg_url):
    env = dict(os.environ)
    env.pop("AUP_DB", None)
    env["PYTHONPATH"] = str(REPO / "src")
    procs = []
    for k in range(3):
        exp = _experiment(tmp_path / f"e{k}", pg_url, name=f"par{k}", n_samples=6)
        procs.append(subprocess.Popen([sys.executable, "-m", "aup", "run", exp.name, "-q"],
                                      cwd=exp.parent, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    st = Store(pg_url)
    rows = st.list_experiments()
    assert sorted((r["name"], r["status"], r["n_finished"]) for r in rows) == [
        ("par0", "FINISHED", 6), ("par1", "FINISHED", 6), ("par2", "FINISHED", 6)]
    all_jids = [j["jid"] for r in rows for j in st.jobs(r["eid"])]
    assert len(all_jids) == len(set(all_jids)) == 18
    st.close()


def test_wrong_password_or_dead_server_exit_2_and_write_nothing(tmp_path, postgres_server):
    bad = postgres_server.url("postgres", password="secret-wrong")
    exp = _experiment(tmp_path, bad)
    r = run_cli("run", exp.name, cwd=tmp_path)
    assert r.returncode == 2
    assert "password authentication failed" in r.stderr and "secret-wrong" not in r.stderr
    assert "Traceback" not in r.stderr
    closed = bad.replace(f":{postgres_server.port}/", ":1/")
    exp = _experiment(tmp_path, closed)
    r = run_cli("run", exp.name, cwd=tmp_path)
    assert r.returncode == 2 and "cannot open database" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment.json", "quad.py"]
