"""Helpers of the dashboard tests: a database filled by a real experiment run (built once per
session), and the dashboard app served by uvicorn on a free loopback port (started and stopped
by the context manager)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from conftest import run_cli, write_script

#: Job script: score (x-2)^2 (+0.5 for k=b), three intermediate results, a secondary value
#: 2*x; x == 4 fails with exit code 3 and a message on stderr.
GRID_SCRIPT = """
import json, sys
cfg = json.load(open(sys.argv[-1]))
x, k = cfg["x"], cfg["k"]
if x == 4:
    print("boom: x=4 is not allowed", file=sys.stderr)
    sys.exit(3)
score = (x - 2) ** 2 + (0.5 if k == "b" else 0.0)
for i in (3, 2, 1):
    print(f"#Auptimizer:{score + i},{2 * x}")
print(f"#Auptimizer:{score},{2 * x}")
"""

SLOW_SCRIPT = """
import json, sys, time
cfg = json.load(open(sys.argv[-1]))
time.sleep(0.5)
print("#Auptimizer:", cfg["x"])
"""


def write_json(path: Path, **config) -> Path:
    """Write an experiment file (``name`` may be one of its keys)."""
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")
    return path


def expected_grid() -> list[dict]:
    """The jobs of the grid experiment in job order (sequence proposer: x changes fastest)."""
    rows = []
    for k in ("a", "b"):
        for x in range(1, 7):
            failed = x == 4
            rows.append({"x": x, "k": k, "failed": failed,
                         "score": None if failed else (x - 2) ** 2 + (0.5 if k == "b" else 0)})
    return rows


def run_grid_experiment(folder: Path, name: str = "grid", target: str = "min") -> None:
    """Run the grid experiment with the real CLI into ``folder/.aup/sqlite3.db``."""
    write_script(folder, "grid.py", GRID_SCRIPT)
    write_json(folder / f"{name}.json", name=name, script="grid.py", proposer="sequence",
               target=target, n_samples=12,
               parameter_config=[{"name": "x", "range": [1, 6], "type": "int", "interval": 1},
                                 {"name": "k", "range": ["a", "b"], "type": "choice"}],
               resource_args={"track_intermediate_results": True, "multi_res_labels": ["twice"]},
               job_failure={"ignore_fail": True})
    proc = run_cli("run", f"{name}.json", "-q", cwd=folder, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def shared_grid_db(tmp_path_factory) -> Path:
    """A folder whose ``.aup/sqlite3.db`` holds two finished grid experiments (ids 1, 2; the
    second maximizes), built once per test session under pytest's base temporary folder and
    reused by every dashboard test module (a marker file says it is complete)."""
    folder = tmp_path_factory.getbasetemp() / "dashboard-grid"
    done = folder / "complete"
    if not done.exists():
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        run_grid_experiment(folder, "grid")
        run_grid_experiment(folder, "grid_max", target="max")
        done.touch()
    return folder


def db_url(folder: Path) -> str:
    return f"sqlite:///{folder / '.aup' / 'sqlite3.db'}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(url: str, token: str | None = None, refresh: float = 0.5) -> Iterator[str]:
    """Serve the dashboard over ``url`` with uvicorn in a thread; yields the base URL."""
    import uvicorn

    from aup.dashboard.app import create_app
    from aup.store.store import Store

    store = Store(url, create=False)
    app = create_app(store, token=token, refresh_seconds=refresh)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()


def experiment_status(folder: Path, eid: int) -> str:
    """The status of experiment ``eid`` in ``folder/.aup/sqlite3.db`` ("" while not there)."""
    path = folder / ".aup" / "sqlite3.db"
    if not path.exists():
        return ""
    try:
        with contextlib.closing(sqlite3.connect(path)) as c:
            row = c.execute("select status from experiment where eid=?", (eid,)).fetchone()
    except sqlite3.OperationalError:  # tables not created yet
        return ""
    return row[0] if row else ""
