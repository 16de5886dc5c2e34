"""Jobs and attempts: statuses, failure reasons, and the result-line protocol.

A job is one configuration to evaluate; an attempt is one run of the script for it (a failed
attempt may be retried). A script reports results by printing lines
``#Auptimizer:<value>`` or ``#Auptimizer:<v0>,<v1>,...`` on stdout or stderr. Every such line is
an intermediate result; the last one is the final result. ``v0`` is the score the proposer sees,
the others are the ``multi_res_labels`` values.

This module is shared by every resource: :class:`OutputParser` reads an attempt's output lines and
:func:`judge` turns the way the attempt ended into an :class:`AttemptOutcome`.
"""

from __future__ import annotations

import collections
import logging
import math
import re
from dataclasses import dataclass, field
from enum import Enum

log = logging.getLogger(__name__)

MARKER = "#Auptimizer:"
#: Bytes of output kept in memory per attempt for failure messages.
TAIL_BYTES = 4096


class JobStatus(str, Enum):
    """Status of a job (the ``job.status`` column)."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    EARLY_STOPPED = "EARLY_STOPPED"
    #: Was running when the experiment stopped or crashed; runs again on resume.
    INTERRUPTED = "INTERRUPTED"


class AttemptStatus(str, Enum):
    """Status of one attempt (the ``job_attempt.status`` column)."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    EARLY_STOPPED = "EARLY_STOPPED"
    #: Stopped because the experiment stopped (Ctrl-C, ``aup stop``, another job's failure).
    STOPPED = "STOPPED"
    #: The scheduler died while it ran (found at resume or repair).
    LOST = "LOST"


class FailReason(str, Enum):
    """Why an attempt failed (``job_attempt.fail_reason``)."""

    NONZERO_EXIT = "NONZERO_EXIT"
    KILLED_BY_SIGNAL = "KILLED_BY_SIGNAL"
    TIMEOUT = "TIMEOUT"
    NO_RESULT = "NO_RESULT"
    UNPARSEABLE_RESULT = "UNPARSEABLE_RESULT"
    WRONG_RESULT_COUNT = "WRONG_RESULT_COUNT"
    NON_FINITE_SCORE = "NON_FINITE_SCORE"
    START_FAILED = "START_FAILED"
    LOST = "LOST"
    RESOURCE_ERROR = "RESOURCE_ERROR"


#: Failures of attempts whose job never ran: it could not start, or the resource could not run
#: it (an SSH node that cannot be reached; a Ray runtime environment that cannot be set up).
#: Such a job is not spent and its attempts use no retry (the experiment loop and, on resume,
#: :meth:`aup.store.store.Store.failed_attempt_counts`).
NEVER_RAN = (FailReason.START_FAILED, FailReason.RESOURCE_ERROR)


class StopReason(str, Enum):
    """Why the scheduler stops a running attempt."""

    TIMEOUT = "TIMEOUT"
    EARLY_STOP = "EARLY_STOP"
    EXPERIMENT_STOP = "EXPERIMENT_STOP"


class BadResult(ValueError):
    """A result line carries a marker but no valid numbers."""


def plain_float(text: str) -> float:
    """``float(text)`` for plain ASCII numbers only: Python also reads ``1_000`` (a typo
    ``1_0`` would be 10) and digits of other scripts (``١٢٣``), which no result line means.

    Raises:
        ValueError: not a number in ASCII digits without underscores.
    """
    if not text.isascii() or "_" in text:
        raise ValueError(f"not a plain number: {text!r}")
    return float(text)


#: ANSI/VT100 escape sequences (CSI such as colours ``ESC[32m``, also 8-bit; OSC such as
#: hyperlinks; character-set selection such as ``tput sgr0``'s ``ESC(B``; two-character ones
#: such as ``ESC7``), removed before a result line is read.
_ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)"
                          r"|[()*+\-./][ -~]|[0-?@-Z\\-_])|\x9b[0-?]*[ -/]*[@-~]")


