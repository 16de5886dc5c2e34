"""Scheduler overhead per job, against a bare launch loop measured in the same run.

Runs N trivial jobs (a Python script that prints one result line) through the full stack
(``python -m aup run``: CLI, random proposer, cpu resource, SQLite store) at n_parallel 1 and 2,
and the same script launched by a bare loop (1 and 2 workers) with the same interpreter. Prints
ms per job for both, the difference and the ratio, and the cost of ``import aup`` inside a job
against ``python -c pass``.

Two views of the same runs:

* **whole command**: wall time of ``aup run`` for N jobs (Python start, imports, database
  creation and the summary included) against the bare loop of N jobs, per job;
* **per job** (marginal): each run is also done with ``--small`` jobs (default 50), and the
  slope ``(T(N) - T(small)) / (N - small)`` is the time one more job costs. The one-time cost of
  starting the command cancels out of the slope and is shown on its own ("fixed start-up":
  the difference of the intercepts). The throughput ratio is the ratio of the slopes.

* **in one run** (n_parallel 1): ``aup run`` with time stamps around each job process; the
  time per job outside the job processes (writing the job's files, starting it, recording its
  result, proposing the next) is measured within one run, so the machine's pace, which drifts
  between the paired runs above, cancels out.

Usage::

    python benchmarks/overhead.py            # 200 jobs (and 50 for the slope)
    python benchmarks/overhead.py --jobs 100 --small 25  # quicker
    python benchmarks/overhead.py --rounds 5 # more rounds (this machine is noisy)
    python benchmarks/overhead.py --dir /var/tmp  # where the experiment folder goes

The experiment folder is a new temporary folder under ``--dir`` (default: the system's temporary
folder, ``$TMPDIR`` or ``/tmp``). Each job attempt creates two files there (its config and its
output file), which the bare loop does not, so the cost of creating a file in that folder is
measured and printed: on the development VM it varies from 0.03 to 0.7 ms from one run to the
next, in ``/tmp`` as in ``/var/tmp`` (the same ext4 device).

Goals (issue 2): overhead <= 3 ms per job at n_parallel 1; throughput at n_parallel 2 >= 0.8 x
the bare 2-worker loop; ``import aup`` <= 15 ms over bare Python start.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
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
    shutil.rmtree(folder / "jobs", ignore_errors=True)  # (and no job files of the last one)
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


#: Runs ``aup run`` with time stamps around each local job's process (benchmark only: the
#: methods of ``LocalProcess`` are wrapped, nothing in aup changes) and writes them as JSON.
_STAMPED = """
import atexit, json, runpy, sys, time
from aup.resources import local
stamps = {}
def wrap(name):
    orig = getattr(local.LocalProcess, name)
    def stamped(self, *a, **k):
        out = orig(self, *a, **k)
        stamps.setdefault(self.spec.job_id, {})[name] = time.perf_counter()
        return out
    setattr(local.LocalProcess, name, stamped)
for name in ("spawn", "on_exit", "_finish"):
    wrap(name)
