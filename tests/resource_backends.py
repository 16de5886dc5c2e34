"""Helpers of the resource contract suite: one :class:`Backend` per resource, an in-process
experiment runner, and the "human" that plays the user of the ``passive`` resource."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aup.config import load_config
from aup.experiment import Experiment, Observer
from aup.store.store import open_store

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Backend:
    """How to run the contract experiments on one resource.

    Attributes:
        resource: the ``resource`` value.
        args: ``resource_args``.
        remote_wd: the remote ``workingdir`` (node, aws), or None for local resources.
        n_slots: how many slots it offers.
        env: extra variables for the experiment process (e.g. AWS credentials for moto).
        passive: True when the "human" driver must run the jobs.
    """

    resource: str
    args: dict[str, Any] = field(default_factory=dict)
    remote_wd: Path | None = None
    n_slots: int = 2
    env: dict[str, str] = field(default_factory=dict)
    passive: bool = False


@dataclass
class Run:
    """A finished in-process experiment."""

    result: Any
    exp: Experiment
    store: Any
    folder: Path
    env_changes: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    slots: dict[tuple[int, int], str] = field(default_factory=dict)

    def jobs(self) -> list[dict[str, Any]]:
        return self.store.jobs(self.result.eid)

    def attempts(self, jid: int) -> list[dict[str, Any]]:
        return self.store.attempts(jid)


def make_experiment(folder: Path, backend: Backend, script: str, **cfg: Any) -> Path:
    """Write the script and experiment.json into ``folder`` (the experiment folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.py").write_text(textwrap.dedent(script).lstrip(), encoding="utf-8")
    data: dict[str, Any] = {
        "script": "job.py", "proposer": "random", "n_samples": 1, "target": "min",
        "resource": backend.resource, "resource_args": dict(backend.args),
        "parameter_config": [{"name": "x", "range": [0, 1], "type": "float"}],
    }
    if backend.remote_wd is not None:
        data["workingdir"] = str(backend.remote_wd)
    for k, v in cfg.items():
        if k == "resource_args":
            data["resource_args"].update(v)
        else:
            data[k] = v
    path = folder / "experiment.json"
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


class Human:
    """Plays the user of the ``passive`` resource: runs each printed job by hand and reports
    its result lines with ``aup tell`` (the first final value or failure of an experiment
    through the real CLI, the others through the store API that the CLI calls, to save the
    CLI's start-up time)."""

    def __init__(self, exp: Experiment, db_url: str, env: dict[str, str]):
        self.exp = exp
        self.db_url = db_url
        self.env = env
        self.done: set[tuple[int, int]] = set()
        self.errors: list[str] = []
        self.told_by_cli = False
        self.stop = threading.Event()
        self.procs: list[subprocess.Popen] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        rm = self.exp.resource
        while not self.stop.is_set():
            for w in rm.pending():
                key = w.spec.key
                if key not in self.done:
                    self.done.add(key)
                    threading.Thread(target=self._run_job, args=(w,), daemon=True).start()
            time.sleep(0.05)

    def _tell(self, jid: int, *args: str) -> None:
        if self.told_by_cli:  # the real 'aup tell' once per experiment, then its store call
            values = None if args[0].startswith("--") else tuple(float(v) for v in
                                                                  args[0].split(","))
            code = int(args[-1]) if "--exit-code" in args else None
            self.exp.store.tell(jid, values, final=True, exit_code=code)
            return
        self.told_by_cli = True
        cmd = [sys.executable, "-m", "aup", "tell", "--db", self.db_url,
               str(self.exp.eid), str(jid), *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            self.errors.append(f"aup tell failed ({res.returncode}): {res.stderr[-2000:]}")
            self.exp.request_stop(force=True)

    def _run_job(self, w) -> None:
        from aup.job import parse_result_line

        spec = w.spec
        env = {**os.environ, **self.env, "AUP_JOB_ID": str(spec.job_id),
               "AUP_ATTEMPT": str(spec.attempt), "PYTHONUNBUFFERED": "1", **spec.env}
        proc = subprocess.Popen([*spec.command, str(spec.config_path)], cwd=spec.workingdir,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        self.procs.append(proc)
        last = None
        for line in proc.stdout:
            try:
                values = parse_result_line(line)
            except ValueError:
                continue
            if values is None:
                continue
            if last is not None:  # the previous one was intermediate
                self.exp.store.tell(spec.job_id, last, final=False)
            last = values
        code = proc.wait()
        if spec.key not in {w2.spec.key for w2 in self.exp.resource.pending()}:
            return  # stopped meanwhile
        value = ",".join(repr(v) for v in last) if last else None
        if code != 0:
            self._tell(spec.job_id, *([value] if value else []), "--exit-code", str(code))
        elif value is not None:
            self._tell(spec.job_id, value)
        else:
            self._tell(spec.job_id, "--exit-code", "0")

    def close(self) -> None:
        self.stop.set()
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, 9)
                except ProcessLookupError:
                    pass


def run_experiment(folder: Path, backend: Backend, script: str, *, on_start=None,
                   **cfg: Any) -> Run:
    """Run one experiment in this process on ``backend`` and return it with its store.

    Args:
        on_start: called with the Experiment in a thread once the loop started (e.g. to stop
            it).
    """
    path = make_experiment(folder, backend, script, **cfg)
    config = load_config(path)
    db_url = f"sqlite:///{folder / 'aup.db'}"
    store = open_store(db_url)
    saved = {k: os.environ.get(k) for k in backend.env}
    os.environ.update(backend.env)
    human = None
    try:
        slots: dict[tuple[int, int], str] = {}

        class Recorder(Observer):
            def on_job_started(self, jid, attempt, slot, config):
                slots[(jid, attempt)] = slot.id

        exp = Experiment.create(config, store, observer=Recorder())
        if backend.passive:
            exp.resource.announce = lambda text: None
            exp.resource.options.prompt = False
            human = Human(exp, db_url, backend.env)
            human.thread.start()
        if on_start is not None:
            threading.Thread(target=on_start, args=(exp,), daemon=True).start()
        before = dict(os.environ)
        result = exp.run()
        after = dict(os.environ)
        changes = {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                   if before.get(k) != after.get(k)}
    finally:
        if human is not None:
            human.close()
            assert not human.errors, human.errors
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Run(result, exp, store, folder, changes, slots)


def run_lost_then_retried(folder: Path, backend: Backend, script: str) -> tuple[Run, dict]:
    """Run a one-job experiment (``n_parallel`` 2, one retry) whose first attempt loses its
    worker or connection; assert that attempt is LOST and the retry succeeds.

    Returns:
        the run and its job row.
    """
    run = run_experiment(folder, backend, script, n_parallel=2,
                         job_failure={"job_retries": 1, "ignore_fail": False})
    assert run.result.status.value == "FINISHED", run.result.error
    (job,) = run.jobs()
    a0, a1 = run.attempts(job["jid"])
    assert a0["fail_reason"] == "LOST", a0
    assert a1["status"] == "SUCCEEDED"
    return run, job