def parse_result_line(line: str) -> tuple[float, ...] | None:
    """Parse one output line.

    The marker may appear anywhere in the line (after other text); the values follow it,
    separated by commas, with surrounding spaces allowed; scientific notation is accepted.
    Terminal escape sequences (a coloured logger's ``ESC[32m ... ESC[0m``) are ignored.
    Non-finite values (nan, inf) are returned as such: the caller decides.

    Args:
        line: one line of output, with or without its newline.

    Returns:
        None when the line has no marker, else the tuple of values (at least one).

    Raises:
        BadResult: the marker is followed by something that is not a list of numbers.
    """
    if "\x1b" in line or "\x9b" in line:  # a coloured logger's codes around the marker
        line = _ANSI_ESCAPE.sub("", line)
    pos = line.rfind(MARKER)
    if pos < 0:
        return None
    text = line[pos + len(MARKER):].strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    parts = [p.strip() for p in text.split(",")]
    if parts and parts[-1] == "" and len(parts) > 1:
        parts = parts[:-1]
    try:
        values = tuple(plain_float(p) for p in parts)
    except ValueError:
        raise BadResult(f"cannot read numbers from {text[:80]!r}") from None
    if not values:
        raise BadResult("no value after the marker")
    return values


@dataclass
class OutputParser:
    """Follows one attempt's output: result lines, the last result, and a bounded tail.

    Feed it decoded lines with :meth:`feed`. It keeps only O(1) memory: the last valid result,
    whether the last marker line was bad, counts, and the last ``TAIL_BYTES`` characters.

    Attributes:
        n_labels: number of ``multi_res_labels``; a line must then carry ``1 + n_labels`` values.
        label: job/attempt name for log messages.
    """

    n_labels: int = 0
    label: str = "job"
    last: tuple[float, ...] | None = None
    last_bad: str | None = None
    n_results: int = 0
    n_bad: int = 0
    _tail: collections.deque = field(default_factory=lambda: collections.deque())
    _tail_len: int = 0

    def feed(self, line: str) -> tuple[float, ...] | None:
        """Take one line; return its values when it is a valid result line, else None.

        Bad marker lines (garbage, wrong count) are logged and remembered: if no valid line
        follows, the attempt fails with the matching reason.
        """
        self._keep_tail(line)
        try:
            values = parse_result_line(line)
        except BadResult as err:
            self.n_bad += 1
            self.last_bad = f"{FailReason.UNPARSEABLE_RESULT.value}: {err}"
            log.warning("%s: skipped unparseable result line: %s", self.label, err)
            return None
        if values is None:
            return None
        if self.n_labels and len(values) != 1 + self.n_labels:
            self.n_bad += 1
            self.last_bad = (f"{FailReason.WRONG_RESULT_COUNT.value}: expected {1 + self.n_labels}"
                             f" values (score + multi_res_labels), got {len(values)}")
            log.warning("%s: skipped result line with %d values, expected %d", self.label,
                        len(values), 1 + self.n_labels)
            return None
        self.last = values
        self.last_bad = None
        self.n_results += 1
        return values

    def _keep_tail(self, line: str) -> None:
        if len(line) > TAIL_BYTES:
            line = line[-TAIL_BYTES:]
        self._tail.append(line)
        self._tail_len += len(line) + 1  # + the newline the lines are joined with
        while self._tail_len > TAIL_BYTES and len(self._tail) > 1:
            self._tail_len -= len(self._tail.popleft()) + 1

    @property
    def tail(self) -> str:
        """The last ``TAIL_BYTES`` characters of output (at most), one line per line."""
        return "\n".join(self._tail)[-TAIL_BYTES:]


@dataclass
class AttemptOutcome:
    """How an attempt ended.

    Attributes:
        status: SUCCEEDED, FAILED, EARLY_STOPPED or STOPPED.
        score: the final primary value in the script's own direction (None if none).
        extras: the final secondary values (``multi_res_labels`` order).
        exit_code: the process exit code; negative = killed by that signal; None if unknown.
        reason: the failure reason when FAILED.
        detail: one line for humans.
        tail: the end of the output.
    """

    status: AttemptStatus
    score: float | None = None
    extras: tuple[float, ...] = ()
    exit_code: int | None = None
    reason: FailReason | None = None
    detail: str = ""
    tail: str = ""


#: A frame line of a Python traceback.
_FRAME = re.compile(r'^  File "[^"]*", line \d+')