out, exp = sys.argv[1], sys.argv[2]
atexit.register(lambda: open(out, "w").write(json.dumps(stamps)))
sys.argv = ["aup", "run", "-q", exp]
runpy.run_module("aup", run_name="__main__")
"""


def in_run_overhead(folder: Path, n: int) -> tuple[float, float]:
    """One ``aup run`` of n jobs at n_parallel 1 with the job processes timed inside it.

    Returns ``(ms per job, ms per job outside the job processes)``: the second is the time
    from the first spawn to the last job's end, less each job process's own life (from its
    spawn returning to its exit being seen), per job. Both parts are measured in the same run,
    so the machine's drifting pace cancels out; what it leaves out is any slowing of the job
    processes themselves (the paired bare-loop figures include that).
    """
    exp = folder / "exp_stamped.json"
    db = folder / "stamped.db"
    for old in folder.glob(db.name + "*"):
        old.unlink()
    shutil.rmtree(folder / "jobs", ignore_errors=True)
    exp.write_text(json.dumps({
        "script": "job.py", "proposer": "random", "n_samples": n, "n_parallel": 1,
        "target": "min", "parameter_config": [{"name": "x", "range": [0, 1], "type": "float"}]}))
    out = folder / "stamps.json"
    env = dict(os.environ, AUP_DB=f"sqlite:///{db}")
    subprocess.run([sys.executable, "-c", _STAMPED, str(out), str(exp)], cwd=folder, env=env,
                   check=True, capture_output=True)
    stamps = [v for _, v in sorted((int(k), v) for k, v in json.loads(out.read_text()).items())]
    assert len(stamps) == n, len(stamps)
    span = stamps[-1]["_finish"] - stamps[0]["spawn"]
    lives = sum(s["on_exit"] - s["spawn"] for s in stamps)
    return span / n * 1e3, (span - lives) / n * 1e3


def file_create_ms(folder: Path, n: int = 300) -> float:
    """Milliseconds to create, write (50 bytes) and close one new file in ``folder`` (median
    of 3 batches of ``n``); the files are removed."""
    probe = folder / "create-probe"
    batches = []
    for _ in range(3):
        probe.mkdir()
        start = time.perf_counter()
        for i in range(n):
            with open(probe / f"{i}.json", "w") as f:
                f.write("x" * 50)
        batches.append((time.perf_counter() - start) / n * 1e3)
        shutil.rmtree(probe)
    return statistics.median(batches)


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
    parser.add_argument("--small", type=int, default=50,
                        help="jobs of the short runs that give the per-job slope (0: none)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per n_parallel, each a bare and an aup run of both sizes, "
                             "back to back (medians shown)")
    parser.add_argument("--repeat", type=int, default=30, help="runs for the import timing")
    parser.add_argument("--dir", default=None,
                        help="folder that holds the experiment folder (default: the system's "
                             "temporary folder)")
    args = parser.parse_args()
    n, m = args.jobs, args.small
    if not 0 <= m < n:
        parser.error("--small must be at least 0 and below --jobs")
    med = statistics.median
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        (folder / "job.py").write_text(JOB)
        create_ms = file_create_ms(folder)
        rows = []
        for parallel in (1, 2):
            # This machine's speed drifts by tens of percent within a minute: every aup run is
            # paired with a bare loop run right before it, and the medians of the rounds count.
            rounds = []
            for _ in range(args.rounds):
                bare = bare_loop(folder, n, parallel)
                wall, loop = full_stack(folder, n, parallel)
                bare_s = aup_s = math.nan
                if m:
                    bare_s = bare_loop(folder, m, parallel)
                    aup_s = full_stack(folder, m, parallel)[0]
                rounds.append((bare, wall, loop, bare_s, aup_s))
            rows.append((parallel, rounds))
        print(f"{n} trivial jobs, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
              f"median of {args.rounds} rounds, in {folder} (creating a file there: "
              f"{create_ms:.3f} ms)")
        print("whole command (start-up included, spread over the jobs):")
        print(f"{'n_parallel':>10} {'bare ms/job':>12} {'aup ms/job':>11} {'(loop only)':>12} "
              f"{'overhead ms':>12} {'throughput ratio':>17}")
        for parallel, rounds in rows:
            b = med(r[0] for r in rounds) / n * 1e3
            w = med(r[1] for r in rounds) / n * 1e3
            lp = med(r[2] for r in rounds) / n * 1e3
            over = med((r[1] - r[0]) for r in rounds) / n * 1e3
            ratio = med(r[0] / r[1] for r in rounds)
            print(f"{parallel:>10} {b:>12.2f} {w:>11.2f} {lp:>12.2f} {over:>12.2f} "
                  f"{ratio:>17.3f}")
            each = ", ".join(f"{(r[1] - r[0]) / n * 1e3:.2f} ms / {r[0] / r[1]:.3f}x"
                             for r in rounds)
            print(f"{'':>10} rounds: {each}")
        if m:
            print(f"per job (slope between {m} and {n} jobs) and the fixed start-up:")
            print(f"{'n_parallel':>10} {'bare ms/job':>12} {'aup ms/job':>11} "
                  f"{'overhead ms':>12} {'throughput ratio':>17} {'fixed start-up ms':>18}")
            for parallel, rounds in rows:
                bare_k = [(r[0] - r[3]) / (n - m) for r in rounds]
                aup_k = [(r[1] - r[4]) / (n - m) for r in rounds]
                fixed = [(r[4] - aup_k[i] * m) - (r[3] - bare_k[i] * m)
                         for i, r in enumerate(rounds)]
                print(f"{parallel:>10} {med(bare_k) * 1e3:>12.2f} {med(aup_k) * 1e3:>11.2f} "
                      f"{med(a - b for a, b in zip(aup_k, bare_k, strict=True)) * 1e3:>12.2f} "
                      f"{med(b / a for a, b in zip(aup_k, bare_k, strict=True)):>17.3f} "
                      f"{med(fixed) * 1e3:>18.0f}")
                each = ", ".join(f"{(a - b) * 1e3:.2f} ms / {b / a:.3f}x"
                                 for a, b in zip(aup_k, bare_k, strict=True))
                print(f"{'':>10} rounds: {each}")
        inside = [in_run_overhead(folder, n) for _ in range(args.rounds)]
        print(f"in one run (n_parallel 1, drift-free): {med(i[0] for i in inside):.2f} ms per "
              f"job, of which {med(i[1] for i in inside):.2f} ms outside the job processes "
              "(writing job files, starting the process, recording, proposing); rounds: "
              + ", ".join(f"{i[1]:.2f}" for i in inside))
        py = startup([sys.executable, "-c", "pass"], args.repeat)
        imp = startup([sys.executable, "-c", "import aup"], args.repeat)
        print(f"python -c pass: {py * 1e3:.1f} ms; python -c 'import aup': {imp * 1e3:.1f} ms; "
              f"import aup costs {(imp - py) * 1e3:.1f} ms (ratio {imp / py:.2f})")


if __name__ == "__main__":
    main()
