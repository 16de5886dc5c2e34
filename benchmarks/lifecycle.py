"""Job-lifecycle benchmarks (issue 5): concurrent readers, resume latency, scheduler memory.

Three measurements, each with a baseline from the same run:

``readers``
    500 trivial jobs at n_parallel 8 through the full stack (``python -m aup run``), while
    another process opens the SQLite database and counts the job rows every 50 ms. Goal: 500
    FINISHED rows, 0 "database is locked" errors in the reader (and the writer). Also prints the
    scheduler's own CPU time per job (goal <= 3 ms) and the wall time against a bare 8-worker
    launch loop of the same script.
``resume``
    a stopped experiment with 1000 finished jobs (10 intermediate results each, median early
    stopping configured, so the peers are reloaded too); the time from the
    ``Experiment.resume`` call to the first proposal. Goal <= 0.2 s. Baseline: the same for a new
    experiment (``Experiment.create``).
``memory``
    10,000 trivial jobs (a ``/bin/sh`` script that prints one result line) at n_parallel 8 in
    this process; the scheduler's RSS at job 1,000 and at job 10,000. Goal: growth <= 30 MB.
    Takes a few minutes; run it in the background.

``loop``
    the experiment loop and store alone: CPU per job when jobs end at once (no process
    start-up). Goal <= 3 ms.

The store micro-benchmark (>= 2000 job records per second) is ``benchmarks/store.py``.

Usage::

    python benchmarks/lifecycle.py readers [--jobs 500]
    python benchmarks/lifecycle.py resume [--jobs 1000]
    python benchmarks/lifecycle.py memory [--jobs 10000]
    python benchmarks/lifecycle.py loop [--jobs 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource as rlimit
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PY_JOB = """import json, sys
cfg = json.load(open(sys.argv[-1]))
print("#Auptimizer:", cfg["x"])
"""

SH_JOB = "#!/bin/sh\necho '#Auptimizer: 1'\n"

READER = r"""
import sqlite3, sys, time
path, stop = sys.argv[1], sys.argv[2]
import os
reads = locked = other = 0
last = 0
while not os.path.exists(stop):
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.05)
        last = con.execute("SELECT count(*) FROM job WHERE status = 'FINISHED'").fetchone()[0]
        con.close()
        reads += 1
    except sqlite3.OperationalError as err:
        if "locked" in str(err):
            locked += 1
        elif "no such table" not in str(err) and "unable to open" not in str(err):
            other += 1
    time.sleep(0.05)
print(reads, locked, other, last)
"""


def _experiment(folder: Path, script: str, n: int, parallel: int, **extra) -> Path:
    cfg = {"name": "bench", "script": script, "proposer": "random", "n_samples": n,
           "n_parallel": parallel, "target": "min",
           "parameter_config": [{"name": "x", "type": "float", "range": [0, 1]}]}
    cfg.update(extra)
    path = folder / "experiment.json"
    path.write_text(json.dumps(cfg))
    return path


def bare_loop(folder: Path, n: int, workers: int) -> float:
    """Seconds to launch the job script n times with ``workers`` threads (no Auptimizer)."""
    cfg = folder / "cfg.json"
    cfg.write_text(json.dumps({"x": 0.5}))

    def one(_: int) -> None:
        # Own session like Auptimizer's jobs: with Linux's scheduler autogroups a session is
        # a CPU-share unit, and on a busy machine that alone changes the time several-fold.
        proc = subprocess.Popen([sys.executable, str(folder / "job.py"), str(cfg)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        proc.stdout.read()
        proc.wait()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - t0


def bench_readers(n: int) -> bool:
    """500 jobs at n_parallel 8 with a reader every 50 ms."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "job.py").write_text(PY_JOB)
        exp = _experiment(folder, "job.py", n, 8)
        db = folder / ".aup" / "sqlite3.db"
        stop = folder / "stop-reader"
        env = {k: v for k, v in os.environ.items() if k != "AUP_DB"}
        reader = subprocess.Popen([sys.executable, "-c", READER, str(db), str(stop)],
                                  stdout=subprocess.PIPE, text=True)
        t0 = time.perf_counter()
        # The scheduler's own CPU time, without its children (the jobs): from /proc at the end.
        wrapper = ("import resource, runpy, sys, atexit\n"
                   "def _report():\n"
                   "    r = resource.getrusage(resource.RUSAGE_SELF)\n"
                   "    open(sys.argv[-1] + '.cpu', 'w').write(str(r.ru_utime + r.ru_stime))\n"
                   "atexit.register(_report)\n"
                   "sys.argv = ['aup', 'run', '-q', sys.argv[-1]]\n"
                   "runpy.run_module('aup', run_name='__main__')\n")
        run = subprocess.run([sys.executable, "-c", wrapper, str(exp)], cwd=folder, env=env,
                             capture_output=True, text=True)
        wall = time.perf_counter() - t0
        stop.touch()
        out, _ = reader.communicate(timeout=30)
        reads, locked, other, _last = (int(x) for x in out.split())
        con = sqlite3.connect(db)
        finished = con.execute("SELECT count(*) FROM job WHERE status='FINISHED'").fetchone()[0]
        con.close()
        cpu = float((folder / "experiment.json.cpu").read_text())
        writer_locked = ("database is locked" in run.stderr) + ("database is locked" in run.stdout)
        base = bare_loop(folder, n, 8)
    per_job_cpu_ms = 1000 * cpu / n
    print(f"readers: {n} jobs at n_parallel 8: exit {run.returncode}, {finished} FINISHED rows, "
          f"wall {wall:.2f} s (bare 8-worker loop {base:.2f} s, ratio {wall / base:.2f})")
    print(f"readers: reader did {reads} reads, {locked} 'database is locked', {other} other "
          f"errors; writer 'database is locked' messages: {writer_locked}")
    print(f"readers: scheduler CPU time {cpu:.2f} s = {per_job_cpu_ms:.2f} ms per job "
          "(includes interpreter start and imports)")
    ok = run.returncode == 0 and finished == n and locked == 0 and writer_locked == 0
    print(f"readers: {'PASS' if ok else 'FAIL'} (goal: {n} rows, 0 locked)")
    return ok


