"""The #Auptimizer: result-line protocol and how an attempt is judged."""

from __future__ import annotations

import math

import pytest

from aup.job import (
    AttemptStatus,
    BadResult,
    FailReason,
    OutputParser,
    StopReason,
    judge,
    parse_result_line,
)


@pytest.mark.parametrize("line, values", [
    ("#Auptimizer:0.5", (0.5,)),
    ("#Auptimizer: 1e-3 ", (0.001,)),
    ("#Auptimizer:  -2.5E+2\n", (-250.0,)),
    ("epoch 3 done #Auptimizer:0.9", (0.9,)),
    ("#Auptimizer:1,2.5,3", (1.0, 2.5, 3.0)),
    ("#Auptimizer:[1, 2]", (1.0, 2.0)),
    ("#Auptimizer:nan", (math.nan,)),
    # trial 71: a coloured logger's escape sequences around the marker or the values
    ("\x1b[32m#Auptimizer:7.5\x1b[0m", (7.5,)),
    ("\x1b[1m#Auptimizer:\x1b[0m7.75", (7.75,)),
    ("INFO \x1b[1;34mres\x1b[0m #Auptimizer: 0.5,\x1b[33m2\x1b[39m\r\n", (0.5, 2.0)),
    ("\x1b]8;;http://x\x1b\\#Auptimizer:3\x1b]8;;\x1b\\", (3.0,)),
    # trial 73: tput sgr0 (ESC(B ESC[m), cursor save/restore, keypad mode, 8-bit CSI
    ("\x1b[32m#Auptimizer:0.25\x1b(B\x1b[m", (0.25,)),
    ("\x1b7#Auptimizer:1.5\x1b8", (1.5,)),
    ("\x1b=#Auptimizer:1.5\x1b>", (1.5,)),
    ("\x9b32m#Auptimizer:1.5\x9b0m", (1.5,)),
])
def test_parse_valid_lines(line: str, values: tuple) -> None:
    got = parse_result_line(line)
    assert got is not None and len(got) == len(values)
    for a, b in zip(got, values, strict=True):
        assert (math.isnan(a) and math.isnan(b)) or a == b


def test_lines_without_marker() -> None:
    assert parse_result_line("loss 0.3") is None


@pytest.mark.parametrize("line", ["#Auptimizer:", "#Auptimizer:abc", "#Auptimizer:1,,x",
                                  "#Auptimizer:None",
                                  # trial 45: Python's float() reads these; no result means them
                                  "#Auptimizer:1_000", "#Auptimizer:1,2_0",
                                  "#Auptimizer:\u0661\u0662\u0663", "#Auptimizer:\uff11\uff12"])
def test_bad_lines(line: str) -> None:
    with pytest.raises(BadResult):
        parse_result_line(line)


def test_last_line_is_final_and_garbage_in_the_middle_is_skipped() -> None:
    p = OutputParser()
    for line in ["#Auptimizer:1", "#Auptimizer:oops", "#Auptimizer:3"]:
        p.feed(line)
    assert p.last == (3.0,) and p.n_results == 2 and p.n_bad == 1
    assert judge(0, p).status is AttemptStatus.SUCCEEDED
    assert judge(0, p).score == 3.0


def test_garbage_last_line_fails_unparseable() -> None:
    p = OutputParser()
    p.feed("#Auptimizer:1")
    p.feed("#Auptimizer:oops")
    o = judge(0, p)
    assert o.status is AttemptStatus.FAILED and o.reason is FailReason.UNPARSEABLE_RESULT


def test_wrong_count_with_labels() -> None:
    p = OutputParser(n_labels=2)
    assert p.feed("#Auptimizer:1,2,3") == (1.0, 2.0, 3.0)
    assert p.feed("#Auptimizer:1,2") is None
    assert judge(0, p).reason is FailReason.WRONG_RESULT_COUNT