def last_error_line(tail: str, limit: int = 200) -> str | None:
    """The exception line of the last Python traceback in an attempt's output ``tail``
    (``RuntimeError: CUDA out of memory``), cut to ``limit`` characters; None when the tail
    holds no traceback frame. The line is the first one without indentation after the last
    frame (``  File "...", line N``), so any exception name works, and so does a traceback
    whose header the tail has cut off (a deep stack)."""
    lines = tail.splitlines()
    last_frame = max((i for i, line in enumerate(lines) if _FRAME.match(line)), default=None)
    if last_frame is None:
        return None
    for line in lines[last_frame + 1:]:
        if line.strip() and not line[0].isspace():
            text = line.strip()
            return text if len(text) <= limit else text[:limit - 3] + "..."
    return None


def judge(exit_code: int | None, parser: OutputParser,
          stopped: StopReason | None = None, start_error: str | None = None) -> AttemptOutcome:
    """Decide how an attempt ended from its exit code and output.

    Rules, first match wins: a start error -> FAILED/START_FAILED; stopped for timeout ->
    FAILED/TIMEOUT; early stop -> EARLY_STOPPED with the last value; experiment stop -> STOPPED;
    killed by a signal -> FAILED/KILLED_BY_SIGNAL; non-zero exit -> FAILED/NONZERO_EXIT (the
    parsed value, if any, is kept); no valid result -> NO_RESULT, or the reason of the last bad
    marker line; a non-finite final score -> NON_FINITE_SCORE; else SUCCEEDED.

    Args:
        exit_code: process exit status (negative: signal number), None if unknown.
        parser: the attempt's output parser.
        stopped: why the scheduler stopped the attempt, if it did.
        start_error: text of the error that prevented the start.

    Returns:
        The outcome.
    """
    last = parser.last
    score = last[0] if last else None
    extras = tuple(last[1:]) if last else ()
    tail = parser.tail

    def fail(reason: FailReason, detail: str) -> AttemptOutcome:
        return AttemptOutcome(AttemptStatus.FAILED, score, extras, exit_code, reason, detail, tail)

    if start_error is not None:
        return fail(FailReason.START_FAILED, start_error)
    if stopped is StopReason.TIMEOUT:
        return fail(FailReason.TIMEOUT, "stopped after job_timeout")
    if stopped is StopReason.EARLY_STOP:
        return AttemptOutcome(AttemptStatus.EARLY_STOPPED, score, extras, exit_code, None,
                              "stopped early by the early-stopping policy", tail)
    if stopped is StopReason.EXPERIMENT_STOP:
        return AttemptOutcome(AttemptStatus.STOPPED, score, extras, exit_code, None,
                              "stopped with the experiment", tail)
    if exit_code is not None and exit_code < 0:
        import signal

        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = str(-exit_code)
        return fail(FailReason.KILLED_BY_SIGNAL, f"killed by signal {name}")
    if exit_code not in (0, None):
        detail = f"exited with code {exit_code}"
        error = last_error_line(tail)
        if error:  # what Optuna records for a failed trial: the exception (trial 65)
            detail += f"; last exception in its output: {error}"
        if score is not None:  # 2.0 used it: say why it is not (trial 56)
            detail += (f" after printing the result {score:g}, which is not used: a result "
                       "counts only when the job exits with code 0 (Auptimizer 2.0 ignored "
                       "exit codes)")
        return fail(FailReason.NONZERO_EXIT, detail)
    if parser.last_bad is not None:
        reason, _, text = parser.last_bad.partition(": ")
        return fail(FailReason(reason), f"the last result line is invalid: {text}")
    if last is None:
        detail = f"no '{MARKER}<value>' line in the output"
        if MARKER.lower() in tail.lower():
            detail += (f" (a marker in other letter case was printed: write exactly "
                       f"'{MARKER}', or use aup.print_result)")
        elif MARKER[1:].lower() in tail.lower():
            detail += (f" ('{MARKER[1:]}' was printed without its '#': write exactly "
                       f"'{MARKER}<value>', or use aup.print_result)")
        else:
            detail += ("; print it with aup.print_result(score), or return the score from the "
                       "function decorated with @aup_args (a None return prints nothing)")
        return fail(FailReason.NO_RESULT, detail)
    if not math.isfinite(last[0]):
        return fail(FailReason.NON_FINITE_SCORE, f"the final score is not finite: {last[0]}")
    return AttemptOutcome(AttemptStatus.SUCCEEDED, score, extras, exit_code, None, "", tail)
