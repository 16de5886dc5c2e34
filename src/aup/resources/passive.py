"""``resource: passive``: the user runs every job by hand (for debugging a script).

For each attempt Auptimizer writes the job config (``<workingdir>/jobs/<jid>.json``), prints the
command to run and waits. The user runs it wherever they like and reports the result:

* typed at the prompt of the running ``aup``: ``<jid> <value>`` (or just ``<value>`` when one
  job waits; ``<jid> fail [exit code]`` for a failed run). Values may be a list ``v0,v1,...``
  when ``multi_res_labels`` is set;
* or from any shell with ``aup tell <experiment> <jid> <value>`` (``--intermediate`` for an
  intermediate result, ``--exit-code N`` for a failure). The value goes into the database
  (``told_result``) and the experiment process polls it every ``poll_interval`` seconds.

Both refuse a value the job would fail on (a NaN or infinite score, a count other than
1 + len(``multi_res_labels``)): :func:`check_values`. The job keeps waiting.

A told value is judged exactly like a ``#Auptimizer:`` line (same parser): a final value ends the
attempt as SUCCEEDED, an exit code as FAILED/NONZERO_EXIT, ``job_timeout`` and stops end the wait.
Several jobs may wait at once (``n_parallel`` > 1); one slot per parallel job.

Printing and reading the terminal are the point of this resource, so it is the one library part
that writes to stdout (``announce``) and reads stdin (``"prompt": false`` turns that off).
"""

from __future__ import annotations

import logging
import math
import shlex
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field

from aup.job import MARKER, OutputParser, StopReason, judge, plain_float
from aup.resources.base import AttemptSpec, ResourceManager, ResourceOptions, ResultEvent, Slot
from aup.resources.local import write_job_config
from aup.resources.stream import end_event

log = logging.getLogger(__name__)


class PassiveOptions(ResourceOptions):
    """``resource_args`` of ``passive``.

    Attributes:
        poll_interval: seconds between two reads of values sent with ``aup tell``.
        prompt: read results typed on stdin.
    """

    poll_interval: float = Field(default=0.3, gt=0)
    prompt: bool = True


@dataclass
class Waiting:
    """An attempt waiting for the user."""

    spec: AttemptSpec
    parser: OutputParser
    command: str
    started: float = field(default_factory=time.time)


def parse_values(text: str) -> tuple[float, ...]:
    """``"0.5"`` or ``"0.5,1,2"`` -> floats.

    Raises:
        ValueError: not a comma-separated list of numbers.
    """
    parts = [p.strip() for p in text.strip().strip("[]()").split(",") if p.strip()]
    if not parts:
        raise ValueError("no value")
    try:
        return tuple(plain_float(p) for p in parts)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a number or a comma-separated list of "
                         "numbers") from None


def parse_exit_code(text: str | int) -> int:
    """The exit code of a failed run: 1 to 255, or -1 to -64 for a run killed by that
    signal (as local jobs record it).

    Raises:
        ValueError: not an integer, 0 (a success: tell its value instead), or out of range.
    """
    try:
        code = int(text)
    except ValueError:
        raise ValueError(f"the exit code {text!r} is not an integer") from None
    if code == 0:
        raise ValueError("exit code 0 means the run succeeded: tell its value instead")
    if not (1 <= code <= 255 or -64 <= code <= -1):
        raise ValueError(f"exit code {code} is out of range: use 1-255 (or -N for a run "
                         "killed by signal N)")
    return code


def value_hint(labels: Sequence[str]) -> str:
    """How a told value is written: ``<value>``, or ``<score>,<acc>`` with multi_res_labels."""
    return ",".join(["<score>", *(f"<{lab}>" for lab in labels)]) if labels else "<value>"


def check_values(values: tuple[float, ...], labels: Sequence[str]) -> None:
    """Refuse a told value that would fail the job instead of reporting its result.

    Args:
        values: the parsed value (score first).
        labels: the experiment's ``multi_res_labels`` (empty: any count, as for result lines).

    Raises:
        ValueError: the score is NaN or infinite (the job would fail NON_FINITE_SCORE), or,
            with labels, the count is not 1 + len(labels) (WRONG_RESULT_COUNT); the message
            names the expected values.
    """
    if not math.isfinite(values[0]):
        raise ValueError(f"the score must be a finite number, got {values[0]}")
    if labels and len(values) != 1 + len(labels):
        raise ValueError(f"this experiment has multi_res_labels {list(labels)}, so a result "
                         f"is {1 + len(labels)} values, {value_hint(labels)}; got "
                         f"{len(values)}")


