"""Grid search (the ``sequence`` proposer).

Each float/int parameter contributes ``low + k*step`` values (``interval`` = step, or ``n``
points evenly from low to high; see :meth:`aup.space.FloatParam.grid`); a choice contributes
every value. The grid is walked like an odometer in which the **first** parameter changes
fastest (Auptimizer 2.0's order). The number of jobs is the grid size, whatever ``n_samples``
says.
"""

from __future__ import annotations

from typing import Any

from aup.errors import Problem
from aup.proposers.base import Proposal, Proposer, ProposerOptions

#: Largest grid accepted at load.
MAX_GRID = 10_000_000
#: Most grid points of one parameter: its grid is built at the start (10,000,000 points of
#: one float took 39 s and 1 GB before the first job; 100,000 take a fraction of a second).
MAX_PARAM_GRID = 100_000


class SequenceProposer(Proposer):
    """Exhaustive grid search over the product of per-parameter grids."""

    name = "sequence"
    Options = ProposerOptions

    def __init__(self, space, options: ProposerOptions):
        super().__init__(space, options)
        self.grids = [p.grid() for p in space]

    @classmethod
    def check_space(cls, space, options) -> list[Problem]:
        for i, p in enumerate(space):
            n = p.grid_len()
            if n > MAX_PARAM_GRID:
                counts = f"{n:,}" if n < 10**18 else f"{float(n):.3g}"
                return [Problem(f"parameter_config[{i}]", f"{p.name!r} has {counts} grid "
                                f"values, more than the {MAX_PARAM_GRID:,} one parameter may "
                                "have", p.name, "use a larger 'interval' or a smaller 'n' "
                                "there")]
        size = space.grid_size()
        if size > MAX_GRID:
            lengths = [(p.grid_len(), i, p.name) for i, p in enumerate(space)]
            n, i, name = max(lengths)
            shown = f"{size:,}" if size < 10**18 else f"{float(size):.3g}"
            counts = f"{n:,}" if n < 10**18 else f"{float(n):.3g}"
            return [Problem(f"parameter_config[{i}]", f"the grid has more than {MAX_GRID:,} "
                            f"points ({shown}); the largest factor is {name!r} with {counts} "
                            "values", name, "use a larger 'interval' or a smaller 'n' there")]
        return []

    @property
    def total(self) -> int:
        n = 1
        for g in self.grids:
            n *= len(g)
        return n

    def _propose(self, proposal_id: int) -> Proposal | None:
        rest = proposal_id
        params: dict[str, Any] = {}
        for p, grid in zip(self.space, self.grids, strict=True):
            rest, k = divmod(rest, len(grid))
            params[p.name] = grid[k]
        return Proposal(proposal_id, params)
