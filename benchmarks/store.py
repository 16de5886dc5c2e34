"""Store micro-benchmark: job records per second on SQLite and PostgreSQL, 1 and 4 writers.

One *job record* is what the experiment loop writes for a trivial job, through the public
:class:`aup.store.store.Store` API, each call its own transaction as in a real run:

1. ``start_job`` (job row + attempt row + proposer state),
2. ``add_result`` x ``--results`` (intermediate results, with one secondary value each),
3. ``end_attempt`` (attempt + job finished, score, last multiple result marked).

Each writer process has its own experiment (as several ``aup run`` processes sharing one
database do). Rates are total job records over wall time of the slowest writer; errors of any
kind are counted (the target is 0). The goal of the lifecycle issue is >= 2000 job records/s.

Ratios are printed against SQLite with 1 writer, measured in the same run.

PostgreSQL: ``--pg-url URL`` (an empty database), or by default a throw-away cluster started
like the test fixture (``tests/pg_fixture.py``: initdb + pg_ctl on a free port, fsync off).

Run: ``python benchmarks/store.py [--jobs 2000] [--results 3] [--pg-url URL]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

GOAL = 2000.0


def _writer(url: str, name: str, n_jobs: int, n_results: int, start, queue,
            batch: bool = False) -> None:
    from aup.store.store import Store

    errors = 0
    st = Store(url)
    eid = st.create_experiment(user="bench", name=name, config={"bench": True},
                               proposer="random", target="min", n_total=n_jobs,
                               config_path=None, workingdir=None)
    rid = st.resource_id("cpu", f"{name}:0")
    start.wait()
    t0 = time.perf_counter()
    for i in range(n_jobs):
        try:
            jid, jaid = st.start_job(eid=eid, job_config={"x": i / n_jobs, "job_id": i},
                                     proposal={"id": i, "params": {"x": i / n_jobs}},
                                     rid=rid, output_dir="jobs",
                                     proposer_state={"next_id": i + 1, "rng": [i, i]})
            if batch:  # lines that arrive together: one transaction, as the loop writes them
                now = time.time()
                st.add_results(eid=eid, rows=[(jid, k, (float(k), 1.0), now)
                                              for k in range(n_results)], track=True)
            else:
                for k in range(n_results):
                    st.add_result(eid=eid, jid=jid, num=k, values=(float(k), 1.0),
                                  receive_time=time.time(), track=True)
            st.end_attempt(eid=eid, jid=jid, jaid=jaid, attempt_status="SUCCEEDED",
                           exit_code=0, fail_reason=None, detail="", output_tail="ok\n",
                           job_status="FINISHED", score=float(i), extras=[1.0],
                           proposer_state={"next_id": i + 1})
        except Exception as err:  # noqa: BLE001 - counted, the target is 0
            errors += 1
            if errors <= 3:
                print(f"  {name}: {type(err).__name__}: {err}", file=sys.stderr)
    elapsed = time.perf_counter() - t0
    st.close()
    queue.put((name, elapsed, errors))


def run_case(url: str, writers: int, n_jobs: int, n_results: int,
             batch: bool = False) -> tuple[float, int, float]:
    """Run ``writers`` processes of ``n_jobs`` job records each; returns (records/s, errors,
    seconds)."""
    from aup.store.store import Store

    Store(url).close()  # schema created once, outside the timing
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, f"w{k}-{writers}", n_jobs, n_results,
                                               start, queue, batch)) for k in range(writers)]
    for p in procs:
        p.start()
    time.sleep(1.0 + 0.5 * writers)  # every writer imported and connected
    start.set()
    results = [queue.get(timeout=3600) for _ in procs]
    for p in procs:
        p.join()
    wall = max(r[1] for r in results)
    errors = sum(r[2] for r in results)
    return writers * n_jobs / wall, errors, wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2000, help="job records per writer")
    ap.add_argument("--results", type=int, default=3, help="result lines per job")
    ap.add_argument("--pg-url", help="an empty PostgreSQL database (default: start one)")
    ap.add_argument("--skip-pg", action="store_true", help="SQLite only")
    ap.add_argument("--batch", action="store_true",
                    help="write a job's result lines in one transaction (Store.add_results), "
                    "as the experiment loop does for lines that arrive together")
    args = ap.parse_args()

    server = None
    pg_urls: dict[int, str] = {}
    if not args.skip_pg:
        if args.pg_url:
            pg_urls = {1: args.pg_url, 4: args.pg_url}
        else:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from pg_fixture import start_postgres

            server = start_postgres()
            pg_urls = {1: server.create_database(), 4: server.create_database()}
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for writers in (1, 4):
                url = f"sqlite:///{Path(tmp) / f'bench{writers}.db'}"
                rows.append(("sqlite", writers, *run_case(url, writers, args.jobs,
                                                          args.results, args.batch)))
            for writers, url in pg_urls.items():
                rows.append(("postgresql", writers, *run_case(url, writers, args.jobs,
                                                              args.results, args.batch)))
    finally:
        if server is not None:
            from pg_fixture import stop_postgres

            stop_postgres(server)
    base = rows[0][2]
    import os

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {load:.1f} (other processes share "
          "them: rates scale with free cores)")
    if args.batch:
        what = f"start_job + add_results({args.results} lines) + end_attempt (3 transactions)"
    else:
        what = (f"start_job + {args.results} x add_result + end_attempt "
                f"({args.results + 2} transactions)")
    print(f"\nstore micro-benchmark: {args.jobs} job records per writer, each = {what}")
    print(f"{'database':<11} {'writers':>7} {'records/s':>10} {'vs sqlite-1':>11} "
          f"{'errors':>6} {'seconds':>8}  goal >= {GOAL:.0f}/s")
    ok = True
    for db, writers, rate, errors, wall in rows:
        met = "met" if rate >= GOAL else "NOT met"
        print(f"{db:<11} {writers:>7} {rate:>10.0f} {rate / base:>10.2f}x {errors:>6} "
              f"{wall:>8.2f}  {met}")
        ok = ok and errors == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
