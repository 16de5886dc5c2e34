"""Signals outside an experiment's own handlers: while ``aup`` loads its modules and once the
command returned (trial 51). A Ctrl-C or SIGTERM then ends the command without a traceback:
130 ("interrupted") while it loads, the command's own exit code once it returned. (Python's
own start, before any of aup's code runs, still prints its "Fatal Python error" on a Ctrl-C:
nothing in the package can handle that.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Sends the signal to itself while aup.cli is being imported (as a slow start would see it).
DURING_IMPORT = """
import builtins, os, signal, sys
from aup.__main__ import entry
real_import = builtins.__import__
def import_then_signal(name, *args, **kwargs):
    if name == "aup.cli":
        os.kill(os.getpid(), signal.{sig})
    return real_import(name, *args, **kwargs)
builtins.__import__ = import_then_signal
sys.exit(entry(["list"]))
"""

# The command returns 3; a signal arrives while the interpreter winds down. As in the console
# script, the program's __main__ holds ``entry``.
AFTER_RETURN = """
import os, signal, sys
from aup.__main__ import entry
import aup.cli
aup.cli.main = lambda argv=None: 3
rc = entry([])
os.kill(os.getpid(), signal.{sig})
print("not reached")
sys.exit(rc)
"""

# A program that calls aup in-process and goes on: its Ctrl-C stays its own afterwards.
HOST_PROGRAM = """
import os, signal, sys
import aup.__main__
import aup.cli
aup.cli.main = lambda argv=None: 3
rc = aup.__main__.entry([])
try:
    os.kill(os.getpid(), signal.SIGINT)
    signal.pause()
except KeyboardInterrupt:
    print("host handled it")
sys.exit(rc + 1)
"""


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AUP_DB"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_while_modules_load_ends_with_130_and_no_traceback(tmp_path: Path, sig):
    res = _python(DURING_IMPORT.format(sig=sig), tmp_path)
    assert res.returncode == 130, res.stderr
    assert res.stderr.strip() == "interrupted"


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_after_the_command_returned_keeps_its_exit_code(tmp_path: Path, sig):
    res = _python(AFTER_RETURN.format(sig=sig), tmp_path)
    assert res.returncode == 3, res.stderr
    assert "not reached" not in res.stdout and "Traceback" not in res.stderr


def test_a_program_calling_aup_in_process_keeps_its_signal_handlers(tmp_path: Path):
    res = _python(HOST_PROGRAM, tmp_path)
    assert res.returncode == 4, res.stderr
    assert "host handled it" in res.stdout


# The second of two quick Ctrl-Cs escapes the command's own handling of the first (it lands
# while the command prints "interrupted" or closes the database).
SECOND_CTRL_C = """
import sys
from aup.__main__ import entry
import aup.cli
def interrupted_twice(argv=None):
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise KeyboardInterrupt from None
aup.cli.main = interrupted_twice
sys.exit(entry([]))
"""


def test_a_second_quick_ctrl_c_still_ends_with_130(tmp_path: Path):
    # trial 53: two SIGINTs 50 ms apart ended 'aup resume' with -2 in 7 of ~90 rounds
    res = _python(SECOND_CTRL_C, tmp_path)
    assert res.returncode == 130, res.stderr
    assert res.stderr.strip() == "interrupted"


def test_a_run_started_with_sigint_ignored_says_how_to_stop_it(tmp_path: Path) -> None:
    """Trial 68: a shell starts 'aup run ... &' with SIGINT ignored, which the run keeps (the
    terminal's Ctrl-C is not meant for it), so a script's 'kill -INT' did nothing, silently."""
    import signal
    import subprocess
    import sys

    from conftest import QUADRATIC, write_experiment, write_script

    write_script(tmp_path, "job.py", QUADRATIC)
    exp = write_experiment(tmp_path, script="job.py", n_samples=1, parameter_config=[
        {"name": "x", "type": "float", "range": [0, 1]}])
    res = subprocess.run([sys.executable, "-m", "aup", "run", str(exp)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert res.returncode == 0, res.stdout + res.stderr
    assert ("experiment 1: SIGINT (Ctrl-C) is ignored by this process" in res.stderr
            and "stop it with: aup stop 1, or kill -TERM" in res.stderr), res.stderr
    res = subprocess.run([sys.executable, "-m", "aup", "run", str(exp)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "is ignored" not in res.stderr, res.stderr
