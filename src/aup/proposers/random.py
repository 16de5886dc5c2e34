"""Random search: independent uniform (or log-uniform) draws from the search space.

Reproducible without any saved generator state: proposal ``k`` draws from its own stream,
Python's Mersenne Twister seeded with (``random_seed``, ``k``). A resumed experiment therefore
proposes exactly what an uninterrupted one would have, and the proposer needs neither numpy nor
a large state in the database (``aup run`` with random search starts quicker).
"""

from __future__ import annotations

import random

from aup.proposers.base import Proposal, Proposer, ProposerOptions


class ProposalStream:
    """The random stream of one proposal: a :class:`aup.space.UniformSource` over
    :class:`random.Random` seeded with the string ``"<seed>:<proposal_id>"``.

    Args:
        seed: the experiment's ``random_seed`` (int >= 0).
        proposal_id: the proposal's id (int >= 0).
    """

    def __init__(self, seed: int, proposal_id: int):
        self._rng = random.Random(f"{seed}:{proposal_id}")

    def random(self) -> float:
        """A float uniform in ``[0, 1)``."""
        return self._rng.random()

    def integers(self, low: int, high: int | None = None) -> int:
        """An int uniform in ``[low, high)``, or in ``[0, low)`` when ``high`` is None."""
        if high is None:
            low, high = 0, low
        return self._rng.randrange(low, high)

#: Draws tried before accepting a configuration that is already running (tiny spaces).
_MAX_REDRAWS = 100


class RandomProposer(Proposer):
    """Random search (Bergstra and Bengio 2012, "Random Search for Hyper-Parameter
    Optimization"). Proposes ``n_samples`` configurations; never one that is still running
    unless the space is too small to avoid it."""

    name = "random"
    Options = ProposerOptions

    def _propose(self, proposal_id: int) -> Proposal | None:
        running = self._pending_keys()
        rng = ProposalStream(self.options.random_seed, proposal_id)
        for _ in range(_MAX_REDRAWS):
            params = self.space.sample(rng)
            p = Proposal(proposal_id, params)
            if p.key not in running:
                return p
        return p
