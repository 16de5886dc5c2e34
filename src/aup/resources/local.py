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
import selectors
import signal
import subprocess
import sys
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

    Written in place: the job starts only after this returns, so it never sees half a file,
    and a write that fails (full disk) fails the start. A temporary file and a rename cost one
    more file creation per job (0.2-0.7 ms where creating files is slow, as in this VM's /tmp)
    for no reader's benefit.
    """
    spec.config_path.parent.mkdir(parents=True, exist_ok=True)
    with open(spec.config_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(spec.job_config, indent=1))


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

    The process is started, and its output and exit are watched, by an :class:`OutputPump`
    (one thread for all the attempts of a manager), not by threads of its own: starting a job
    costs no thread. :meth:`start` (in the experiment loop) only writes the job's files.

    Args:
        spec: the attempt.
        env: the complete environment of the job (already a copy).
        events: queue receiving :class:`ResultEvent` and one final :class:`EndEvent`.
        kill_grace: seconds between SIGTERM and SIGKILL when stopped.
        on_end: called with this object after the EndEvent was queued (frees the slot).
        pump: the pump that watches the process (a private one when None).
    """

    def __init__(self, spec: AttemptSpec, env: dict[str, str], events, kill_grace: float,
                 on_end=None, pump: OutputPump | None = None):
        self.spec = spec
        self.env = env
        self.events = events
        self.kill_grace = kill_grace
        self.on_end = on_end
        self.pump = pump if pump is not None else OutputPump()
        self.parser = OutputParser(spec.n_labels, spec.label)
        self.stopped: StopReason | None = None
        self.proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._kill_timer: threading.Timer | None = None
        # watched by the pump thread only:
        self._fd = -1
        self._pidfd: int | None = None
        self._out = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = b""
        self._eof = False
        self._code: int | None = None
        self._exited_at: float | None = None
        self._group_killed = False
        self._argv: list[str] = []

    def start(self) -> None:
        """Write the job's config file and hand the attempt to the pump, which starts the
        process and creates its output file; errors end the attempt as START_FAILED."""
        spec = self.spec
        if spec.script is not None and not spec.script.exists():
            self._end_unstarted(judge(None, self.parser, start_error=(
                f"the job script {spec.script} is gone (deleted or moved since the experiment "
                f"started); put it back and continue with aup resume")))
            return
        try:
            write_job_config(spec)
            spec.output_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a full or read-only jobs folder: say which file, not "start"
            where = err.filename or spec.config_path
            self._end_unstarted(judge(None, self.parser, start_error=(
                f"cannot write the job's config {where}: {err.strerror or err}")))
            return
        self._argv = wrap_command([*spec.command, str(spec.config_path)], spec.prescript,
                                  spec.postscript)
        self.pump.add(self)

    def _start_failed(self, err: Exception) -> None:
        why = getattr(err, "strerror", None) or err
        self._end_unstarted(judge(None, self.parser, start_error=f"cannot start "
                                                                f"{self.spec.command[0]}: {why}"))

    def _end_unstarted(self, outcome) -> None:
        """End an attempt whose process never ran (start error, or stopped before its spawn)."""
        self._close_out()
        self._finish(outcome)

    # -- called by the pump thread ---------------------------------------------------------------
    def spawn(self) -> bool:
        """Start the process (pump thread). Returns False when the attempt ended instead: it
        could not start, or it was stopped before it started.

        The pump thread, which mostly sleeps, starts the processes rather than the busy
        experiment loop: the kernel then runs the new process at once on the free CPU. Spawned
        from the loop, a job at ``n_parallel`` 2 waited ~4 ms (median) to start, against
        ~0.3 ms from the pump (``benchmarks/overhead.py``, ``aup run`` with 200 trivial jobs).

        The process gets its own process group (``process_group=0``; a new session before
        Python 3.11), which is all that signalling the job's whole tree needs. A new session
        (``start_new_session``) made each start cost ~1.8 ms instead of ~0.35 ms in this
        process (measured in ``aup run``; in a bare script both cost the same).
        """
        spec = self.spec
        error: Exception | None = None
        group = ({"process_group": 0} if sys.version_info >= (3, 11)
                 else {"start_new_session": True})
        with self._lock:  # stop() and kill() see either no process and no start, or the process
            if self.stopped is None:
                try:
                    self.proc = subprocess.Popen(
                        self._argv, cwd=spec.workingdir, env=self.env, stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, close_fds=True,
                        **group)
                except Exception as err:  # noqa: BLE001 - raised here, it would stop the pump
                    error = err
        if self.proc is None:
            if self.stopped is not None:  # stopped before it started: it never ran
                self._end_unstarted(judge(None, self.parser, stopped=self.stopped))
            else:
                assert error is not None
                self._start_failed(error)
            return False
        assert self.proc.stdout is not None
        self._fd = self.proc.stdout.fileno()
        # Created while the new process starts on the other CPU, not before it: creating a
        # file cost 0.03-0.4 ms of CPU here (ext4 on the development VM), on the path from
        # one job's end to the next one's start. Nothing is read from the pipe before this.
        try:
            self._out = open(spec.output_path, "wb")
        except OSError as err:
            log.error("%s: cannot write output to %s: %s", spec.label, spec.output_path, err)
        return True

    def watch(self, selector: selectors.BaseSelector) -> None:
        """Register the output pipe and (where the OS has pidfds) the process's exit."""
        assert self.proc is not None
        selector.register(self._fd, selectors.EVENT_READ, (self, False))
        try:
            self._pidfd = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):  # not Linux >= 5.3: a thread waits for the exit
            self._pidfd = None
            threading.Thread(target=self._wait_exit, name=f"aup-wait-{self.spec.label}",
                             daemon=True).start()
        else:
            selector.register(self._pidfd, selectors.EVENT_READ, (self, True))

    def _wait_exit(self) -> None:
        assert self.proc is not None
        self.proc.wait()
        self.pump.wake()

    def on_output(self, selector: selectors.BaseSelector) -> None:
        """Read what the pipe has: copy it to the .out file, parse complete lines.

        A line longer than ``LINE_LIMIT`` is not kept whole: only its last 4 KiB, where a
        marker may still end it.
        """
        try:
            data = os.read(self._fd, 1 << 16)
        except OSError as err:  # the pipe broke: treat it as closed
            log.warning("%s: reading the output failed: %s", self.spec.label, err)
            data = b""
        if not data:
            self._close_pipe(selector)
            return
        self._write_out(self._decoder.decode(data))
        buf = self._buf + data
        start = 0
        while (nl := buf.find(b"\n", start)) >= 0:
            self._emit(buf[start:nl + 1])
            start = nl + 1
        buf = buf[start:]
        if len(buf) > LINE_LIMIT:
            buf = buf[-4096:]
        self._buf = buf

    def on_exit(self, selector: selectors.BaseSelector) -> None:
        """The process's pidfd is readable: collect the exit code."""
        assert self.proc is not None and self._pidfd is not None
        selector.unregister(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None
        self._code = self.proc.wait()
        self._exited_at = time.monotonic()

    def deadline(self) -> float | None:
        """When :meth:`check` must run next (monotonic seconds), or None: on events only."""
        if self._exited_at is None or self._eof:
            return None
        return self._exited_at + (2 if self._group_killed else 1) * PIPE_GRACE

    def check(self, selector: selectors.BaseSelector, now: float) -> bool:
        """Finish the attempt when both the process and its output ended. Returns True then.

        When the main process exited but the pipe stays open, the rest of its process group
        is killed after ``PIPE_GRACE`` seconds; a descendant that left the group (setsid) and
        still holds the pipe after another ``PIPE_GRACE`` is no longer read.
        """
        if self._exited_at is None:
            if self._pidfd is not None or self.proc is None or self.proc.poll() is None:
                return False
            self._code = self.proc.returncode
            self._exited_at = now
        if not self._eof:
            waited = now - self._exited_at
            if waited >= PIPE_GRACE and not self._group_killed:
                assert self.proc is not None
                kill_group(self.proc.pid, signal.SIGKILL)
                self._group_killed = True
            if waited < 2 * PIPE_GRACE:
                return False
            log.warning("%s: a detached process still holds the job's output; no longer "
                        "reading it", self.spec.label)
            self._close_pipe(selector)
        self._end()
        return True

    def _close_pipe(self, selector: selectors.BaseSelector) -> None:
        self._eof = True
        selector.unregister(self._fd)
        assert self.proc is not None and self.proc.stdout is not None
        self.proc.stdout.close()
        if self._buf:
            self._emit(self._buf)
            self._buf = b""
        self._write_out(self._decoder.decode(b"", final=True))
        self._close_out()

    def _write_out(self, text: str) -> None:
        """Append ``text`` to the job's ``.out`` file. A write error (a full disk, a file-size
        limit) stops the copy with a warning; the output is still parsed, so the job keeps
        its result (the pump thread serves every job: it must not die on one file)."""
        if self._out is None:
            return
        try:
            self._out.write(text.encode("utf-8"))
            self._out.flush()
        except OSError as err:
            log.warning("%s: writing the output to %s failed (%s); the rest of this job's "
                        "output is not kept, its result lines are still read",
                        self.spec.label, self.spec.output_path, err.strerror or err)
            self._close_out()

    def _close_out(self) -> None:
        out, self._out = self._out, None
        if out is not None:
            try:
                out.close()
            except OSError:  # _write_out flushed everything: nothing is left to lose
                pass

    def _end(self) -> None:
        assert self.proc is not None
        kill_group(self.proc.pid, signal.SIGKILL)  # nothing of the job outlives it
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        log.debug("%s exited with %s", self.spec.label, self._code)
        self._finish(judge(self._code, self.parser, stopped=self.stopped))

    def _emit(self, line: bytes) -> None:
        values = self.parser.feed(line.decode("utf-8", errors="replace").rstrip("\r\n"))
        if values is not None:
            self.events.put(ResultEvent(self.spec.job_id, self.spec.attempt, values,
                                        time.time()))

    def _finish(self, outcome) -> None:
        self.events.put(EndEvent(self.spec.job_id, self.spec.attempt, outcome, time.time()))
        if self.on_end is not None:
            self.on_end(self)

    # -- called by the experiment loop -------------------------------------------------------------
    def stop(self, reason: StopReason) -> None:
        """SIGTERM the process group now, SIGKILL it after ``kill_grace`` seconds (a process
        not started yet is never started)."""
        with self._lock:
            if self.stopped is not None:
                return
            self.stopped = reason
            if self.proc is None:
                return
        pgid = self.proc.pid
        kill_group(pgid, signal.SIGTERM)
        self._kill_timer = threading.Timer(self.kill_grace, kill_group, (pgid, signal.SIGKILL))
        self._kill_timer.daemon = True
        self._kill_timer.start()

    def kill(self) -> None:
        """SIGKILL the process group now (after :meth:`stop`, or as an experiment stop)."""
        with self._lock:
            if self.stopped is None:
                self.stopped = StopReason.EXPERIMENT_STOP
            if self.proc is None:
                return
        kill_group(self.proc.pid, signal.SIGKILL)


class OutputPump:
    """One thread that starts and watches every :class:`LocalProcess` of a manager: it spawns
    each process handed to it, reads their output as it comes (``select``/``epoll``), notices
    their exits (Linux pidfds; elsewhere a small waiter thread per process) and ends each
    attempt when both happened.

    One event loop instead of two threads per job keeps the start of a job cheap and leaves the
    CPU to the job. The thread starts with the first process and stops ``LINGER`` seconds
    after the last one ended.
    """

    #: Seconds the idle thread waits for another process before it stops.
    LINGER = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._new: list[LocalProcess] = []
        self._thread: threading.Thread | None = None
        self._wake_w: int | None = None

    def add(self, proc: LocalProcess) -> None:
        """Start and watch ``proc`` from the pump thread (starting the thread if needed)."""
        with self._lock:
            self._new.append(proc)
            if self._thread is None:
                r, w = os.pipe()
                self._wake_w = w
                self._thread = threading.Thread(target=self._run, args=(r, w),
                                                name="aup-output-pump", daemon=True)
                self._thread.start()
                return
        self.wake()

    def wake(self) -> None:
        """Make the pump thread look at its processes now."""
        with self._lock:
            if self._wake_w is not None:
                try:
                    os.write(self._wake_w, b"x")
                except BlockingIOError:
                    pass  # already awake: the pipe is full of wake-ups

    def _run(self, wake_r: int, wake_w: int) -> None:
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        selector = selectors.DefaultSelector()
        selector.register(wake_r, selectors.EVENT_READ, None)
        procs: list[LocalProcess] = []
        idle_since = time.monotonic()
        try:
            while True:
                with self._lock:
                    new, self._new = self._new, []
                    if not new and not procs and time.monotonic() - idle_since >= self.LINGER:
                        self._thread = None
                        self._wake_w = None
                        return
                new = [p for p in new if p.spawn()]
                for p in new:
                    p.watch(selector)
                procs.extend(new)
                deadlines = [d for p in procs if (d := p.deadline()) is not None]
                if not procs:
                    timeout = max(0.0, idle_since + self.LINGER - time.monotonic())
                elif deadlines:
                    timeout = max(0.0, min(deadlines) - time.monotonic())
                else:
                    timeout = None
                for key, _ in selector.select(timeout):
                    if key.data is None:
                        try:
                            os.read(wake_r, 4096)
                        except BlockingIOError:
                            pass
                        continue
                    proc, is_exit = key.data
                    if is_exit:
                        proc.on_exit(selector)
                    else:
                        proc.on_output(selector)
                now = time.monotonic()
                done = [p for p in procs if p.check(selector, now)]
                if done:
                    procs = [p for p in procs if p not in done]
                    if not procs:
                        idle_since = time.monotonic()
        finally:
            selector.close()
            os.close(wake_r)
            os.close(wake_w)


def scheduler_environment() -> dict[str, str]:
    """The environment jobs start from: a copy of ``os.environ`` (never modified itself).

    When Auptimizer runs from a virtual environment and no virtual environment is activated
    (``.venv/bin/aup run`` from a plain shell), jobs see Auptimizer's one activated, as
    ``bin/activate`` would do it: ``VIRTUAL_ENV`` set and its ``bin`` first on ``PATH``. So
    ``python`` and ``#!/usr/bin/env python3`` in a job are the interpreter that has ``aup`` and
    the packages installed with it. A virtual environment the user activated (another one than
    Auptimizer's, as with a pipx-style install of the tool) is left alone: the job runs with
    the packages of the environment the user chose. With ``PATH`` unset, the system's default
    search path (``os.defpath``) follows the ``bin`` folder, as the shell's own fallback does.
    """
    env = dict(os.environ)
    if sys.prefix != sys.base_prefix and not env.get("VIRTUAL_ENV"):
        venv_bin = os.path.join(sys.prefix, "bin")
        env["VIRTUAL_ENV"] = sys.prefix
        search = env.get("PATH") or os.defpath
        env["PATH"] = os.pathsep.join([venv_bin, *(d for d in search.split(os.pathsep)
                                                   if d and d != venv_bin)])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


#: The thread-pool variables of OpenMP (PyTorch, scikit-learn), MKL and OpenBLAS (numpy).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_limits(n_parallel: int, environ: dict[str, str]) -> dict[str, str]:
    """Each job's share of this machine's CPUs as thread-pool sizes, with ``n_parallel`` jobs
    at once: ``{"OMP_NUM_THREADS": "4", ...}`` for 2 jobs on 8 CPUs (at least 1). Without it
    every job's PyTorch or numpy started one thread per CPU, and ``n_parallel`` jobs ran
    ``n_parallel`` times too many threads (Ray Tune sets ``OMP_NUM_THREADS`` per trial the
    same way). Nothing for one job at a time, nor when ``environ`` sets any of the three (the
    user chose: OpenBLAS reads its own variable before ``OMP_NUM_THREADS``, so setting only
    the others would override a user's ``OMP_NUM_THREADS`` for numpy).

    Args:
        n_parallel: jobs at once on this machine.
        environ: the environment the jobs start from, with ``runtime_args.env``.
    """
    if n_parallel <= 1 or any(environ.get(name) for name in THREAD_VARIABLES):
        return {}
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    share = str(max(1, cpus // n_parallel))
    return dict.fromkeys(THREAD_VARIABLES, share)


def job_environment(spec: AttemptSpec, base: dict[str, str] | None = None,
                    environ: dict[str, str] | None = None) -> dict[str, str]:
    """A fresh copy of the scheduler's environment for one job.

    Starts from ``environ`` (a :func:`scheduler_environment` taken once by the resource
    manager: copying ``os.environ`` decodes every variable, a third of a millisecond per job),
    or a new one; ``PYTHONUNBUFFERED=1`` is set there unless given (results arrive live).
    Adds ``AUP_JOB_ID``, ``AUP_ATTEMPT``, then ``base`` (resource settings such as
    ``CUDA_VISIBLE_DEVICES``), then ``spec.env`` (``runtime_args.env``, which wins).
    """
    env = dict(environ) if environ is not None else scheduler_environment()
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
        self._pump = OutputPump()
        #: The environment every job starts from, taken once (see :func:`job_environment`).
        self._environ = scheduler_environment()
        #: Each job's thread-pool sizes (see :func:`thread_limits`).
        self._threads = thread_limits(config.n_parallel,
                                      {**self._environ, **config.runtime_args.env})

    @property
    def slots(self) -> list[Slot]:
        return [Slot(f"cpu:{i}", "cpu", "localhost") for i in range(self.config.n_parallel)]

    def slot_env(self, slot: Slot) -> dict[str, str]:
        """Environment variables for a job on ``slot``: no GPU, and the CPU threads shared
        (:func:`thread_limits`)."""
        return {"CUDA_VISIBLE_DEVICES": "", **self._threads}

    def job_env(self, spec: AttemptSpec, slot: Slot) -> dict[str, str]:
        """The complete environment of a job on ``slot`` (``runtime_args.env`` wins)."""
        return job_environment(spec, self.slot_env(slot), self._environ)

    def start(self, spec: AttemptSpec, slot: Slot) -> None:
        self._attempts.start(LocalProcess(spec, self.job_env(spec, slot), self.events,
                                          self.options.kill_grace, self._attempts.ended,
                                          self._pump))

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