def _fill_experiment(store, n: int):
    """A stopped experiment with n finished jobs, each with 10 intermediate results."""
    from aup.config import parse_config
    from aup.experiment import Experiment, ExperimentStatus

    tmp = Path(tempfile.mkdtemp())
    (tmp / "job.py").write_text(PY_JOB)
    data = {"name": "resume-bench", "script": "job.py", "proposer": "random",
            "n_samples": n + 100, "n_parallel": 8, "target": "min",
            "parameter_config": [{"name": "x", "type": "float", "range": [0, 1]},
                                 {"name": "k", "type": "int", "range": [1, 64]},
                                 {"name": "c", "type": "choice", "range": ["a", "b", "c"]}],
            "resource_args": {"early_stop": {"aup_policy": "median", "aup_policy_steps": 2}}}
    cfg = parse_config(data, tmp, tmp / "experiment.json")
    (tmp / "experiment.json").write_text(json.dumps(data))
    t0 = time.perf_counter()
    exp = Experiment.create(cfg, store)
    t_create = time.perf_counter() - t0
    rid = store.resource_id("cpu", "localhost")
    for _ in range(n):
        p = exp.proposer.ask()
        jid, jaid = store.start_job(eid=exp.eid, job_config=p.job_config(),
                                    proposal=p.to_dict(), rid=rid, output_dir=str(tmp / "jobs"),
                                    proposer_state=exp.proposer.state_dict())
        score = float(p.params["x"])
        for i in range(10):
            store.add_result(eid=exp.eid, jid=jid, num=i, values=(score + 1 / (i + 1),),
                             receive_time=time.time(), track=True)
        exp.proposer.tell(p, score)
        store.end_attempt(eid=exp.eid, jid=jid, jaid=jaid, attempt_status="SUCCEEDED",
                          exit_code=0, fail_reason=None, detail="", output_tail="",
                          job_status="FINISHED", score=score,
                          proposer_state=exp.proposer.state_dict())
    store.end_experiment(exp.eid, ExperimentStatus.STOPPED.value)
    return exp.eid, t_create


