"""Search spaces: the hyperparameters a proposer chooses from.

Three parameter kinds, matching ``parameter_config`` entries of experiment.json:

* :class:`FloatParam` - a real number in ``[low, high]`` (both bounds inclusive), optionally on a
  log scale.
* :class:`IntParam` - an integer in ``[low, high]`` (both bounds inclusive), optionally on a log
  scale.
* :class:`ChoiceParam` - one of a list of JSON values; values keep their JSON type, so ``1``,
  ``"1"``, ``true``, ``null`` and ``1.5`` are five distinct choices.

A parameter whose bounds are equal (``[3, 3]``) or whose choice list has one element is a
constant: every proposer passes it through unchanged.

Every parameter maps to and from the unit interval (``to_unit``/``from_unit``), which model-based
proposers use as their encoding. Values handed out are plain Python ``int``/``float``/JSON values,
never numpy scalars.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aup.grid import float_grid, int_grid, int_grid_len, step_count

if TYPE_CHECKING:
    import numpy as np


class UniformSource(Protocol):
    """The two draws :meth:`SearchSpace.sample` needs; a ``numpy.random.Generator`` is one.

    ``random()`` returns a float uniform in ``[0, 1)``; ``integers(low, high)`` an int uniform
    in ``[low, high)`` (``integers(n)``: in ``[0, n)``).
    """

    def random(self) -> float: ...

    def integers(self, low: int, high: int | None = None) -> int: ...


def _py(value: Any) -> Any:
    """Convert numpy scalars to plain Python numbers (numpy itself is not imported here)."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    return value


@dataclass(frozen=True)
class FloatParam:
    """A real-valued hyperparameter in the closed interval ``[low, high]``.

    Attributes:
        name: the key under which the value reaches the job.
        low: lower bound, inclusive.
        high: upper bound, inclusive (``high >= low``).
        log: sample and encode on a log scale (requires ``low > 0``).
        interval: grid step for the ``sequence`` proposer (``None``: use ``n``).
        n: number of grid points for the ``sequence`` proposer.
    """

    name: str
    low: float
    high: float
    log: bool = False
    interval: float | None = None
    n: int | None = None

    kind = "float"

    @property
    def is_constant(self) -> bool:
        """True when ``low == high``: the parameter always takes that value."""
        return self.low == self.high

    def _tlow(self) -> float:
        return math.log(self.low) if self.log else self.low

    def _thigh(self) -> float:
        return math.log(self.high) if self.log else self.high

    def to_unit(self, value: float) -> float:
        """Map a value to ``[0, 1]`` (log-warped when ``log``); constants map to 0.5."""
        if self.is_constant:
            return 0.5
        v = math.log(value) if self.log else float(value)
        lo, hi = self._tlow(), self._thigh()
        if math.isinf(hi - lo):  # wider than the largest float: the same ratio at half scale
            v, lo, hi = v / 2, lo / 2, hi / 2
        return min(1.0, max(0.0, (v - lo) / (hi - lo)))

    def from_unit(self, u: float) -> float:
        """Map ``u`` in ``[0, 1]`` back to a value in ``[low, high]`` (clipped)."""
        if self.is_constant:
            return float(self.low)
        u = min(1.0, max(0.0, float(u)))
        lo, hi = self._tlow(), self._thigh()
        # low + u * (high - low), or, for a range wider than the largest float (where that
        # width is inf and every value became high), the same point as a weighted mean
        v = lo + u * (hi - lo) if not math.isinf(hi - lo) else lo * (1 - u) + hi * u
        v = math.exp(v) if self.log else v
        return float(min(self.high, max(self.low, v)))

    def sample(self, rng: UniformSource) -> float:
        """Draw a value uniformly (log-uniformly when ``log``) from ``[low, high]``."""
        return self.from_unit(float(rng.random()))

    def grid_len(self) -> int:
        """Number of grid points (an upper bound with ``n`` for ranges too narrow for ``n``
        distinct floats), computed without building the grid."""
        if self.is_constant:
            return 1
        if self.interval is not None:
            step = math.log(self.interval) if self.log else self.interval
            if step <= 0:
                return 1
            return step_count(self._tlow(), self._thigh(), step)
        return self.n or 2

    def grid(self) -> list[float]:
        """Grid values for the ``sequence`` proposer (:func:`aup.grid.float_grid`).

        The step is ``interval`` when given, otherwise ``(high-low)/(n-1)`` (``n`` defaults to 2:
        both bounds). On a log scale the grid is geometric: ``interval`` is then the ratio of
        two neighbours (``10``: one point per decade). Values are ``low + k*step``, rounded to
        12 significant digits where that keeps them apart; both bounds are exact.
        """
        if self.is_constant:
            return [float(self.low)]
        return float_grid(self.low, self.high, log=self.log, interval=self.interval, n=self.n)


