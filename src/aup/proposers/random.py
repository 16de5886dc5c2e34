"""Random search: independent uniform (or log-uniform) draws from the search space.

Reproducible: the generator is numpy's PCG64 seeded with ``random_seed``, and its state is part
of :meth:`RandomProposer.state_dict`, so a resumed experiment proposes exactly what an
uninterrupted one would have.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aup.proposers.base import Proposal, Proposer, ProposerOptions

#: Draws tried before accepting a configuration that is already running (tiny spaces).
_MAX_REDRAWS = 100


class RandomProposer(Proposer):
    """Random search (Bergstra and Bengio 2012, "Random Search for Hyper-Parameter
    Optimization"). Proposes ``n_samples`` configurations; never one that is still running
    unless the space is too small to avoid it."""

    name = "random"
    Options = ProposerOptions

    def __init__(self, space, options: ProposerOptions):
        super().__init__(space, options)
        self.rng = np.random.Generator(np.random.PCG64(options.random_seed))

    def _propose(self, proposal_id: int) -> Proposal | None:
        running = self._pending_keys()
        for _ in range(_MAX_REDRAWS):
            params = self.space.sample(self.rng)
            p = Proposal(proposal_id, params)
            if p.key not in running:
                return p
        return p

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["rng"] = self.rng.bit_generator.state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rng.bit_generator.state = state["rng"]
