"""``points_to_evaluate``: configurations the user knows, run first (a warm start).

The option name is Ray Tune's and hyperopt ``fmin``'s; Optuna's ``study.enqueue_trial`` does
the same one point at a time. The first ``len(points_to_evaluate)`` jobs of a ``random``,
``hyperopt`` or ``spearmint`` experiment are these configurations, in order; they count toward
``n_samples``, and their results are told to the proposer like any other, so a model-based
proposer starts from them. Schedules and grids (``sequence``, ``hyperband``, ``bohb``) fix
their own configurations and refuse the option at load.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from aup.errors import Problem
from aup.space import ChoiceParam, FloatParam, IntParam, Param, SearchSpace

KEY = "points_to_evaluate"


def check_points(points: list[Any] | None, space: SearchSpace, n_samples: int,
                 accepted: bool, proposer: str) -> list[Problem]:
    """Problems with ``points_to_evaluate`` for this space and proposer (checked at load).

    Args:
        points: the option's value (None or a list).
        space: the search space.
        n_samples: the experiment's number of jobs (the points count toward it).
        accepted: whether the proposer runs given points.
        proposer: the proposer's name, for messages.

    Returns:
        One :class:`~aup.errors.Problem` per mistake, each naming the point and the key.
    """
    if not points:
        return []
    if not accepted:
        return [Problem(KEY, f"proposer {proposer!r} chooses every configuration itself (a "
                        "grid or a schedule)", len(points),
                        "use random, hyperopt or spearmint, or leave points_to_evaluate out")]
    problems = []
    if len(points) > n_samples:
        problems.append(Problem(KEY, f"{len(points)} points but n_samples is {n_samples} (the "
                                "points are the first jobs)", len(points),
                                f"set n_samples to at least {len(points)}"))
    names = set(space.names)
    for i, point in enumerate(points):
        path = f"{KEY}[{i}]"
        if not isinstance(point, dict):
            problems.append(Problem(path, "a point is an object of parameter values", point,
                                    'write it as {"name": value, ...}'))
            continue
        for key in point:
            if key not in names:
                problems.append(Problem(f"{path}.{key}", "not a parameter of parameter_config",
                                        point[key], f"the parameters are: "
                                        f"{', '.join(sorted(names))}"))
        for p in space:
            if p.name not in point:
                if not p.is_constant:
                    problems.append(Problem(path, f"no value for parameter {p.name!r}", point,
                                            "give every parameter a value"))
                continue
            why = _invalid(p, point[p.name])
            if why:
                problems.append(Problem(f"{path}.{p.name}", why, point[p.name],
                                        "use a value from that parameter's range"))
    return problems


def _invalid(p: Param, value: Any) -> str | None:
    """Why ``value`` is not a value of ``p``, or None."""
    if isinstance(p, ChoiceParam):
        try:
            p.index(value)
        except ValueError:
            return f"not one of the choices {list(p.choices)}"
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(p, IntParam) and not (number and float(value).is_integer()):
        return "not an integer"
    if isinstance(p, FloatParam) and not (number and math.isfinite(value)):
        return "not a finite number"
    if not p.low <= value <= p.high:
        return f"outside the range [{p.low}, {p.high}]"
    return None


def point_params(space: SearchSpace, point: dict[str, Any]) -> dict[str, Any]:
    """The job parameters of a checked point: every parameter in the space's order, ints as
    int, floats as float, a choice as (a copy of) the space's own value, constants filled in.
    """
    params: dict[str, Any] = {}
    for p in space:
        if p.name not in point:
            params[p.name] = p.from_unit(0.5)  # a constant
        elif isinstance(p, ChoiceParam):
            params[p.name] = copy.deepcopy(p.choices[p.index(point[p.name])])
        elif isinstance(p, IntParam):
            params[p.name] = int(point[p.name])
        else:
            params[p.name] = float(point[p.name])
    return params
