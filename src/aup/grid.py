"""Grid values of one numeric parameter, for the ``sequence`` proposer (grid search).

A grid is ``low + k*step`` (``k = 0, 1, ...``; never a running sum, so no rounding accumulates),
or on a log scale ``exp(log(low) + k*log(ratio))``. Both bounds are kept exactly; the upper one
is a grid point when it lies on the grid within a relative tolerance of :data:`GRID_RTOL`.

Interior float values are rounded to 12 significant digits, so a grid of decimal numbers gives
those numbers (``0.3``, not ``0.30000000000000004``; ``1e-4``, not ``9.999999999999991e-05``),
unless the rounding would merge neighbours (a range as narrow as ``[123456789012.0,
123456789012.5]``): the grid is then left unrounded. Every grid is strictly increasing.

Integer grids are computed with integers (exact for any bound, also beyond 2**53); on a log
scale the step is a whole ratio (``2``: 1, 2, 4, 8...). Ranges as wide as the float type
allows (``[-1.7e308, 1.7e308]``) do not overflow.
"""

from __future__ import annotations

import math
import sys

#: Relative tolerance used when deciding whether a grid end point lies on the grid.
GRID_RTOL = 1e-9
#: Significant digits kept for interior float grid values.
GRID_DIGITS = 12
#: Most points one parameter's grid is built with (the sequence proposer refuses far fewer).
MAX_POINTS = 100_000_000


def step_count(lo: float, hi: float, step: float) -> int:
    """Number of points ``lo + k*step <= hi`` (``k >= 0``), with a relative tolerance on the end
    point; ``sys.maxsize`` when the count is beyond any float (a step of 1e-300 over 1e300).

    Args:
        lo: first point. hi: last allowed point (``hi >= lo``). step: spacing, > 0.
    """
    ratio = (hi - lo) / step
    if not math.isfinite(ratio):  # hi - lo overflowed: divide first
        ratio = hi / step - lo / step
    if not math.isfinite(ratio):
        return sys.maxsize
    return max(1, int(math.floor(ratio + GRID_RTOL * max(1.0, abs(ratio)))) + 1)


def _point(lo: float, step: float, k: int) -> float:
    """``lo + k*step`` without overflowing when ``k*step`` is beyond the float range."""
    v = lo + k * step
    if not math.isfinite(v):
        v = 2.0 * (lo / 2.0 + k * (step / 2.0))
    return v


def float_grid(low: float, high: float, *, log: bool, interval: float | None,
               n: int | None) -> list[float]:
    """The grid of a float parameter on ``[low, high]`` (``low < high``).

    Args:
        low, high: the bounds (inclusive; ``> 0`` when ``log``).
        log: geometric grid; ``interval`` is then the ratio of neighbours (``> 1``).
        interval: the step (or ratio); None to use ``n``.
        n: number of points, both bounds included (default 2).

    Returns:
        Strictly increasing values; the first is ``low``, the last ``high`` when it lies on the
        grid.
    """
    lo, hi = (math.log(low), math.log(high)) if log else (low, high)
    if interval is not None:
        step = math.log(interval) if log else interval
        count = step_count(lo, hi, step)
        ends_on_high = math.isclose(_point(lo, step, count - 1), hi, rel_tol=GRID_RTOL,
                                    abs_tol=1e-12)
    else:
        count = n or 2
        step = (hi - lo) / (count - 1)
        if not math.isfinite(step):
            step = hi / (count - 1) - lo / (count - 1)
        ends_on_high = True
    if count > MAX_POINTS:
        raise ValueError(f"a grid of more than {MAX_POINTS:,} points")
    raw = []
    for k in range(1, count - 1 if ends_on_high else count):
        v = _point(lo, step, k)
        raw.append(min(high, max(low, math.exp(v) if log else v)))
    rounded = [min(high, max(low, float(f"{v:.{GRID_DIGITS}g}"))) for v in raw]
    tail = [high] if ends_on_high and count > 1 else []
    values = [low, *rounded, *tail]
    if _distinct(values) == values:
        return values
    # the rounding merged neighbours: unrounded (values closer than the float type can tell
    # apart, in ranges refused at load, are kept once)
    return _distinct([low, *raw, *tail])


def _distinct(values: list) -> list:
    """``values`` (non-decreasing) without repeats, in order."""
    out = values[:1]
    for v in values[1:]:
        if v > out[-1]:
            out.append(v)
    return out


def int_grid(low: int, high: int, *, log: bool, interval: int | None,
             n: int | None) -> list[int]:
    """The grid of an int parameter on ``[low, high]`` (``low < high``), exact for any size.

    Args:
        low, high: the bounds (inclusive; ``> 0`` when ``log``).
        log: geometric grid; ``interval`` is then the whole ratio of neighbours (``>= 2``).
        interval: the step (or ratio); None: ``n`` points, or every integer.
        n: number of points spread evenly (geometrically when ``log``) from ``low`` to
            ``high``, rounded to integers, repeats removed.

    Returns:
        Strictly increasing integers, starting at ``low``.
    """
    if interval is not None:
        if not log:
            return list(range(low, high + 1, interval))
        if interval < 2:
            raise ValueError(f"the ratio of a log-scale int grid must be >= 2, not {interval}")
        values, v = [], low
        while v <= high:
            values.append(v)
            v *= interval
        return values
    if n is None:
        return list(range(low, high + 1))
    if log:
        points = [min(high, max(low, int(round(v))))
                  for v in float_grid(float(low), float(high), log=True, interval=None, n=n)]
        points[0], points[-1] = low, high  # exact, also beyond 2**53
    else:
        span, parts = high - low, n - 1
        points = [low + (2 * k * span + parts) // (2 * parts) for k in range(n)]
    return _distinct(points)


def int_grid_len(low: int, high: int, *, log: bool, interval: int | None,
                 n: int | None) -> int:
    """Number of points of :func:`int_grid` (an upper bound with ``n``: rounding may merge
    points), without building it."""
    if interval is not None:
        if not log:
            return (high - low) // interval + 1
        return len(int_grid(low, high, log=True, interval=interval, n=None))  # ~log2(high)
    if n is None:
        return high - low + 1
    return min(n, high - low + 1)
