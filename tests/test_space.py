"""Search-space semantics: inclusive bounds, types, log scale, grids."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aup.space import ChoiceParam, FloatParam, IntParam, SearchSpace, config_key


def test_int_bounds_inclusive_and_plain_ints() -> None:
    p = IntParam("k", 1, 3)
    rng = np.random.default_rng(0)
    values = {p.sample(rng) for _ in range(200)}
    assert values == {1, 2, 3}
    assert all(type(v) is int for v in values)


def test_int_log_scale_stays_in_bounds() -> None:
    p = IntParam("k", 1, 1000, log=True)
    rng = np.random.default_rng(1)
    values = [p.sample(rng) for _ in range(2000)]
    assert min(values) >= 1 and max(values) <= 1000
    # log-uniform: about a third of the draws are below 10
    assert 0.2 < sum(v < 10 for v in values) / len(values) < 0.45


def test_float_log_scale() -> None:
    p = FloatParam("lr", 1e-5, 1e-1, log=True)
    rng = np.random.default_rng(2)
    values = [p.sample(rng) for _ in range(2000)]
    assert all(1e-5 <= v <= 1e-1 and type(v) is float for v in values)
    assert 0.15 < sum(v < 1e-4 for v in values) / len(values) < 0.35


def test_constants_pass_through() -> None:
    rng = np.random.default_rng(0)
    assert IntParam("k", 3, 3).sample(rng) == 3
    assert FloatParam("x", 2.5, 2.5).sample(rng) == 2.5
    assert ChoiceParam("c", ("only",)).sample(rng) == "only"


def test_choice_keeps_json_types() -> None:
    p = ChoiceParam("c", (1, "1", True, None, 1.5))
    rng = np.random.default_rng(3)
    seen = {config_key({"c": p.sample(rng)}) for _ in range(500)}
    assert len(seen) == 5
    assert p.index(True) == 2 and p.index(1) == 0 and p.index("1") == 1


@pytest.mark.parametrize("param", [FloatParam("x", -2.0, 3.0), FloatParam("x", 0.1, 10.0, True),
                                   IntParam("k", -3, 7), IntParam("k", 1, 64, True)])
def test_unit_round_trip(param) -> None:
    for u in np.linspace(0, 1, 41):
        v = param.from_unit(u)
        assert param.low <= v <= param.high
        assert param.from_unit(param.to_unit(v)) == pytest.approx(v)


def test_float_grid_no_accumulated_rounding_and_endpoint() -> None:
    # Auptimizer 2.0 dropped 0.3 here (3 points) and accumulated rounding error.
    assert FloatParam("x", 0.0, 0.3, interval=0.1).grid() == [0.0, 0.1, 0.2, 0.3]
    g = FloatParam("x", 0.0, 1.0, interval=0.1).grid()
    # low + k*step (no accumulated rounding), as the decimal numbers, exact end point
    assert g == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert FloatParam("x", 0.0, 1.0, interval=0.3).grid() == pytest.approx([0, 0.3, 0.6, 0.9])


def test_int_grid_with_n_includes_upper_bound() -> None:
    # 2.0 gave 0, 3, 6, 9 for [0, 10] with n = 4.
    assert IntParam("k", 0, 10, n=4).grid() == [0, 3, 7, 10]
    assert IntParam("k", 0, 10, interval=5).grid() == [0, 5, 10]
    assert IntParam("k", 0, 2, n=5).grid() == [0, 1, 2]  # duplicates removed, no zero step


def test_log_grid_is_geometric() -> None:
    assert FloatParam("lr", 1e-4, 1e-1, log=True, n=4).grid() == pytest.approx(
        [1e-4, 1e-3, 1e-2, 1e-1])


def test_grid_values_are_the_decimal_numbers_they_stand_for() -> None:
    # the inner points were 9.999999999999991e-05, 0.0010000000000000002, 10.000000000000002...
    assert FloatParam("f", 1e-5, 1e-1, log=True, n=5).grid() == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    assert FloatParam("g", 1, 1000, log=True, interval=10).grid() == [1, 10, 100, 1000]
    assert FloatParam("h", 0, 0.5, interval=0.1).grid() == [0, 0.1, 0.2, 0.3, 0.4, 0.5]


@pytest.mark.parametrize("low, high", [(0.1, 1.0), (1e-4, 0.3), (0.7, 2.9)])
def test_log_grid_hits_both_bounds_exactly(low: float, high: float) -> None:
    # exp(log(0.1)) is 0.10000000000000002: the job got that instead of the bound it was given
    grid = FloatParam("x", low, high, log=True, n=3).grid()
    assert grid[0] == low and grid[-1] == high


def test_space_encoding() -> None:
    space = SearchSpace((FloatParam("x", 0, 1), IntParam("k", 0, 4), ChoiceParam("c", ("a", 2))))
    point = {"x": 0.25, "k": 3, "c": 2}
    u = space.to_unit(point)
    assert u.shape == (3,) and np.all((u >= 0) & (u <= 1))
    back = space.from_unit(u)
    assert back == point and type(back["k"]) is int and not isinstance(back["x"], np.generic)
    assert space.grid_size() == 2 * 5 * 2
    assert math.isclose(space.to_unit({"x": 1.0, "k": 0, "c": "a"})[0], 1.0)


def test_duplicate_names_rejected() -> None:
    with pytest.raises(ValueError):
        SearchSpace((FloatParam("x", 0, 1), IntParam("x", 0, 1)))


@pytest.mark.parametrize("param", [FloatParam("x", 0.0, 1.0, interval=0.1),
                                   FloatParam("x", 1e-3, 1.0, log=True, n=7),
                                   FloatParam("x", 0.0, 0.3, interval=0.1),
                                   IntParam("k", 0, 10, interval=3), IntParam("k", -5, 5),
                                   IntParam("k", 0, 2, n=5), ChoiceParam("c", (1, 2, 3))])
def test_grid_len_matches_or_bounds_the_grid(param) -> None:
    assert param.grid_len() >= len(param.grid())
    if not (isinstance(param, IntParam) and param.n):
        assert param.grid_len() == len(param.grid())


def test_huge_grids_are_counted_without_being_built() -> None:
    from aup.proposers.base import ProposerOptions
    from aup.proposers.sequence import SequenceProposer

    for p in (FloatParam("x", 0.0, 1.0, interval=1e-9), FloatParam("x", 0.0, 1.0, n=10**8),
              IntParam("k", 0, 10**9)):
        space = SearchSpace((p,))
        assert space.grid_size() >= 10**8  # instant: nothing is materialized
        problems = SequenceProposer.check_space(space, ProposerOptions())
        assert problems and "interval" in problems[0].hint


def test_a_range_wider_than_the_largest_float_maps_across_it() -> None:
    # high - low overflowed to inf: every unit value mapped to the upper bound (random and
    # spearmint proposed only 1e308) and every value mapped back to 0.
    p = FloatParam("x", -1e308, 1e308)
    assert [p.from_unit(u) for u in (0.0, 0.25, 0.5, 1.0)] == [-1e308, -5e307, 0.0, 1e308]
    assert [p.to_unit(v) for v in (-1e308, -5e307, 0.0, 1e308)] == [0.0, 0.25, 0.5, 1.0]
    rng = np.random.default_rng(0)
    draws = [p.sample(rng) for _ in range(50)]
    assert min(draws) < -1e307 and max(draws) > 1e307
