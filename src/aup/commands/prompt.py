"""A small question-and-answer helper for the interactive commands (``aup init``, ``aup setup``).

Every answer is checked on the spot; a wrong one is answered with the reason and the question
is asked again. ENTER takes the default shown in brackets. End of input (Ctrl-D) aborts the
dialogue with a :class:`~aup.errors.UsageError` before anything is written.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from aup.errors import UsageError


def masked(text: str) -> str:
    """``text`` with the password of any URL in it shown as ``***``
    (``postgresql://aup:secret@host/db`` -> ``postgresql://aup:***@host/db``): answers are
    echoed back when they are refused, and a database URL carries its password."""
    import re

    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


class Aborted(UsageError):
    """The user ended the dialogue (end of input); nothing was written."""


class Prompter:
    """Asks questions on a terminal.

    Args:
        read: reads one answer line, given the prompt text (default: :func:`input`).
        out: where messages go (default: stdout).
    """

    def __init__(self, read: Callable[[str], str] | None = None, out: TextIO | None = None):
        self._read = read or input
        self._out = out or sys.stdout

    def say(self, text: str) -> None:
        """Print a line."""
        print(text, file=self._out, flush=True)

    def ask(self, question: str, default: Any = None,
            check: Callable[[str], Any] | None = None) -> Any:
        """Ask until ``check`` accepts the answer.

        Args:
            question: the question, without the default.
            default: shown in brackets and used for an empty answer (also checked); None means
                an answer is required.
            check: turns the text into the value, raising ValueError with the reason when the
                answer is wrong. Default: the stripped text.

        Raises:
            Aborted: end of input.
        """
        shown = f" [{default}]" if default is not None and default != "" else ""
        while True:
            try:
                raw = self._read(f"{question}{shown}: ")
            except EOFError:
                self.say("")
                raise Aborted("the dialogue was ended before it finished; nothing was written"
                              ) from None
            raw = raw.strip()
            if raw == "":
                if default is None:
                    self.say("  an answer is needed. Try again.")
                    continue
                raw = str(default)
            try:
                return check(raw) if check else raw
            except ValueError as err:
                self.say(f"  invalid answer {masked(raw)!r}: {err}. Try again.")

    def confirm(self, question: str, default: bool = False) -> bool:
        """Ask a yes/no question."""
        def yes_no(text: str) -> bool:
            t = text.lower()
            if t in ("y", "yes"):
                return True
            if t in ("n", "no"):
                return False
            raise ValueError("answer y or n")

        return self.ask(f"{question} (y/n)", "y" if default else "n", yes_no)

    def choose(self, question: str, options: Sequence[str], default: str | None = None) -> str:
        """Ask for one of ``options`` (case-insensitive)."""
        lowered = {o.lower(): o for o in options}

        def pick(text: str) -> str:
            if text.lower() in lowered:
                return lowered[text.lower()]
            raise ValueError("choose one of " + ", ".join(options))

        return self.ask(f"{question} ({'/'.join(options)})", default, pick)


def allow_replace(prompter: Prompter, path: Path, *, interactive: bool, question: str,
                  fix: str) -> bool:
    """Whether the existing file ``path`` may be replaced (call it when ``--overwrite`` is off).

    Args:
        prompter: asks the question when ``interactive``.
        path: the file that exists.
        interactive: False under ``--no-input``.
        question: the yes/no question asked (default: no).
        fix: what the user can do, for the non-interactive message.

    Returns:
        bool: True when the user said yes; False (after saying "nothing was written") when no.

    Raises:
        UsageError: not interactive: ``<path> exists; nothing was written. Fix: <fix>``.
    """
    if not interactive:
        raise UsageError(f"{path} exists; nothing was written. Fix: {fix}")
    if prompter.confirm(question, False):
        return True
    prompter.say("nothing was written")
    return False


def int_check(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """A check accepting whole numbers in ``[low, high]`` (inclusive; None = unbounded)."""
    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError("a whole number is needed") from None
        if low is not None and value < low:
            raise ValueError(f"it must be >= {low}")
        if high is not None and value > high:
            raise ValueError(f"it must be <= {high}")
        return value

    return check
