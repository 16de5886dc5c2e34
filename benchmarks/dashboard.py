"""Dashboard speed with a large experiment: 100,000 jobs x 30 intermediate results in SQLite.

Fills a fresh SQLite database directly through SQLAlchemy Core (bulk inserts, no experiment
run), then times the REST API in-process (FastAPI TestClient: routing, SQL, JSON encoding)
against the targets of the dashboard issue:

- experiments list and the first page of the job table: <= 300 ms each;
- the experiment page's charts (history + parallel coordinates + curves): <= 1 s together.

Baseline measured in the same run: loading every job row of the experiment the way a naive
page would (``Store.jobs``), which the down-sampled endpoints replace.

Run: ``python benchmarks/dashboard.py [--jobs 100000] [--results 30] [--db PATH]``
(an existing --db file of the right size is reused).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, insert, select

from aup.store import schema as s
from aup.store.store import Store

CHUNK = 100_000


def fill(store: Store, n_jobs: int, n_results: int, seed: int = 0) -> int:
    """Insert one big experiment (and two small ones) directly; returns the big one's eid."""
    rng = random.Random(seed)
    cfg = {"proposer": "random", "n_samples": n_jobs, "target": "min", "script": "train.py",
           "resource": "cpu", "n_parallel": 8,
           "parameter_config": [{"name": "lr", "range": [1e-5, 1e-1], "type": "float"},
                                {"name": "layers", "range": [1, 8], "type": "int"},
                                {"name": "opt", "range": ["sgd", "adam", "rmsprop"],
                                 "type": "choice"}],
           "resource_args": {"track_intermediate_results": True,
                             "multi_res_labels": ["accuracy"]}}
    eid = store.create_experiment(user="bench", name="big", config=cfg, proposer="random",
                                  target="min", n_total=n_jobs, config_path=None,
                                  workingdir="/tmp/bench", status="FINISHED")
    for name in ("small-a", "small-b"):
        store.create_experiment(user="bench", name=name, config=cfg, proposer="random",
                                target="min", n_total=10, config_path=None,
                                workingdir="/tmp/bench", status="FINISHED")
    rid = store.resource_id("cpu", "0")
    t0 = 1.7e9
    with store.engine.begin() as c:
        first = (c.execute(select(func.max(s.job.c.jid))).scalar() or 0) + 1
        for lo in range(0, n_jobs, CHUNK):
            jobs, attempts, inter, multi = [], [], [], []
            for i in range(lo, min(n_jobs, lo + CHUNK)):
                jid = first + i
                params = {"lr": 10 ** rng.uniform(-5, -1), "layers": rng.randint(1, 8),
                          "opt": rng.choice(["sgd", "adam", "rmsprop"])}
                failed = rng.random() < 0.03
                final = None if failed else rng.random() + abs(params["layers"] - 4) / 4
                start = t0 + i * 2.0
                end = start + rng.uniform(1, 100)
                jobs.append({"jid": jid, "eid": eid, "score": final, "start_time": start,
                             "end_time": end, "status": "FAILED" if failed else "FINISHED",
                             "job_config": json.dumps(params), "proposal": "{}",
                             "fail_reason": "NONZERO_EXIT" if failed else None,
                             "n_attempts": 1, "is_rerun": False})
                attempts.append({"jid": jid, "num": 0, "rid": rid, "start_time": start,
                                 "end_time": end, "status": "FAILED" if failed else "SUCCEEDED",
                                 "exit_code": 1 if failed else 0,
                                 "fail_reason": "NONZERO_EXIT" if failed else None,
                                 "detail": "exit code 1" if failed else "",
                                 "output_path": f"/tmp/bench/jobs/{jid}.0.out"})
                base = (final if final is not None else 1.0) + 1.0
                for k in range(n_results):
                    inter.append({"jid": jid, "num": k, "score": base * (1 - k / n_results),
                                  "receive_time": start + k})
                if not failed:
                    multi.append({"jid": jid, "eid": eid, "label_order": 1,
                                  "value": rng.random(), "receive_time": end,
                                  "is_last_result": True})
            c.execute(insert(s.job), jobs)
            c.execute(insert(s.job_attempt), attempts)
            for k in range(0, len(inter), CHUNK):
                c.execute(insert(s.intermediate_result), inter[k:k + CHUNK])
            if multi:
                c.execute(insert(s.multiple_result), multi)
            print(f"  inserted {min(n_jobs, lo + CHUNK)} jobs", file=sys.stderr)
    return eid


