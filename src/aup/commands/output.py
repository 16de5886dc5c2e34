"""Writing to standard output so that a reader that went away is noticed.

Standard library only (the CLI imports it at start).
"""

from __future__ import annotations

import os
import sys
from typing import Any


class WholeWriter:
    """Standard output for rich when it is a pipe or a file: each write goes out whole through
    ``os.write``, so a reader that went away raises BrokenPipeError. (CPython's buffered stdout
    reports a large write that the pipe took only in part, 64 KiB, as done: a big table into
    ``| head`` ended with status 0 and the rest of it silently dropped.)"""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.encoding = getattr(stream, "encoding", None) or "utf-8"

    @staticmethod
    def usable(stream: Any) -> bool:
        """Whether ``stream`` has a real file descriptor (not so under pytest's capture)."""
        try:
            stream.fileno()
        except (AttributeError, OSError, ValueError):
            return False
        return True

    def write(self, text: str) -> int:
        self._stream.flush()  # what print() wrote before, in order
        view = memoryview(text.encode(self.encoding, errors="replace"))
        while view:
            view = view[os.write(self._stream.fileno(), view):]
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._stream.fileno()


def write_stdout(text: str) -> None:
    """Write ``text`` to standard output whole (see :class:`WholeWriter`).

    Raises:
        BrokenPipeError: the reader went away (``aup export 1 | head``).
    """
    if WholeWriter.usable(sys.stdout):
        WholeWriter(sys.stdout).write(text)
    else:
        sys.stdout.write(text)