class PassiveResourceManager(ResourceManager):
    """``resource: passive`` (see the module docstring)."""

    kind: ClassVar[str] = "passive"
    Options = PassiveOptions
    keeps_output: ClassVar[bool] = False

    def __init__(self, config, events, env_file: Any = None):
        super().__init__(config, events, env_file)
        self.store: Any = None
        self.eid: int | None = None
        self._waiting: dict[int, Waiting] = {}  # by jid
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._poller: threading.Thread | None = None
        self._last_tid = 0
        self._told_lock = threading.Lock()
        self._taken: set[int] = set()  # told rows stop() applied past _last_tid
        self.labels = [str(x) for x in (config.resource_args.multi_res_labels or [])]
        #: Where instructions go (a callable taking one string); stdout by default.
        self.announce = lambda text: print(text, flush=True)

    @property
    def slots(self) -> list[Slot]:
        return [Slot(f"passive:{i}", "passive", f"passive:{i}")
                for i in range(self.config.n_parallel)]

    def attach(self, store: Any, eid: int) -> None:
        self.store = store
        self.eid = eid
        # The experiment is prepared before its row exists, so the poller may start here.
        self._start_poller()

    def _start_poller(self) -> None:
        """Start polling the store for ``aup tell`` values, once a store is attached."""
        if self.store is None or self._poller is not None:
            return
        self._last_tid = self._start_tid = self._max_tid()
        self._poller = threading.Thread(target=self._poll, name="aup-passive-poll", daemon=True)
        self._poller.start()

    @property
    def prompting(self) -> bool:
        """True when results typed on stdin are read (``prompt`` on, and a stdin exists)."""
        return bool(self.options.prompt and sys.stdin is not None)

    def prepare(self) -> None:
        self._start_poller()
        if self.prompting:
            threading.Thread(target=self._read_stdin, name="aup-passive-stdin",
                             daemon=True).start()

    def _max_tid(self) -> int:
        from sqlalchemy import func, select

        from aup.store import schema

        with self.store.engine.connect() as c:
            return int(c.execute(select(func.max(schema.told_result.c.tid))).scalar() or 0)

    # -- attempts ------------------------------------------------------------------------------
    def pending(self) -> list[Waiting]:
        """The attempts waiting for the user, oldest first."""
        with self._lock:
            return sorted(self._waiting.values(), key=lambda w: w.started)

    def start(self, spec: AttemptSpec, slot: Slot) -> None:
        try:
            write_job_config(spec)
        except OSError as err:
            parser = OutputParser(spec.n_labels, spec.label)
            self.events.put(end_event(spec, judge(None, parser, start_error=str(err))))
            return
        env = {"PYTHONUNBUFFERED": "1", "AUP_JOB_ID": str(spec.job_id),
               "AUP_ATTEMPT": str(spec.attempt), **spec.env}
        argv = [*spec.command, str(spec.config_path)]
        # The same steps as the other resources run: prescript, the job, postscript.
        steps = [f"cd {shlex.quote(str(spec.workingdir))}", spec.prescript.strip(),
                 shlex.join(["env", *[f"{k}={v}" for k, v in env.items()], *argv])]
        command = " && ".join(step for step in steps if step)
        if spec.postscript.strip():
            command += f"; {spec.postscript.strip()}"
        w = Waiting(spec, OutputParser(spec.n_labels, spec.label), command)
        with self._lock:
            self._waiting[spec.job_id] = w
        exp = self.eid if self.eid is not None else "<experiment>"
        hint = value_hint(self.labels)
        tell = f"aup tell {exp} {spec.job_id} {hint}"
        then = (f"then type '{spec.job_id} {hint}' here, or run: {tell}" if self.prompting
                else f"then run: {tell}")
        self.announce(
            f"[aup passive] job {spec.job_id} (attempt {spec.attempt}) waits for you. Run:\n"
            f"  {command}\n"
            f"  (config: {spec.config_path})\n"
            f"{then}")
        if spec.attempt > 0:
            self._take_carried(spec)

    def _take_carried(self, spec: AttemptSpec) -> None:
        """Apply the values told for the job's previous attempt that its scheduler never read:
        it crashed (``kill -9``) between the ``aup tell`` and its next poll, and the user was
        told the value was accepted. They are the rows stored before this process started
        polling and after that attempt started."""
        if self.store is None:
            return
        try:
            previous = [a for a in self.store.attempts(spec.job_id) if a["num"] < spec.attempt]
            if not previous or previous[-1]["start_time"] is None:
                return
            since = float(previous[-1]["start_time"])
            rows = [r for r in self.store.told([spec.job_id])
                    if r["tid"] <= self._start_tid and (r["time"] or 0.0) >= since]
        except Exception as err:  # noqa: BLE001 - a busy database: the user can tell again
            log.warning("passive: cannot read the values told before the restart: %s", err)
            return
        if rows:
            self.announce(f"[aup passive] job {spec.job_id}: taking the value told for its "
                          "previous attempt (its experiment stopped before reading it)")
        for r in rows:
            if not self.receive(r["jid"], r["values"], r["final"], r["exit_code"]):
                break

    def stop(self, job_id: int, attempt: int, reason: StopReason) -> None:
        """Stop waiting for the attempt. A value ``aup tell`` stored before the stop but that
        the poller has not read yet (it reads every ``poll_interval`` seconds) is taken first:
        the user was told it was accepted, so it must not be dropped."""
        self._take_told([job_id], advance=False)
        with self._lock:
            w = self._waiting.get(job_id)
            if w is None or w.spec.attempt != attempt:
                return
            del self._waiting[job_id]
        self.announce(f"[aup passive] job {job_id} is no longer waited for ({reason.value})")
        self.events.put(end_event(w.spec, judge(None, w.parser, stopped=reason)))

    def receive(self, jid: int, values: tuple[float, ...] | None, final: bool = True,
                exit_code: int | None = None) -> bool:
        """Apply a result for job ``jid`` (from the prompt or ``aup tell``).

        Returns:
            False when no attempt of that job is waiting.
        """
        with self._lock:
            w = self._waiting.get(jid)
            if w is None:
                return False
            if final or exit_code is not None:
                del self._waiting[jid]
        spec = w.spec
        if values is not None:
            line = MARKER + ",".join(repr(float(v)) for v in values)
            parsed = w.parser.feed(line)
            if parsed is not None:
                self.events.put(ResultEvent(spec.job_id, spec.attempt, parsed, time.time()))
        if final or exit_code is not None:
            self.events.put(end_event(spec, judge(exit_code if exit_code is not None else 0,
                                                  w.parser)))
        return True

    # -- inputs --------------------------------------------------------------------------------
    def _poll(self) -> None:
        while not self._closed.wait(self.options.poll_interval):
            with self._lock:
                jids = list(self._waiting)
            if jids:
                self._take_told(jids)

    def _take_told(self, jids: list[int], advance: bool = True) -> None:
        """Apply the values told for ``jids`` since the last read, each told row once. The
        poller reads every waiting job and moves past what it read (``advance``); :meth:`stop`
        reads one job and only notes the rows it took, so that the poller skips them."""
        if self.store is None:
            return
        with self._told_lock:
            try:
                rows = self.store.told(jids, after=self._last_tid)
            except Exception as err:  # noqa: BLE001 - a busy database must not kill the poller
                log.warning("passive: cannot read told results: %s", err)
                return
            for r in rows:
                if r["tid"] in self._taken:
                    continue
                if not advance:
                    self._taken.add(r["tid"])
                self.receive(r["jid"], r["values"], r["final"], r["exit_code"])
            if advance and rows:
                self._last_tid = max(self._last_tid, max(r["tid"] for r in rows))
                self._taken = {t for t in self._taken if t > self._last_tid}

    def _read_stdin(self) -> None:
        while not self._closed.is_set():
            try:
                line = sys.stdin.readline()
            except (OSError, ValueError):
                return
            if not line:
                return
            if line.strip():
                self.handle_input(line)

    def handle_input(self, line: str) -> str:
        """Apply one line typed at the prompt; returns the reply shown to the user.

        A value the job would fail on (NaN or infinite score, a wrong number of values with
        ``multi_res_labels``) is refused with the reason; the job keeps waiting.
        """
        words = line.split()
        waiting = self.pending()
        hint = value_hint(self.labels)
        try:
            # '<jid> ...', or, with one job waiting, the value or 'fail [code]' alone (trial 56:
            # 'fail 2' read 'fail' as a job id)
            if len(words) == 1 or not words[0].isdigit():
                if not waiting:
                    raise ValueError("no job waits for a result now")
                if len(waiting) != 1:
                    raise ValueError(f"{len(waiting)} jobs wait ("
                                     f"{', '.join(str(w.spec.job_id) for w in waiting)}), so "
                                     "give the job id first")
                jid, rest = waiting[0].spec.job_id, words
            else:
                jid, rest = int(words[0]), words[1:]
            if rest[0].lower() == "fail":
                code = parse_exit_code(rest[1]) if len(rest) > 1 else 1
                ok = self.receive(jid, None, exit_code=code)
            else:
                values = parse_values(" ".join(rest))
                check_values(values, self.labels)
                ok = self.receive(jid, values)
            reply = (f"job {jid}: recorded" if ok else f"job {jid} is not waiting (waiting: "
                     f"{', '.join(str(w.spec.job_id) for w in waiting) or 'none'})")
        except (ValueError, IndexError) as err:
            reply = (f"cannot read {line.strip()!r}: {err}; type '<jid> {hint}' or "
                     "'<jid> fail [code]' for a failed run")
        self.announce("[aup passive] " + reply)
        return reply

    def close(self) -> None:
        self._closed.set()
        for w in self.pending():
            self.stop(w.spec.job_id, w.spec.attempt, StopReason.EXPERIMENT_STOP)