@dataclass(frozen=True)
class IntParam:
    """An integer hyperparameter in ``[low, high]``, both bounds inclusive.

    Attributes:
        name: the key under which the value reaches the job.
        low: lower bound, inclusive.
        high: upper bound, inclusive (``high >= low``).
        log: sample and encode on a log scale (requires ``low > 0``).
        interval: integer grid step for the ``sequence`` proposer.
        n: number of grid points for the ``sequence`` proposer (rounded, duplicates removed).
    """

    name: str
    low: int
    high: int
    log: bool = False
    interval: int | None = None
    n: int | None = None

    kind = "int"

    @property
    def is_constant(self) -> bool:
        """True when ``low == high``."""
        return self.low == self.high

    def _edges(self) -> tuple[float, float]:
        # Each integer owns an equal slice of the unit interval: [low - 0.5, high + 0.5].
        lo, hi = self.low - 0.5, self.high + 0.5
        if self.log:
            return math.log(max(lo, 0.5 * self.low)), math.log(hi)
        return lo, hi

    def to_unit(self, value: int) -> float:
        """Map an integer to the centre of its slice of ``[0, 1]``; constants map to 0.5."""
        if self.is_constant:
            return 0.5
        lo, hi = self._edges()
        v = math.log(value) if self.log else float(value)
        return min(1.0, max(0.0, (v - lo) / (hi - lo)))

    def from_unit(self, u: float) -> int:
        """Map ``u`` in ``[0, 1]`` to an integer in ``[low, high]``."""
        if self.is_constant:
            return int(self.low)
        lo, hi = self._edges()
        v = lo + min(1.0, max(0.0, float(u))) * (hi - lo)
        v = math.exp(v) if self.log else v
        return int(min(self.high, max(self.low, round(v))))

    def sample(self, rng: UniformSource) -> int:
        """Draw an integer from ``[low, high]``: uniformly, or log-uniformly when ``log``."""
        if self.is_constant:
            return int(self.low)
        if not self.log:
            return int(rng.integers(self.low, self.high + 1))
        return self.from_unit(float(rng.random()))

    def grid_len(self) -> int:
        """Number of grid points (an upper bound with ``n``: rounding may merge points),
        computed without building the grid."""
        if self.is_constant:
            return 1
        return int_grid_len(self.low, self.high, log=self.log, interval=self.interval, n=self.n)

    def grid(self) -> list[int]:
        """Grid values for the ``sequence`` proposer (:func:`aup.grid.int_grid`, exact integers).

        With ``interval``: ``low, low+interval, ...`` up to ``high`` inclusive; on a log scale
        ``low, low*interval, low*interval**2, ...`` (``interval`` is the ratio). With ``n``: ``n``
        points evenly (geometrically when ``log``) spread from ``low`` to ``high``, both
        included, rounded to integers, duplicates removed. Default: every integer from ``low``
        to ``high``.
        """
        if self.is_constant:
            return [int(self.low)]
        return int_grid(self.low, self.high, log=self.log, interval=self.interval, n=self.n)


