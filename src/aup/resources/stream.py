"""Output handling shared by the remote resources (node, aws, ray, passive).

:class:`OutputSink` takes an attempt's output as it arrives (raw bytes or decoded lines),
writes it to the local ``jobs/<jid>.<attempt>.out`` copy, feeds the shared
:class:`~aup.job.OutputParser` and queues a :class:`~aup.resources.base.ResultEvent` for every
valid result line, exactly like a local job. :func:`resource_failure` builds the outcome of an
attempt that failed because of the resource (connection lost, node unreachable).
"""

from __future__ import annotations

import logging
import time
from typing import IO

from aup.job import AttemptOutcome, AttemptStatus, FailReason, OutputParser
from aup.resources.base import AttemptSpec, EndEvent, ResultEvent

log = logging.getLogger(__name__)

#: Longest piece of a line kept while waiting for its end (bytes).
PARTIAL_LIMIT = 4096


class OutputSink:
    """Local output copy + result parsing of one attempt.

    Args:
        spec: the attempt (``output_path`` is the local copy).
        events: the manager's event queue.

    Use as a context manager (the file is closed at exit), or call :meth:`close`.
    """

    def __init__(self, spec: AttemptSpec, events):
        self.spec = spec
        self.events = events
        self.parser = OutputParser(spec.n_labels, spec.label)
        spec.output_path.parent.mkdir(parents=True, exist_ok=True)
        self._out: IO[bytes] | None = open(spec.output_path, "wb")  # noqa: SIM115
        self._partial = b""

    def __enter__(self) -> OutputSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write_chunk(self, chunk: bytes) -> None:
        """Take one chunk that is a full line (ends with ``\\n``) or a piece of a long line."""
        self._write(chunk)
        if not chunk.endswith(b"\n"):
            self._partial = (self._partial + chunk)[-PARTIAL_LIMIT:]
            return
        if self._partial:
            chunk, self._partial = self._partial + chunk, b""
        self.feed_line(chunk.decode("utf-8", errors="replace").rstrip("\r\n"), write=False)

    def feed_line(self, line: str, write: bool = True) -> None:
        """Take one decoded line (without its newline)."""
        if write:
            self._write((line + "\n").encode("utf-8", errors="replace"))
        values = self.parser.feed(line)
        if values is not None:
            self.events.put(ResultEvent(self.spec.job_id, self.spec.attempt, values,
                                        time.time()))

    def _write(self, data: bytes) -> None:
        if self._out is None:
            return
        try:
            self._out.write(data.decode("utf-8", errors="replace").encode("utf-8"))
            self._out.flush()
        except OSError as err:
            log.error("%s: cannot write output to %s: %s", self.spec.label,
                      self.spec.output_path, err)
            self._out = None

    def close(self) -> None:
        """Parse a last unterminated line and close the local copy."""
        if self._partial:
            partial, self._partial = self._partial, b""
            self.feed_line(partial.decode("utf-8", errors="replace"), write=False)
        if self._out is not None:
            self._out.close()
            self._out = None


def resource_failure(parser: OutputParser, reason: FailReason, detail: str,
                     exit_code: int | None = None) -> AttemptOutcome:
    """A FAILED outcome caused by the resource (``RESOURCE_ERROR``, ``LOST``...)."""
    last = parser.last
    return AttemptOutcome(AttemptStatus.FAILED, last[0] if last else None,
                          tuple(last[1:]) if last else (), exit_code, reason, detail,
                          parser.tail)


def end_event(spec: AttemptSpec, outcome: AttemptOutcome) -> EndEvent:
    """The EndEvent of ``spec`` with ``outcome``, stamped now."""
    return EndEvent(spec.job_id, spec.attempt, outcome, time.time())
