"""The body of a Ray task that runs one job attempt (standard library only).

This module is shipped to the Ray workers by value (cloudpickle), so the workers need neither
Auptimizer nor anything beyond Python. :func:`run_job` is a generator task: it writes the job
config into the task's working directory (the copy of ``workingdir`` that Ray's runtime
environment shipped), runs the job in its own process group, and yields the output as it
arrives (``("out", bytes)``), then ``("exit", code)``. Its first item is ``("pgid", where)``:
the job's process group and the machine and PID namespace it lives in, so that a scheduler on
the same machine can make sure a stopped job is gone even when Ray killed the worker before its
clean-up ran. When Ray cancels the task (the scheduler stopped the attempt), the job's process
group gets SIGTERM, then SIGKILL after the grace time.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

#: Longest chunk read at once (bytes).
CHUNK = 1 << 20


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _argv(job: dict[str, Any]) -> list[str]:
    argv = [sys.executable if a == "{python}" else a for a in job["argv"]]
    argv.append(job["config_path"])
    pre, post = job.get("prescript", ""), job.get("postscript", "")
    if pre or post:
        body = f"{pre}\n\"$@\"\naup_rc=$?\n{post}\nexit $aup_rc\n"
        argv = ["/bin/sh", "-c", body, "aup-job", *argv]
    return argv


def process_namespace() -> str:
    """This process's machine and PID namespace: ``"<boot id>/<pid namespace>"``; equal strings
    mean that process ids mean the same processes. Empty when the system does not say."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


def warm_up() -> int:
    """A no-op task run once per slot before the first job, so that the first jobs do not pay
    for starting Ray workers (and their runtime environment). Returns the worker's pid."""
    return os.getpid()


def run_job(job: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Run one attempt; yield ``("pgid", {"pgid", "namespace"})``, ``("out", bytes)`` pieces,
    then ``("exit", code)``.

    Args:
        job: ``argv`` (``"{python}"`` stands for the worker's interpreter), ``config_path``
            (relative to the working directory), ``config`` (the JSON object), ``env``,
            ``prescript``, ``postscript``, ``kill_grace`` (seconds), ``cwd`` (None: the task's
            working directory, i.e. the shipped copy).
    """
    cwd = job.get("cwd") or None
    path = os.path.join(cwd or ".", job["config_path"])
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(job["config"], f, indent=1)
    os.replace(path + ".tmp", path)
    env = dict(os.environ)
    env.update(job["env"])
    proc = subprocess.Popen(_argv(job), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, close_fds=True)
    pieces: queue.Queue = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        while True:
            chunk = proc.stdout.readline(CHUNK)
            if not chunk:
                break
            pieces.put(chunk)
        pieces.put(None)

    threading.Thread(target=read, daemon=True).start()
    done = False
    try:
        yield ("pgid", {"pgid": proc.pid, "namespace": process_namespace()})
        while not done:
            try:
                item = pieces.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = []
            while True:
                if item is None:
                    done = True
                    break
                batch.append(item)
                try:
                    item = pieces.get_nowait()
                except queue.Empty:
                    break
            if batch:
                yield ("out", b"".join(batch))
        code = proc.wait()
        yield ("exit", code)
    except BaseException:  # cancelled (KeyboardInterrupt / TaskCancelledError) or closed
        _killpg(proc.pid, signal.SIGTERM)
        end = time.monotonic() + float(job.get("kill_grace", 5.0))
        while proc.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        raise
    finally:
        _killpg(proc.pid, signal.SIGKILL)  # nothing of the job outlives the task
        if proc.poll() is None:
            proc.wait()
