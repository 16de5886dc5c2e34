"""Helpers of the job-lifecycle tests: start the real CLI in the background, read the SQLite
database from outside (as another process would), wait for states, check processes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import write_experiment, write_script

from aup.orphans import pid_exists


def db_path(folder: Path) -> Path:
    """The default database of experiments run in ``folder``."""
    return folder / ".aup" / "sqlite3.db"


def query(folder: Path, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
    """Run a read-only query on the folder's database (a separate connection, like another
    process would); [] while the database does not exist yet."""
    path = db_path(folder)
    if not path.exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql, args).fetchall()]
    except sqlite3.OperationalError as err:
        if "no such table" in str(err):
            return []
        raise
    finally:
        con.close()


def jobs(folder: Path, eid: int | None = None, *, rerun: bool = False) -> list[dict[str, Any]]:
    """Job rows in jid order (``job_config`` decoded)."""
    sql = "SELECT * FROM job WHERE is_rerun = ?"
    args: tuple = (1 if rerun else 0,)
    if eid is not None:
        sql += " AND eid = ?"
        args += (eid,)
    rows = query(folder, sql + " ORDER BY jid", args)
    for r in rows:
        r["job_config"] = json.loads(r["job_config"])
    return rows


def attempts(folder: Path, jid: int) -> list[dict[str, Any]]:
    """Attempt rows of a job, in order."""
    return query(folder, "SELECT * FROM job_attempt WHERE jid = ? ORDER BY num", (jid,))


def experiment(folder: Path, eid: int = 1) -> dict[str, Any]:
    """The experiment row."""
    rows = query(folder, "SELECT * FROM experiment WHERE eid = ?", (eid,))
    return rows[0] if rows else {}


def start_cli(*args: str, cwd: Path, log: str = "warning") -> subprocess.Popen:
    """Start ``python -m aup ARGS`` in the background (stdout/stderr to files in cwd)."""
    env = dict(os.environ)
    env.pop("AUP_DB", None)
    out = open(cwd / "cli.out", "w")  # noqa: SIM115 - closed by finish()
    err = open(cwd / "cli.err", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "aup", "--log", log, *args], cwd=cwd,
                            env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    proc._aup_files = (out, err)  # type: ignore[attr-defined]
    return proc


def finish(proc: subprocess.Popen, cwd: Path, timeout: float = 60) -> tuple[int, str, str]:
    """Wait for a background CLI; return (exit code, stdout, stderr)."""
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    for f in proc._aup_files:  # type: ignore[attr-defined]
        f.close()
    return (rc, (cwd / "cli.out").read_text(errors="replace"),
            (cwd / "cli.err").read_text(errors="replace"))


def wait_for(predicate, timeout: float = 30, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``predicate()`` until it returns something truthy; fail after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def alive(pid: int) -> bool:
    """True when process ``pid`` exists and is not a zombie."""
    if not pid_exists(pid):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def read_pids(folder: Path, pattern: str = "*.pid") -> list[int]:
    """Pids written by job scripts into ``folder/pids``."""
    d = folder / "pids"
    return [int(p.read_text()) for p in sorted(d.glob(pattern)) if p.read_text().strip()]


def kill_pids(pids: list[int]) -> None:
    """Clean up processes a test started (by pid)."""
    import signal

    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def setup(folder: Path, body: str, **config: Any) -> Path:
    """Write ``job.py`` with ``body`` and an experiment.json with ``config``."""
    write_script(folder, "job.py", body)
    (folder / "pids").mkdir(exist_ok=True)
    cfg = {"script": "job.py", "proposer": "sequence", "target": "min"}
    cfg.update(config)
    return write_experiment(folder, **cfg)