def bench_resume(n: int) -> bool:
    """Time from Experiment.resume to the first ask, for an experiment with n jobs."""
    from aup.experiment import Experiment
    from aup.store.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/db.sqlite")
        t0 = time.perf_counter()
        eid, t_create = _fill_experiment(store, n)
        t_fill = time.perf_counter() - t0
        store.close()
        times = []
        for _ in range(5):
            store = Store(f"sqlite:///{tmp}/db.sqlite")  # a fresh process would open it too
            t0 = time.perf_counter()
            exp = Experiment.resume(store, eid)
            first = exp.proposer.ask()
            times.append(time.perf_counter() - t0)
            assert first is not None and len(exp._histories) == n
            exp.resource.close()
            store.end_experiment(eid, "STOPPED")
            store.close()
    best = min(times)
    print(f"resume: experiment with {n} finished jobs ({10 * n} intermediate results) built in "
          f"{t_fill:.1f} s ({n / t_fill:.0f} job records/s with results)")
    print(f"resume: Experiment.resume -> first ask: min {1000 * best:.1f} ms, median "
          f"{1000 * sorted(times)[2]:.1f} ms over 5 (new experiment create: "
          f"{1000 * t_create:.1f} ms, ratio {best / t_create:.2f})")
    ok = best <= 0.2
    print(f"resume: {'PASS' if ok else 'FAIL'} (goal <= 200 ms)")
    return ok


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench_memory(n: int) -> bool:
    """RSS of the scheduler at job 1,000 and job n of trivial jobs, in this process."""
    from aup.config import load_config
    from aup.experiment import Experiment, Observer
    from aup.store.store import Store

    marks = {min(1000, n // 10): None, n: None}
    samples: list[tuple[int, float]] = []

    class Sampler(Observer):
        def __init__(self) -> None:
            self.done = 0

        def on_job_ended(self, jid, attempt, outcome, job_status) -> None:
            self.done += 1
            if self.done in marks:
                marks[self.done] = _rss_mb()
            if self.done % 1000 == 0:
                samples.append((self.done, _rss_mb()))
                print(f"memory: {self.done} jobs, RSS {samples[-1][1]:.1f} MB", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        job = folder / "job.sh"
        job.write_text(SH_JOB)
        job.chmod(0o755)
        exp_path = _experiment(folder, "job.sh", n, 8)
        store = Store(f"sqlite:///{tmp}/db.sqlite")
        exp = Experiment.create(load_config(exp_path), store, observer=Sampler())
        t0 = time.perf_counter()
        result = exp.run()
        wall = time.perf_counter() - t0
        store.close()
    cpu = rlimit.getrusage(rlimit.RUSAGE_SELF)
    first, last = (marks[k] for k in sorted(marks))
    growth = last - first
    print(f"memory: {result.n_finished}/{n} finished in {wall:.0f} s "
          f"({1000 * wall / n:.1f} ms per job wall, scheduler CPU "
          f"{1000 * (cpu.ru_utime + cpu.ru_stime) / n:.2f} ms per job)")
    print(f"memory: RSS at job {sorted(marks)[0]}: {first:.1f} MB, at job {n}: {last:.1f} MB, "
          f"growth {growth:.1f} MB (ratio {last / first:.3f})")
    ok = result.n_finished == n and growth <= 30
    print(f"memory: {'PASS' if ok else 'FAIL'} (goal: growth <= 30 MB)")
    return ok


def bench_loop(n: int) -> bool:
    """Scheduler + store CPU per job, without process start-up: the cpu resource is replaced
    by one whose jobs end at once (one result line each). Baseline: the same with intermediate
    tracking on (one more transaction per job)."""
    from aup.config import parse_config
    from aup.experiment import Experiment
    from aup.job import AttemptOutcome, AttemptStatus
    from aup.resources.base import EndEvent, ResultEvent
    from aup.resources.local import CPUResourceManager
    from aup.store.store import Store

    class Instant(CPUResourceManager):
        def start(self, spec, slot) -> None:
            t = time.time()
            self.events.put(ResultEvent(spec.job_id, spec.attempt, (0.5,), t))
            self.events.put(EndEvent(spec.job_id, spec.attempt,
                                     AttemptOutcome(AttemptStatus.SUCCEEDED, 0.5, (), 0), t))

    out = {}
    for track in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "job.py").write_text(PY_JOB)
            cfg = parse_config({"script": "job.py", "n_samples": n, "n_parallel": 8,
                                "target": "min",
                                "parameter_config": [{"name": "x", "type": "float",
                                                      "range": [0, 1]}],
                                "resource_args": {"track_intermediate_results": track}}, tmp)
            store = Store(f"sqlite:///{tmp}/db.sqlite")
            exp = Experiment.create(cfg, store)
            exp.resource = Instant(cfg, exp.events)
            r0 = rlimit.getrusage(rlimit.RUSAGE_SELF)
            t0 = time.perf_counter()
            result = exp.run()
            wall = time.perf_counter() - t0
            r1 = rlimit.getrusage(rlimit.RUSAGE_SELF)
            store.close()
            cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
            out[track] = (1000 * cpu / n, 1000 * wall / n, result.n_finished)
            print(f"loop: {result.n_finished} jobs, tracking {'on' if track else 'off'}: "
                  f"CPU {out[track][0]:.2f} ms per job, wall {out[track][1]:.2f} ms per job")
    print(f"loop: tracking on / off CPU ratio {out[True][0] / out[False][0]:.2f}")
    ok = out[False][0] <= 3 and out[False][2] == n
    print(f"loop: {'PASS' if ok else 'FAIL'} (goal: <= 3 ms scheduler CPU per job)")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["readers", "resume", "memory", "loop", "all"])
    parser.add_argument("--jobs", type=int, default=None, help="number of jobs")
    args = parser.parse_args()
    ok = True
    if args.what in ("readers", "all"):
        ok &= bench_readers(args.jobs or 500)
    if args.what in ("resume", "all"):
        ok &= bench_resume(args.jobs or 1000)
    if args.what in ("loop", "all"):
        ok &= bench_loop(args.jobs or 2000)
    if args.what in ("memory", "all"):
        ok &= bench_memory(args.jobs or 10_000)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