@dataclass(frozen=True)
class ChoiceParam:
    """A categorical hyperparameter: one of ``choices`` (any JSON values, types preserved).

    Attributes:
        name: the key under which the value reaches the job.
        choices: the allowed values, at least one; order is kept.
    """

    name: str
    choices: tuple[Any, ...]

    kind = "choice"

    @property
    def is_constant(self) -> bool:
        """True when there is a single choice."""
        return len(self.choices) == 1

    def index(self, value: Any) -> int:
        """Return the position of ``value`` among the choices, matching JSON type and value.

        Raises:
            ValueError: when ``value`` is not one of the choices.
        """
        key = _json_key(value)
        for i, c in enumerate(self.choices):
            if _json_key(c) == key:
                return i
        raise ValueError(f"{value!r} is not a choice of {self.name}")

    def to_unit(self, value: Any) -> float:
        """Map a choice to the centre of its slice of ``[0, 1]``."""
        return (self.index(value) + 0.5) / len(self.choices)

    def from_unit(self, u: float) -> Any:
        """Map ``u`` in ``[0, 1]`` to a choice (a deep copy of it)."""
        i = min(len(self.choices) - 1, max(0, int(float(u) * len(self.choices))))
        return copy.deepcopy(self.choices[i])

    def sample(self, rng: UniformSource) -> Any:
        """Draw one choice uniformly (a deep copy of it)."""
        return copy.deepcopy(self.choices[int(rng.integers(len(self.choices)))])

    def grid_len(self) -> int:
        """Number of choices."""
        return len(self.choices)

    def grid(self) -> list[Any]:
        """Every choice, in order."""
        return [copy.deepcopy(c) for c in self.choices]


Param = FloatParam | IntParam | ChoiceParam


def _json_key(value: Any) -> str:
    """A canonical JSON text that tells 1, 1.0 vs true vs "1" apart (bool is not int here)."""
    return json.dumps(_tag(value), sort_keys=True)


def _tag(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return ["b", value]
    if isinstance(value, int):
        return ["i", value]
    if isinstance(value, float):
        return ["f", value]
    if isinstance(value, list):
        return ["l", [_tag(v) for v in value]]
    if isinstance(value, dict):
        return ["d", {k: _tag(v) for k, v in value.items()}]
    return ["s", value]


def config_key(params: dict[str, Any]) -> str:
    """A canonical key for a parameter assignment, distinguishing JSON types.

    Two assignments have the same key exactly when every value has the same JSON type and value.
    """
    return _json_key({k: _py(v) for k, v in params.items()})


@dataclass(frozen=True)
class SearchSpace:
    """An ordered collection of parameters.

    Attributes:
        params: the parameters, in the order of ``parameter_config``.
    """

    params: tuple[Param, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError("parameter names must be unique")

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    @property
    def names(self) -> list[str]:
        """Parameter names in order."""
        return [p.name for p in self.params]

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def sample(self, rng: UniformSource) -> dict[str, Any]:
        """Draw one assignment: a dict name -> plain JSON value."""
        return {p.name: p.sample(rng) for p in self.params}

    def to_unit(self, values: dict[str, Any]) -> np.ndarray:
        """Encode an assignment as a vector in ``[0, 1]^d`` (``d = len(self)``)."""
        import numpy as np

        return np.array([p.to_unit(values[p.name]) for p in self.params], dtype=float)

    def from_unit(self, u: Sequence[float]) -> dict[str, Any]:
        """Decode a vector in ``[0, 1]^d`` to an assignment of plain JSON values."""
        return {p.name: _py(p.from_unit(float(x))) for p, x in zip(self.params, u, strict=True)}

    def grid_size(self) -> int:
        """Number of points of the full grid (product of per-parameter grid lengths), computed
        without building any grid (a step of 1e-9 on [0, 1] must not exhaust memory)."""
        n = 1
        for p in self.params:
            n *= p.grid_len()
        return n
