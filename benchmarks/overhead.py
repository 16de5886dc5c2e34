"""Scheduler overhead per job, against a bare launch loop measured in the same run.

Runs N trivial jobs (a Python script that prints one result line) through the full stack
(``python -m aup run``: CLI, random proposer, cpu resource, SQLite store) at n_parallel 1 and 2,
and the same script launched by a bare loop (1 and 2 workers) with the same interpreter. Prints
ms per job for both, the difference and the ratio, and the cost of ``import aup`` inside a job
against ``python -c pass``.

Usage::

    python benchmarks/overhead.py            # 200 jobs
    python benchmarks/overhead.py --jobs 50  # quicker
    python benchmarks/overhead.py --rounds 5 # more bare/aup pairs (this machine is noisy)

Goals (issue 2): overhead <= 3 ms per job at n_parallel 1; throughput at n_parallel 2 >= 0.8 x
the bare 2-worker loop; ``import aup`` <= 15 ms over bare Python start.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

JOB = """import json, sys
cfg = json.load(open(sys.argv[-1]))
print("#Auptimizer:", cfg["x"])
"""


def bare_loop(folder: Path, n: int, workers: int) -> float:
    """Launch the job n times with `workers` threads; return seconds."""
    script = folder / "job.py"
    cfg = folder / "cfg.json"
    cfg.write_text(json.dumps({"x": 0.5}))

    def one(_: int) -> None:
        proc = subprocess.Popen([sys.executable, str(script), str(cfg)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        out = proc.stdout.read()
        proc.wait()
        assert b"#Auptimizer:" in out

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - start


def full_stack(folder: Path, n: int, parallel: int) -> tuple[float, float]:
    """Run the experiment through the CLI; return (wall seconds, loop seconds from the DB)."""
    exp = folder / f"exp{parallel}.json"
    db = folder / f"bench{parallel}.db"
    for old in folder.glob(db.name + "*"):
        old.unlink()  # a fresh database for each run, as for a first experiment
    exp.write_text(json.dumps({
        "script": "job.py", "proposer": "random", "n_samples": n, "n_parallel": parallel,
        "target": "min", "parameter_config": [{"name": "x", "range": [0, 1], "type": "float"}]}))
    env = dict(os.environ, AUP_DB=f"sqlite:///{db}")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aup", "run", "-q", str(exp)], cwd=folder, env=env,
                   check=True, capture_output=True)
    wall = time.perf_counter() - start
    con = sqlite3.connect(db)
    t0, t1 = con.execute("SELECT start_time, end_time FROM experiment").fetchone()
    n_done = con.execute("SELECT count(*) FROM job WHERE status='FINISHED'").fetchone()[0]
    assert n_done == n, n_done
    return wall, t1 - t0


def startup(cmd: list[str], repeat: int) -> float:
    """Median seconds of running cmd."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3,
                        help="bare/aup pairs per n_parallel, run back to back (medians shown)")
    parser.add_argument("--repeat", type=int, default=30, help="runs for the import timing")
    args = parser.parse_args()
    n = args.jobs
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "job.py").write_text(JOB)
        rows = []
        for parallel in (1, 2):
            # This machine's speed drifts by tens of percent within a minute: each aup run is
            # paired with a bare loop run right before it, and the medians of the pairs count.
            pairs = []
            for _ in range(args.rounds):
                bare = bare_loop(folder, n, parallel)
                wall, loop = full_stack(folder, n, parallel)
                pairs.append((bare, wall, loop))
            rows.append((parallel, pairs))
        print(f"{n} trivial jobs, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
              f"median of {args.rounds} back-to-back pairs")
        print(f"{'n_parallel':>10} {'bare ms/job':>12} {'aup ms/job':>11} {'(loop only)':>12} "
              f"{'overhead ms':>12} {'throughput ratio':>17}")
        for parallel, pairs in rows:
            med = statistics.median
            b = med(p[0] for p in pairs) / n * 1e3
            w = med(p[1] for p in pairs) / n * 1e3
            lp = med(p[2] for p in pairs) / n * 1e3
            over = med((p[1] - p[0]) for p in pairs) / n * 1e3
            ratio = med(p[0] / p[1] for p in pairs)
            print(f"{parallel:>10} {b:>12.2f} {w:>11.2f} {lp:>12.2f} {over:>12.2f} "
                  f"{ratio:>17.3f}")
            each = ", ".join(f"{(p[1] - p[0]) / n * 1e3:.2f} ms / {p[0] / p[1]:.3f}x"
                             for p in pairs)
            print(f"{'':>10} pairs: {each}")
        py = startup([sys.executable, "-c", "pass"], args.repeat)
        imp = startup([sys.executable, "-c", "import aup"], args.repeat)
        print(f"python -c pass: {py * 1e3:.1f} ms; python -c 'import aup': {imp * 1e3:.1f} ms; "
              f"import aup costs {(imp - py) * 1e3:.1f} ms (ratio {imp / py:.2f})")


if __name__ == "__main__":
    main()
