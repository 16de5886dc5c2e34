"""SIGTERM stops an experiment on the ``ray`` resource like Ctrl-C (a real local Ray head).

``ray.init`` installs its own SIGTERM handler (``sys.exit(15)``) over the one ``aup run`` had
installed, so a ``kill <pid>`` during a Ray run exited 15 with a traceback instead of stopping
the jobs and printing the resume hint (found in the review of trial 51)."""

from __future__ import annotations

import signal
from pathlib import Path

from lifecycle_helpers import experiment, finish, jobs, query, setup, start_cli, wait_for

pytest_plugins = ["fixtures_ray"]

SLOW = """
import json, sys, time
cfg = json.load(open(sys.argv[-1]))
time.sleep(60)
print("#Auptimizer:", cfg["x"])
"""


def test_sigterm_stops_a_ray_experiment_cleanly(tmp_path: Path, ray_head: str) -> None:
    exp = setup(tmp_path, SLOW, n_samples=2, n_parallel=1, resource="ray",
                resource_args={"address": ray_head, "num_cpus": 1},
                parameter_config=[{"name": "x", "type": "float", "range": [0, 1], "n": 2}])
    proc = start_cli(str(exp), cwd=tmp_path)
    wait_for(lambda: query(tmp_path, "SELECT jid FROM job_attempt WHERE status = 'RUNNING'"),
             what="a running Ray job", timeout=120)
    proc.send_signal(signal.SIGTERM)
    rc, out, err = finish(proc, tmp_path, timeout=120)
    assert rc == 130, out + err
    assert "Traceback" not in err and "resume with: aup resume 1" in out + err, out + err
    assert experiment(tmp_path)["status"] == "STOPPED"
    assert [j["status"] for j in jobs(tmp_path)] == ["INTERRUPTED"]