@pytest.mark.parametrize("code, lines, reason", [
    (0, [], FailReason.NO_RESULT),
    (0, ["#Auptimizer:nan"], FailReason.NON_FINITE_SCORE),
    (0, ["#Auptimizer:inf"], FailReason.NON_FINITE_SCORE),
    (1, ["#Auptimizer:0.5"], FailReason.NONZERO_EXIT),
    (-9, ["#Auptimizer:0.5"], FailReason.KILLED_BY_SIGNAL),
])
def test_failure_reasons(code: int, lines: list[str], reason: FailReason) -> None:
    p = OutputParser()
    for line in lines:
        p.feed(line)
    o = judge(code, p)
    assert o.status is AttemptStatus.FAILED and o.reason is reason
    assert o.exit_code == code


@pytest.mark.parametrize("line", ["#auptimizer:0.5", "#AUPTIMIZER: 0.5"])
def test_a_marker_in_other_letter_case_is_named_in_the_reason(line: str) -> None:
    p = OutputParser()
    p.feed("epoch 1")
    p.feed(line)
    o = judge(0, p)
    assert o.reason is FailReason.NO_RESULT and "other letter case" in o.detail
    p = OutputParser()
    p.feed("epoch 1")
    detail = judge(0, p).detail
    assert "letter case" not in detail and "without its '#'" not in detail
    # the usual cause with the client API: an @aup_args function that returns nothing
    assert "return the score from the function decorated with @aup_args" in detail


@pytest.mark.parametrize("line", ["Auptimizer:0.93", "score Auptimizer: 0.93"])
def test_a_marker_without_its_hash_is_named_in_the_reason(line: str) -> None:
    # trial 62: only the generic "no '#Auptimizer:<value>' line"
    p = OutputParser()
    p.feed(line)
    o = judge(0, p)
    assert o.reason is FailReason.NO_RESULT
    assert "'Auptimizer:' was printed without its '#'" in o.detail, o.detail


def test_marker_then_exit_1_keeps_the_value_but_fails() -> None:
    p = OutputParser()
    p.feed("#Auptimizer:0.5")
    o = judge(1, p)
    assert o.reason is FailReason.NONZERO_EXIT and o.score == 0.5
    # trial 56: 2.0 used such a value; the failure says why it is not used
    assert o.detail.startswith("exited with code 1 after printing the result 0.5, which is not "
                               "used: a result counts only when the job exits with code 0")
    assert judge(1, OutputParser()).detail == "exited with code 1"


def test_a_crash_names_its_exception() -> None:
    """Trial 65: 'aup show' said only 'exited with code 1'; the exception was in the .out file
    alone (Optuna records a failed trial's exception)."""
    p = OutputParser()
    for line in ("epoch 1", "Traceback (most recent call last):", '  File "train.py", line 9',
                 '    raise RuntimeError("CUDA out of memory")',
                 "RuntimeError: CUDA out of memory", "[W] worker shut down"):
        p.feed(line)
    assert judge(1, p).detail == ("exited with code 1; last exception in its output: "
                                  "RuntimeError: CUDA out of memory")
    p = OutputParser()
    p.feed("ValueError: printed, no traceback")  # not an exception of the job
    assert judge(2, p).detail == "exited with code 2"
    # trial 69: a deep stack's header cut off by the tail, and a name without 'Error'
    p = OutputParser()
    for k in range(400):
        p.feed(f'  File "/lib/layer{k}.py", line {k}, in forward')
        p.feed("    return self.inner(x)")
    p.feed("mylib.Err: shape mismatch (3 != 4)")
    assert "Traceback" not in p.tail
    assert judge(1, p).detail.endswith("in its output: mylib.Err: shape mismatch (3 != 4)")


def test_stop_reasons() -> None:
    p = OutputParser()
    p.feed("#Auptimizer:0.5")
    assert judge(-15, p, stopped=StopReason.TIMEOUT).reason is FailReason.TIMEOUT
    assert judge(-15, p, stopped=StopReason.EARLY_STOP).status is AttemptStatus.EARLY_STOPPED
    assert judge(-15, p, stopped=StopReason.EXPERIMENT_STOP).status is AttemptStatus.STOPPED


def test_tail_is_bounded() -> None:
    p = OutputParser()
    for i in range(10000):
        p.feed(f"line {i} " + "x" * 50)
    assert len(p.tail) <= 4096 and p.tail.endswith("x")
