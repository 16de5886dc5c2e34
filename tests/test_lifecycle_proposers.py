"""The lifecycle with every registered proposer (real job processes, the Python API): failed
jobs (ignore_fail), early-stopped jobs, a stop in the middle and a resume that finishes the
experiment without re-running finished jobs."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_experiment, write_script

from aup.config import load_config
from aup.experiment import Experiment, ExperimentStatus, Observer
from aup.proposers import registry
from aup.store.store import Store

# Job 2 fails; job 3 reports a terrible curve slowly (early-stopped); the others are fine.
SCRIPT = """
import json, sys, time
cfg = json.load(open(sys.argv[-1]))
x, jid = cfg["x"], cfg["job_id"]
if jid == 2:
    sys.exit(3)
budget = float(cfg.get("n_iterations", 1))
for i in range(1, 5):
    print("#Auptimizer:", (x - 0.6) ** 2 + 1.0 / (i * budget) + (100 if jid == 3 else 0),
          flush=True)
    if jid == 3:
        time.sleep(1)
"""

EXTRA = {
    "hyperband": {"max_iter": 9, "eta": 3},
    "bohb": {"n_iterations": 1, "min_budget": 0.1, "max_budget": 1.0, "eta": 3},
    "hyperopt": {"n_startup_jobs": 3},
}


class StopAfter(Observer):
    """Asks the experiment to stop after ``n`` jobs ended."""

    def __init__(self, n: int):
        self.n = n
        self.ended = 0
        self.exp: Experiment | None = None

    def on_start(self, experiment: Experiment) -> None:
        self.exp = experiment

    def on_job_ended(self, jid, attempt, outcome, job_status) -> None:
        self.ended += 1
        if self.ended == self.n and self.exp is not None:
            self.exp.request_stop()


@pytest.mark.parametrize("proposer", registry.names())
def test_failures_early_stop_and_resume_with_every_proposer(tmp_path: Path, proposer):
    write_script(tmp_path, "job.py", SCRIPT)
    path = write_experiment(
        tmp_path, script="job.py", proposer=proposer, n_samples=8, n_parallel=2,
        random_seed=3, target="min", job_failure={"ignore_fail": True},
        parameter_config=[{"name": "x", "type": "float", "range": [0, 1], "n": 8}],
        resource_args={"early_stop": {"aup_policy": "median", "aup_policy_steps": 2,
                                      "min_peers": 1}},
        **EXTRA.get(proposer, {}))
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        exp = Experiment.create(load_config(path), store, observer=StopAfter(3))
        first = exp.run()
        assert first.status is ExperimentStatus.STOPPED
        before = {j["jid"]: j for j in store.jobs(exp.eid)}
        done = {jid for jid, j in before.items() if j["status"] != "INTERRUPTED"}
        assert len(done) >= 3
        resumed = Experiment.resume(store, exp.eid)
        result = resumed.run()
        assert result.status is ExperimentStatus.FINISHED, result.error
        rows = store.jobs(exp.eid)
        total = resumed.proposer.total
        if total is not None:
            assert len(rows) == total
        assert {r["status"] for r in rows} <= {"FINISHED", "FAILED", "EARLY_STOPPED"}
        for r in rows:
            if r["jid"] in done:  # never re-run
                assert r["n_attempts"] == before[r["jid"]]["n_attempts"]
                assert r["status"] == before[r["jid"]]["status"]
        jids = [r["jid"] for r in rows]
        assert len(set(jids)) == len(jids)
        assert result.best is not None
        assert resumed.proposer.pending == {}
        status = {r["jid"]: r["status"] for r in rows}
        assert status[2] == "FAILED"
        assert status[3] == "EARLY_STOPPED"
    finally:
        store.close()


@pytest.mark.postgres
def test_lifecycle_on_postgresql(tmp_path: Path, pg_url: str):
    """Failures, early stopping, stop and resume (with the peers' histories) on PostgreSQL."""
    write_script(tmp_path, "job.py", SCRIPT)
    path = write_experiment(
        tmp_path, script="job.py", proposer="random", n_samples=6, n_parallel=2,
        target="min", job_failure={"ignore_fail": True, "job_retries": 1},
        parameter_config=[{"name": "x", "type": "float", "range": [0, 1]}],
        resource_args={"early_stop": {"aup_policy": "median", "aup_policy_steps": 2,
                                      "min_peers": 1},
                       "save_model": True})
    store = Store(pg_url)
    try:
        exp = Experiment.create(load_config(path), store, observer=StopAfter(3))
        assert exp.run().status is ExperimentStatus.STOPPED
        resumed = Experiment.resume(store, exp.eid)
        assert resumed._histories  # reloaded from intermediate_result
        result = resumed.run()
        assert result.status is ExperimentStatus.FINISHED
        status = {r["jid"]: r["status"] for r in store.jobs(exp.eid)}
        assert len(status) == 6 and status[2] == "FAILED" and status[3] == "EARLY_STOPPED"
        assert [a["fail_reason"] for a in store.attempts(2)] == ["NONZERO_EXIT"] * 2
        (rerun,) = [j for j in store.jobs(exp.eid, include_rerun=True) if j["is_rerun"]]
        assert rerun["status"] == "FINISHED"
    finally:
        store.close()
