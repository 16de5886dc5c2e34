"""``python -m aup experiment.json`` runs an experiment (same as ``aup run``); :func:`entry`
is also the ``aup`` console script.

The wrapper keeps signals from ending the command with a traceback or a signal death while
modules load or the interpreter winds down: a Ctrl-C or SIGTERM before the command's own
handlers are installed ends it with exit code 130 ("interrupted"), and one that arrives once
the command returned leaves its exit code as it was (trial 51: a Ctrl-C in the first 0.1 s
printed a ``KeyboardInterrupt`` traceback from the import, and a second Ctrl-C during the
exit made it a signal death, -2, after the resume hint was printed; trial 53: also a second
Ctrl-C 50 ms after the first).
"""

import sys

#: The exit code of an interrupted command (the same as ``aup.cli.EXIT_INTERRUPTED``).
_INTERRUPTED = 130


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def entry(argv: list[str] | None = None) -> int:
    """Run the ``aup`` command line (``argv``: the arguments, default ``sys.argv[1:]``).

    Returns:
        The exit code (see :mod:`aup.cli`).
    """
    try:
        import signal

        # SIGTERM as Ctrl-C until the command installs its own handlers (a signal ignored
        # at the start, as under nohup or '&', stays ignored).
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _interrupt)
        from aup.cli import main
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return _INTERRUPTED
    program = _is_the_program()
    if program:
        _print_paths_as_bytes()
    try:
        rc = main(argv)
    except KeyboardInterrupt:  # a second Ctrl-C while the command ended after the first
        if program:
            _exit_quietly_on_signals(_INTERRUPTED)
        print("interrupted", file=sys.stderr)
        return _INTERRUPTED
    if program:
        _exit_quietly_on_signals(rc)
    return rc


def _is_the_program() -> bool:
    """True when this command is the process's program (the ``aup`` console script, or
    ``python -m aup``), not a call from a program that goes on afterwards (its signal handlers
    stay its own)."""
    return getattr(sys.modules.get("__main__"), "entry", None) is entry


def _print_paths_as_bytes() -> None:
    """Let standard output and error print a path whose name is not valid UTF-8 (a ``str``
    with the surrogate escapes of ``os.fsdecode``) as its own bytes, as ``ls`` does, where
    they would fail with ``UnicodeEncodeError`` (a UTF-8 locale other than C makes stdout
    strict: the start line of ``aup run`` in a folder ``caf\\xe9`` crashed). Other text is
    written as before."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict":
            try:
                stream.reconfigure(errors="surrogateescape")
            except (AttributeError, ValueError, OSError):  # not a TextIOWrapper
                pass


def _exit_quietly_on_signals(rc: int) -> None:
    """From now on the interpreter only winds down (every record is written): a Ctrl-C or
    SIGTERM then ends the process with ``rc`` at once instead of a traceback or a signal
    death."""
    import os
    import signal

    def leave(signum: int, frame: object) -> None:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(rc)

    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, leave)


if __name__ == "__main__":
    raise SystemExit(entry())
