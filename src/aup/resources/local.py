"""Local resources: job attempts as subprocesses of the scheduler's machine.

:class:`LocalProcess` runs one attempt: the script (config path as last argument) in its own
process group and its own environment copy, output (stdout and stderr merged) streamed line by
line to ``jobs/<jid>.<attempt>.out`` with undecodable bytes replaced, result lines parsed as they
come. Memory per attempt is bounded (lines are read in chunks of at most ``LINE_LIMIT`` bytes, and
only a 4 KiB tail is kept). When the script's main process exits, anything left in its process
group is killed, so no orphan survives a job.

:class:`CPUResourceManager` (``resource: cpu``) offers ``n_parallel`` slots on localhost. CPU
jobs see ``CUDA_VISIBLE_DEVICES=""`` (no GPU) unless ``runtime_args.env`` sets it, as in
Auptimizer 2.0.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import select
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from aup.job import OutputParser, StopReason, judge
from aup.resources.base import (
    AttemptSpec,
    EndEvent,
    ResourceManager,
    ResourceOptions,
    ResultEvent,
    RunningAttempts,
    Slot,
)

log = logging.getLogger(__name__)

#: Longest chunk read at once from a job's output (bytes); longer lines arrive in pieces.
LINE_LIMIT = 1 << 20
#: Seconds to wait for the output pipe to close after the main process exited.
PIPE_GRACE = 1.0


def write_job_config(spec: AttemptSpec) -> None:
    """Write ``spec.job_config`` as JSON to ``spec.config_path`` (creating ``jobs/``).

    The file is written to a temporary name and renamed, so a job never sees half a file.
    """
    spec.config_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = spec.config_path.with_name(spec.config_path.name + ".tmp")
    tmp.write_text(json.dumps(spec.job_config, indent=1), encoding="utf-8")
    os.replace(tmp, spec.config_path)


def wrap_command(argv: list[str], prescript: str, postscript: str) -> list[str]:
    """Wrap argv in ``/bin/sh`` when a prescript or postscript is set.

    The user's argv is passed as positional parameters (``"$@"``), never pasted into the shell
    text; the script's exit code is the wrapper's exit code.
    """
    if not prescript and not postscript:
        return argv
    body = f"{prescript}\n\"$@\"\naup_rc=$?\n{postscript}\nexit $aup_rc\n"
    return ["/bin/sh", "-c", body, "aup-job", *argv]


def kill_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to a process group, ignoring a group that is already gone."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class LocalProcess:
    """One attempt running as a local subprocess (see the module docstring).

    Args:
        spec: the attempt.
        env: the complete environment of the job (already a copy).
        events: queue receiving :class:`ResultEvent` and one final :class:`EndEvent`.
        kill_grace: seconds between SIGTERM and SIGKILL when stopped.
        on_end: called with this object after the EndEvent was queued (frees the slot).
    """

    def __init__(self, spec: AttemptSpec, env: dict[str, str], events, kill_grace: float,
                 on_end=None):
        self.spec = spec
        self.env = env
        self.events = events
        self.kill_grace = kill_grace
        self.on_end = on_end
        self.parser = OutputParser(spec.n_labels, spec.label)
        self.stopped: StopReason | None = None
        self.proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._kill_timer: threading.Timer | None = None
        self._abandon = threading.Event()

    def start(self) -> None:
        """Start the process and its reader thread; errors end the attempt as START_FAILED."""
        spec = self.spec
        try:
            write_job_config(spec)
            spec.output_path.parent.mkdir(parents=True, exist_ok=True)
            argv = wrap_command([*spec.command, str(spec.config_path)], spec.prescript,
                                spec.postscript)
            self.proc = subprocess.Popen(
                argv, cwd=spec.workingdir, env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                close_fds=True)
        except OSError as err:
            self._finish(judge(None, self.parser, start_error=f"cannot start {spec.command[0]}: "
                                                             f"{err.strerror or err}"))
            return
        threading.Thread(target=self._run, name=f"aup-{spec.job_id}.{spec.attempt}",
                         daemon=True).start()

    def _run(self) -> None:
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        spec = self.spec
        reader = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        reader.start()
        code = proc.wait()
        reader.join(PIPE_GRACE)
        if reader.is_alive():
            # Children of the job still hold the pipe: the job is over, so they go too.
            kill_group(proc.pid, signal.SIGKILL)
            reader.join(PIPE_GRACE)
        if reader.is_alive():
            # A descendant left the process group (setsid) and keeps the pipe open: stop
            # reading, the attempt ended with its main process.
            log.warning("%s: a detached process still holds the job's output; no longer "
                        "reading it", spec.label)
            self._abandon.set()
            reader.join()
        kill_group(proc.pid, signal.SIGKILL)
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        log.debug("%s exited with %s", spec.label, code)
        self._finish(judge(code, self.parser, stopped=self.stopped))

    def _emit(self, line: bytes) -> None:
        values = self.parser.feed(line.decode("utf-8", errors="replace").rstrip("\r\n"))
        if values is not None:
            self.events.put(ResultEvent(self.spec.job_id, self.spec.attempt, values,
                                        time.time()))

    def _read(self, pipe) -> None:
        """Copy the output to the .out file and parse complete lines, until EOF or abandon.

        Reads the raw descriptor with select(), so that it can give up on a pipe held open
        by a detached descendant. A line longer than ``LINE_LIMIT`` is not kept whole: only
        its last 4 KiB, where a marker may still end it.
        """
        spec = self.spec
        fd = pipe.fileno()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        buf = b""
        out = None
        try:
            out = open(spec.output_path, "wb")
        except OSError as err:
            log.error("%s: cannot write output to %s: %s", spec.label, spec.output_path, err)
        try:
            while not self._abandon.is_set():
                ready, _, _ = select.select([fd], [], [], 0.2)
                if not ready:
                    continue
                data = os.read(fd, 1 << 16)
                if not data:
                    break
                if out is not None:
                    out.write(decoder.decode(data).encode("utf-8"))
                    out.flush()
                buf += data
                start = 0
                while (nl := buf.find(b"\n", start)) >= 0:
                    self._emit(buf[start:nl + 1])
                    start = nl + 1
                buf = buf[start:]
                if len(buf) > LINE_LIMIT:
                    buf = buf[-4096:]
            if buf:
                self._emit(buf)
            if out is not None:
                out.write(decoder.decode(b"", final=True).encode("utf-8"))
        finally:
            if out is not None:
                out.close()
            pipe.close()

    def _finish(self, outcome) -> None:
        self.events.put(EndEvent(self.spec.job_id, self.spec.attempt, outcome, time.time()))
        if self.on_end is not None:
            self.on_end(self)

    def stop(self, reason: StopReason) -> None:
        """SIGTERM the process group now, SIGKILL it after ``kill_grace`` seconds."""
        with self._lock:
            if self.stopped is not None or self.proc is None:
                return
            self.stopped = reason
        pgid = self.proc.pid
        kill_group(pgid, signal.SIGTERM)
        self._kill_timer = threading.Timer(self.kill_grace, kill_group, (pgid, signal.SIGKILL))
        self._kill_timer.daemon = True
        self._kill_timer.start()

    def kill(self) -> None:
        """SIGKILL the process group now (after :meth:`stop`, or as an experiment stop)."""
        with self._lock:
            if self.proc is None:
                return
            if self.stopped is None:
                self.stopped = StopReason.EXPERIMENT_STOP
        kill_group(self.proc.pid, signal.SIGKILL)


def job_environment(spec: AttemptSpec, base: dict[str, str] | None = None) -> dict[str, str]:
    """A fresh copy of the scheduler's environment for one job.

    Adds ``AUP_JOB_ID``, ``AUP_ATTEMPT``, ``PYTHONUNBUFFERED=1`` (results arrive live), then
    ``base`` (resource settings such as ``CUDA_VISIBLE_DEVICES``), then ``spec.env``
    (``runtime_args.env``, which wins). ``os.environ`` itself is never modified.
    """
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["AUP_JOB_ID"] = str(spec.job_id)
    env["AUP_ATTEMPT"] = str(spec.attempt)
    env.update(base or {})
    env.update(spec.env)
    return env


class CPUResourceManager(ResourceManager):
    """``resource: cpu``: ``n_parallel`` job slots on this machine.

    Jobs get ``CUDA_VISIBLE_DEVICES=""`` so that they do not grab a GPU by accident.
    """

    kind: ClassVar[str] = "cpu"
    Options = ResourceOptions

    def __init__(self, config, events, env_file: Any = None):
        super().__init__(config, events, env_file)
        self._attempts: RunningAttempts[LocalProcess] = RunningAttempts()

    @property
    def slots(self) -> list[Slot]:
        return [Slot(f"cpu:{i}", "cpu", "localhost") for i in range(self.config.n_parallel)]

    def slot_env(self, slot: Slot) -> dict[str, str]:
        """Environment variables for a job on ``slot``."""
        return {"CUDA_VISIBLE_DEVICES": ""}

    def job_env(self, spec: AttemptSpec, slot: Slot) -> dict[str, str]:
        """The complete environment of a job on ``slot`` (``runtime_args.env`` wins)."""
        return job_environment(spec, self.slot_env(slot))

    def start(self, spec: AttemptSpec, slot: Slot) -> None:
        self._attempts.start(LocalProcess(spec, self.job_env(spec, slot), self.events,
                                          self.options.kill_grace, self._attempts.ended))

    def stop(self, job_id: int, attempt: int, reason: StopReason) -> None:
        self._attempts.stop(job_id, attempt, reason)

    def kill(self, job_id: int, attempt: int) -> None:
        proc = self._attempts.get(job_id, attempt)
        if proc is not None:
            proc.kill()

    def close(self) -> None:
        self._attempts.stop_all()


def relative_to(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it, else absolute (for messages)."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