def timed(fn, repeat: int = 5) -> tuple[float, float, object]:
    """Median wall time and median CPU time of this process (all threads), in seconds, over
    ``repeat`` calls after one warm-up call. CPU time shows the cost on a loaded machine."""
    out = fn()
    walls, cpus = [], []
    for _ in range(repeat):
        t, p = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - p)
    return statistics.median(walls), statistics.median(cpus), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--results", type=int, default=30)
    ap.add_argument("--db", help="SQLite file (default: a temporary one)")
    args = ap.parse_args(argv)

    from fastapi.testclient import TestClient

    from aup.dashboard.app import create_app

    tmp = tempfile.TemporaryDirectory()
    path = Path(args.db) if args.db else Path(tmp.name) / "bench.db"
    store = Store(f"sqlite:///{path}")
    with store.engine.connect() as c:
        big = c.execute(select(s.experiment.c.eid).where(s.experiment.c.name == "big")).scalar()
        n_have = c.execute(select(func.count()).select_from(s.job)
                           .where(s.job.c.eid == big)).scalar() if big else 0
    if not big or n_have != args.jobs:
        t = time.perf_counter()
        big = fill(store, args.jobs, args.results)
        print(f"filled {args.jobs} jobs x {args.results} results in "
              f"{time.perf_counter() - t:.1f} s ({path})")
    for table in s.metadata.sorted_tables:  # a reused database gets indexes added since
        for index in table.indexes:
            index.create(store.engine, checkfirst=True)
    with store.engine.connect() as c:
        n_inter = c.execute(select(func.count()).select_from(s.intermediate_result)).scalar()
    print(f"database: {path.stat().st_size / 1e6:.0f} MB, {n_inter} intermediate results")

    client = TestClient(create_app(store), base_url="http://127.0.0.1")

    def get(url: str):
        def call():
            r = client.get(url)
            assert r.status_code == 200, r.text
            return r
        return call

    baseline, _, jobs = timed(lambda: store.jobs(big), repeat=3)
    print(f"baseline: Store.jobs() loads all {len(jobs)} jobs in {baseline * 1000:.0f} ms")
    rows = []
    targets = [
        ("experiments list", "/api/experiments", 0.3),
        ("job table, first page", f"/api/experiments/{big}/jobs?limit=50", 0.3),
        ("job table, by score", f"/api/experiments/{big}/jobs?limit=50&sort=score", 0.3),
        ("job table, by duration desc",
         f"/api/experiments/{big}/jobs?limit=50&sort=duration&order=desc", 0.3),
        ("job table, FAILED only", f"/api/experiments/{big}/jobs?limit=50&status=FAILED", 0.3),
        ("job table, last page", f"/api/experiments/{big}/jobs?limit=50&offset={args.jobs - 50}",
         None),
        ("experiment summary", f"/api/experiments/{big}", 0.3),
    ]
    charts = [
        ("chart: history", f"/api/experiments/{big}/history"),
        ("chart: parallel coordinates", f"/api/experiments/{big}/parallel"),
        ("chart: curves (best + running)", f"/api/experiments/{big}/curves"),
    ]
    for name, url, limit in targets:
        t, cpu, r = timed(get(url))
        rows.append((name, t, cpu, limit, len(r.content)))
    chart_total = chart_cpu = 0.0
    for name, url in charts:
        t, cpu, r = timed(get(url))
        chart_total += t
        chart_cpu += cpu
        rows.append((name, t, cpu, None, len(r.content)))
    rows.append(("experiment page charts, total", chart_total, chart_cpu, 1.0, None))
    print(f"\n{'request':34} {'wall ms':>8} {'cpu ms':>8} {'target':>7} {'vs baseline':>12} "
          f"{'bytes':>8}")
    ok = True
    for name, t, cpu, limit, size in rows:
        passed = limit is None or t <= limit
        ok &= passed
        print(f"{name:34} {t * 1000:8.1f} {cpu * 1000:8.1f} "
              f"{'' if limit is None else f'{limit * 1000:.0f}':>7} "
              f"{baseline / t:11.1f}x {'' if size is None else size:>8}"
              f"{'' if passed else '  SLOWER THAN TARGET'}")
    store.close()
    tmp.cleanup()
    print("\nall targets met" if ok else "\nsome targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
