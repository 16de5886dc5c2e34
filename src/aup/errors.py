"""Exceptions raised by Auptimizer.

Every error Auptimizer raises on purpose derives from :class:`AupError`; the CLI maps them to
exit codes (2 for :class:`ConfigError` and :class:`UsageError`, 1 for the rest) and prints them
without a traceback.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any


def install_hint(extra: str) -> str:
    """How to install the optional dependencies ``extra`` (e.g. ``"dashboard"``), for an
    installed package and for a clone of the repository (the README's way)."""
    return f"pip install 'auptimizer[{extra}]' (from a clone: pip install -e '.[{extra}]')"


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """The top-level modules of ``modules`` that cannot be imported (looked up with
    ``importlib.util.find_spec``, not imported), for an error that names what to install."""
    import importlib.util

    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # ValueError: sys.modules[name] is None
            found = False
        if not found:
            out.append(name)
    return out


class AupError(Exception):
    """Base class of every error Auptimizer raises deliberately."""


class UsageError(AupError):
    """A command was used wrongly (unknown experiment id, missing file...). Exit code 2."""


class StoreError(AupError):
    """The database cannot be opened or written (wrong URL, server down, wrong password)."""


class DatabaseUnavailable(StoreError):
    """The database server stopped answering during a run and did not come back in time
    (the experiment could not record its progress; it is resumed once the server is back).
    Exit code 1."""

    #: What must happen before ``aup resume`` can go on (completes the CLI's "Fix:" hint).
    repair = "when the database answers again"


class DatabaseWriteFailed(DatabaseUnavailable):
    """A SQLite database could not be written during a run (disk full, file-size limit, I/O
    error, read-only file). Handled like :class:`DatabaseUnavailable`: running jobs are stopped,
    what was recorded stays, and the experiment is resumed once the file can be written."""

    repair = ("once the database can be written again (free space on its disk, or fix the "
              "file's permissions)")
    #: The hint when another program held the file's lock past the busy timeout.
    repair_locked = ("once no other program holds the database file's lock (another aup run "
                     "writing to the same file, or a tool keeping a write transaction open on it)")

    def __init__(self, message: str, *, locked: bool = False):
        super().__init__(message)
        if locked:
            self.repair = self.repair_locked


class DatabaseDamaged(DatabaseWriteFailed):
    """A SQLite file is damaged inside ("database disk image is malformed"): pages were
    overwritten, or a copy was taken while it was written. Raised by any read or write of it
    (views, the Python API, a run), instead of SQLAlchemy's ``DatabaseError``. Exit code 2
    from the read commands; a run stops its jobs like :class:`DatabaseWriteFailed`."""

    repair = "once the file is restored or replaced (see above)"

    @staticmethod
    def recovery(path: object) -> str:
        """The fix for the damaged SQLite file ``path``: a backup, or the rows SQLite's shell
        can still read copied into a new file (its ``.dump`` of a damaged file ends with
        ``ROLLBACK``, which would undo the copy: it becomes ``COMMIT``)."""
        from aup.store.store import sqlite_url

        saved = f"{os.path.dirname(os.fspath(path))}/recovered.db"
        return (f"Fix: restore it from a backup; or copy the rows SQLite can still read into a "
                f"new file: sqlite3 '{path}' .dump | sed 's/^ROLLBACK; -- due to errors$/"
                f"COMMIT;/' | sqlite3 '{saved}' and use it with --db {sqlite_url(saved)} (or "
                f"move the damaged file away to start a new database)")


class DatabaseFileGone(DatabaseDamaged):
    """The SQLite file of a running experiment was deleted or replaced by another file: the
    scheduler would go on writing into the old file, which nothing else can read, and end
    "FINISHED" with every record lost (trial 66). A run stops its jobs and exits 1."""

    repair = "once the database file is back (see above)"


class ExperimentFailed(AupError):
    """The experiment ended FAILED (a job failed without ``ignore_fail``, or no job succeeded)."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a configuration.

    Attributes:
        path: JSON path of the offending key, e.g. ``parameter_config[1].range``.
        message: what is wrong.
        value: the offending value (``MISSING`` when the key is absent).
        hint: how to fix it (may be empty).
    """

    path: str
    message: str
    value: Any = None
    hint: str = ""

    def render(self) -> str:
        """Return the problem as one human-readable line."""
        text = f"{self.path or '<top level>'}: {self.message}"
        if self.value is not MISSING:
            text += f" (got {_short(self.value)})"
        if self.hint:
            text += f". Fix: {self.hint}"
        return text


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def shown_json(value: Any) -> str:
    """``value`` as JSON text for a message: non-ASCII text as typed (``"ü"``, not
    ``"\\u00fc"``, as a path in the same message shows it), every character that is not
    printable escaped (``\\u001b``, ``\\u200b``, a lone surrogate...), so that a message cannot
    act on the terminal or hide a difference, and stays valid JSON to paste.

    Raises:
        TypeError, ValueError: as :func:`json.dumps`.
    """
    text = json.dumps(value, ensure_ascii=False)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = shown_json(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConfigError(AupError):
    """The experiment configuration is invalid.

    Collects every problem found, each with its key path, the bad value and a hint, so that the
    user fixes them all at once.

    Attributes:
        problems: the problems, in the order they were found.
        source: the file the configuration came from, if any.
        warnings: warnings found on the way (unknown keys...), shown after the problems so
            that one round of fixes covers them too.
    """

    def __init__(self, problems: list[Problem], source: str | None = None,
                 warnings: list[str] | None = None):
        self.problems = list(problems)
        self.source = source
        self.warnings = list(warnings or [])
        super().__init__(self.render())

    def render(self) -> str:
        """Return a multi-line message listing every problem, then every warning."""
        where = f" in {self.source}" if self.source else ""
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the experiment configuration{where}:"
        lines = [head] + [f"  - {p.render()}" for p in self.problems]
        if self.warnings:
            lines.append("also (warnings):")
            lines += [f"  - {w}" for w in self.warnings]
        return "\n".join(lines)
