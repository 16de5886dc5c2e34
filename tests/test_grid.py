"""Grid values at the edges of the number types, and the grid keys refused at load."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from aup.config import parse_config
from aup.errors import ConfigError
from aup.space import FloatParam, IntParam
from tests.conftest import run_cli, write_experiment, write_script


def _strictly_increasing(values: list) -> bool:
    return all(a < b for a, b in zip(values, values[1:], strict=False))


def test_int_grids_beyond_two_to_the_53_are_exact() -> None:
    # The n-point int grid went through rounded floats: values above high, points lost.
    low, high = 2**53 - 3, 2**53 + 7
    grid = IntParam("k", low, high, n=4).grid()
    assert grid == [low, low + 3, low + 7, high]  # low + round(k * 10 / 3)
    assert all(type(v) is int for v in grid)
    big = IntParam("k", 10**30, 10**30 + 10, n=3).grid()
    assert big == [10**30, 10**30 + 5, 10**30 + 10]


@pytest.mark.parametrize("low, high, n", [(1.0, 1.0000000000001, 5),
                                          (123456789012.0, 123456789012.5, 3),
                                          (0.999999999999, 1.0, 4)])
def test_rounding_to_12_digits_never_merges_neighbours(low: float, high: float, n: int) -> None:
    # [123456789012.0, 123456789012.5] with n 3 gave the lower bound twice.
    grid = FloatParam("x", low, high, n=n).grid()
    assert len(grid) == n and _strictly_increasing(grid)
    assert grid[0] == low and grid[-1] == high


def test_the_widest_float_ranges_do_not_overflow() -> None:
    assert FloatParam("x", -1.7e308, 1.7e308, n=3).grid() == [-1.7e308, 0.0, 1.7e308]
    grid = FloatParam("x", -1.7e308, 1.7e308, interval=1e308).grid()
    assert grid == [-1.7e308, -7e307, 3e307, 1.3e308]
    assert FloatParam("x", -1.7e308, 1.7e308, interval=1e308).grid_len() == 4


def test_a_log_int_grid_with_interval_is_geometric() -> None:
    # It was the linear 1, 3, 5, ... although interval on a log scale is the ratio.
    p = IntParam("batch", 1, 1000, log=True, interval=2)
    assert p.grid() == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] and p.grid_len() == 10
    assert IntParam("k", 3, 300, log=True, interval=10).grid() == [3, 30, 300]


def test_random_grids_are_increasing_inside_their_bounds() -> None:
    rng = random.Random(7)
    for _ in range(500):
        a, b = sorted(rng.uniform(-1, 1) * 10 ** rng.randint(-12, 12) for _ in range(2))
        if a == b:
            continue
        n = rng.randint(2, 40)
        for p in (FloatParam("x", a, b, n=n), FloatParam("x", a, b, interval=(b - a) / n)):
            grid = p.grid()
            assert grid[0] == a and _strictly_increasing(grid), (a, b, n)
            assert all(a <= v <= b for v in grid) and len(grid) == p.grid_len()
        ia, ib = int(a * 1e6), int(b * 1e6) + 1
        grid = IntParam("k", ia, ib, n=n).grid()
        assert grid[0] == ia and grid[-1] == ib and _strictly_increasing(grid)
        assert len(grid) <= IntParam("k", ia, ib, n=n).grid_len()


@pytest.mark.parametrize("entry, key, needle", [
    ({"range": [0, 1], "interval": float("inf")}, "interval", "must be a finite number"),
    ({"range": [1, 100], "log": True, "interval": 1}, "interval", "must be above 1"),
    ({"range": [1, 100], "log": True, "interval": 0.5}, "interval", "must be above 1"),
    ({"range": [1, 100], "type": "int", "log": True, "interval": 1}, "interval",
     "must be above 1"),
    ({"range": [1.0, 1.0000000000000002], "n": 5}, "n", "only 2 distinct floating-point"),
])
def test_grid_keys_that_cannot_make_a_grid_are_refused(tmp_path: Path, entry: dict, key: str,
                                                       needle: str) -> None:
    param = {"name": "x", "type": "float", **entry}
    with pytest.raises(ConfigError) as info:
        parse_config({"script": "train.py", "proposer": "sequence",
                      "parameter_config": [param]}, tmp_path, check_files=False)
    text = info.value.render()
    assert f"parameter_config[0].{key}" in text and needle in text, text


def test_extreme_grids_are_checked_and_run_without_a_traceback(tmp_path: Path) -> None:
    # interval 1e308 on the widest range raised OverflowError (exit 1) in --check and run;
    # a log grid with interval 1 raised ZeroDivisionError.
    write_script(tmp_path, "echo.py", "import json, sys\n"
                 "print('#Auptimizer:', json.load(open(sys.argv[-1]))['x'] / 1e308)\n")
    path = write_experiment(tmp_path, script="echo.py", proposer="sequence", target="min",
                            parameter_config=[{"name": "x", "type": "float",
                                               "range": [-1.7e308, 1.7e308],
                                               "interval": 1e308}])
    proc = run_cli("run", "--check", str(path), cwd=tmp_path)
    assert proc.returncode == 0 and "4 jobs" in proc.stdout, proc.stdout + proc.stderr
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    configs = [json.loads((tmp_path / "jobs" / f"{j}.json").read_text())["x"]
               for j in range(1, 5)]
    assert configs == [-1.7e308, -7e307, 3e307, 1.3e308]
    bad = write_experiment(tmp_path, "log.json", script="echo.py", proposer="sequence",
                           parameter_config=[{"name": "x", "type": "float", "range": [1, 10],
                                              "log": True, "interval": 1}])
    proc = run_cli("run", "--check", str(bad), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "parameter_config[0].interval" in proc.stderr and "above 1" in proc.stderr
