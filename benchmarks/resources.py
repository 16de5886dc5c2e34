"""Scheduling overhead of the resources (run on demand; not collected by pytest).

    python benchmarks/resources.py            # full: 100 x 1 s jobs on cpu and ray, 50 SSH jobs
    python benchmarks/resources.py --quick    # 20 x 0.5 s jobs, 20 SSH jobs
    python benchmarks/resources.py --only cpu,ssh --out benchmarks/results/resources.jsonl

What it measures, each time against a baseline measured in the same run:

* ``cpu``: N jobs that sleep S seconds (a ``/bin/sh`` script) on 2 cpu slots. Ideal = N*S/2.
  Baseline: the same script started N times by two plain Python threads (subprocess, no
  Auptimizer). Goal: wall time <= 1.02 x ideal.
* ``ray``: the same jobs on a 2-CPU local Ray instance started by the resource (``ray`` with no
  address). The job phase (first job start to last job end, from the database) is compared with
  the ideal; Ray's start-up is reported apart. Goal: job phase <= 1.10 x ideal.
* ``ssh``: M trivial jobs (print the result line) on two loopback sshd nodes; overhead per job
  = job-phase time x 2 slots / M, next to the cost of one plain ``ssh`` round trip by paramiko.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

SLEEP_SCRIPT = '#!/bin/sh\nsleep {sleep}\necho "#Auptimizer: 1"\n'


def _experiment(folder: Path, n: int, sleep: float, resource: str, args: dict,
                workingdir: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "job.sh"
    script.write_text(SLEEP_SCRIPT.format(sleep=sleep))
    script.chmod(0o755)
    cfg = {"name": f"bench-{resource}", "script": "job.sh", "proposer": "random",
           "n_samples": n, "n_parallel": 2, "target": "min", "resource": resource,
           "resource_args": args,
           "parameter_config": [{"name": "x", "range": [0, 1], "type": "float"}]}
    if workingdir:
        cfg["workingdir"] = workingdir
    path = folder / "experiment.json"
    path.write_text(json.dumps(cfg))
    return path


def _run(path: Path) -> tuple[float, float, int]:
    """Run an experiment in-process; returns (wall seconds, job-phase seconds, n finished)."""
    from aup.config import load_config
    from aup.experiment import Experiment
    from aup.store.store import open_store

    config = load_config(path)
    store = open_store(f"sqlite:///{path.parent / 'aup.db'}")
    t0 = time.perf_counter()
    exp = Experiment.create(config, store)
    result = exp.run()
    wall = time.perf_counter() - t0
    atts = [a for j in store.jobs(result.eid) for a in store.attempts(j["jid"])]
    phase = max(a["end_time"] for a in atts) - min(a["start_time"] for a in atts)
    store.close()
    if result.status.value != "FINISHED":
        raise SystemExit(f"benchmark experiment failed: {result.error}")
    return wall, phase, result.n_finished


def _baseline(script: Path, n: int) -> float:
    """N runs of the script by 2 plain threads (no Auptimizer)."""
    todo = list(range(n))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            subprocess.run([str(script), "cfg.json"], stdout=subprocess.DEVNULL, check=True)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def bench_cpu(tmp: Path, n: int, sleep: float) -> dict:
    path = _experiment(tmp / "cpu", n, sleep, "cpu", {})
    base = _baseline(path.parent / "job.sh", n)
    wall, phase, done = _run(path)
    ideal = n * sleep / 2
    return {"resource": "cpu", "jobs": done, "ideal_s": ideal, "baseline_s": round(base, 2),
            "wall_s": round(wall, 2), "wall/ideal": round(wall / ideal, 4),
            "wall/baseline": round(wall / base, 4), "goal": "wall/ideal <= 1.02"}


def bench_ray(tmp: Path, n: int, sleep: float) -> dict:
    path = _experiment(tmp / "ray", n, sleep, "ray", {"num_cpus": 1})
    wall, phase, done = _run(path)
    ideal = n * sleep / 2
    return {"resource": "ray (local, 2 CPUs)", "jobs": done, "ideal_s": ideal,
            "wall_s": round(wall, 2), "startup_s": round(wall - phase, 2),
            "job_phase_s": round(phase, 2), "phase/ideal": round(phase / ideal, 4),
            "goal": "phase/ideal <= 1.10"}


def bench_ssh(tmp: Path, m: int) -> dict:
    from fixtures_ssh import running_ssh_servers

    (tmp / "sshd").mkdir()
    with running_ssh_servers(tmp / "sshd") as servers:
        remote = tmp / "remote"
        remote.mkdir()
        path = _experiment(tmp / "ssh", m, 0, "node", servers.node_args(), str(remote))
        (path.parent / "job.sh").write_text('#!/bin/sh\necho "#Auptimizer: 1"\n')
        wall, phase, done = _run(path)
        # One plain command over an open paramiko connection, for comparison.
        from aup.resources.ssh import Node, NodeOptions, parse_host

        node = Node("n", parse_host(servers.entries()[0]),
                    NodeOptions(known_hosts=str(servers.known_hosts)))
        node.run("true")
        t0 = time.perf_counter()
        for _ in range(10):
            node.run("true")
        rtt = (time.perf_counter() - t0) / 10
        node.close()
    return {"resource": "node (2 loopback sshd)", "jobs": done, "wall_s": round(wall, 2),
            "job_phase_s": round(phase, 2),
            "overhead_per_job_s": round(phase * 2 / m, 4),
            "plain_ssh_command_s": round(rtt, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter jobs")
    ap.add_argument("--only", default="cpu,ray,ssh", help="comma-separated: cpu,ray,ssh")
    ap.add_argument("--out", help="also append the results (JSON lines) to this file")
    args = ap.parse_args()
    n, sleep, m = (20, 0.5, 20) if args.quick else (100, 1.0, 50)
    only = set(args.only.split(","))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    load = os.getloadavg()[0]

    def report(row: dict) -> None:
        row = {**row, "quick": args.quick, "cpus": os.cpu_count(),
               "load_avg_before": round(load, 2), "time": time.strftime("%Y-%m-%d %H:%M")}
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    with tempfile.TemporaryDirectory(prefix="aupbench") as d:
        tmp = Path(d)
        if "cpu" in only:
            report(bench_cpu(tmp, n, sleep))
        if "ssh" in only:
            report(bench_ssh(tmp, m))
        if "ray" in only:
            report(bench_ray(tmp, n, sleep))

if __name__ == "__main__":
    main()
