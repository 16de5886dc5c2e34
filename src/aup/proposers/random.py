"""Random search: independent uniform (or log-uniform) draws from the search space.

Reproducible: the generator is the standard library's Mersenne Twister (``random.Random``)
seeded with ``random_seed``, and its state is part of :meth:`RandomProposer.state_dict`, so a
resumed experiment proposes exactly what an uninterrupted one would have. The standard library
rather than numpy because random search is the default proposer of the quickest experiments,
and importing numpy cost ~0.1 s of every ``aup run``'s start-up on the reference machine
(``benchmarks/overhead.py``).
"""

from __future__ import annotations

import logging
import random
from typing import Any

from aup.proposers.base import Proposal, Proposer, ProposerOptions
from aup.space import SearchSpace

log = logging.getLogger(__name__)

#: Draws tried before accepting a configuration that is already running (tiny spaces).
_MAX_REDRAWS = 100


class StdlibSource:
    """The draws :meth:`aup.space.SearchSpace.sample` needs, from a ``random.Random``.

    Args:
        seed: the seed (an int or a str; None: seeded from the operating system).
    """

    def __init__(self, seed: int | str | None):
        self.gen = random.Random(seed)

    def random(self) -> float:
        """A float uniform in ``[0, 1)``."""
        return self.gen.random()

    def integers(self, low: int, high: int | None = None) -> int:
        """An int uniform in ``[low, high)`` (``integers(n)``: in ``[0, n)``)."""
        return self.gen.randrange(low) if high is None else self.gen.randrange(low, high)

    def state(self) -> list[Any]:
        """The generator's state as plain JSON (lists and ints)."""
        version, internal, gauss_next = self.gen.getstate()
        return [version, list(internal), gauss_next]

    def set_state(self, state: list[Any]) -> None:
        """Restore a state written by :meth:`state`.

        Raises:
            ValueError, TypeError: ``state`` is not such a state.
        """
        version, internal, gauss_next = state
        self.gen.setstate((version, tuple(internal), gauss_next))


class RandomProposer(Proposer):
    """Random search (Bergstra and Bengio 2012, "Random Search for Hyper-Parameter
    Optimization"). Proposes ``n_samples`` configurations; never one that is still running
    unless the space is too small to avoid it."""

    name = "random"
    accepts_points = True
    Options = ProposerOptions

    def __init__(self, space: SearchSpace, options: ProposerOptions):
        super().__init__(space, options)
        self.rng = StdlibSource(options.random_seed)
        #: Configurations drawn so far: with the seed, the generator's whole state.
        self._draws = 0
        #: Save the generator's full state: a state not made of the seed and draws was loaded
        #: (from an earlier version), so the draws behind it are unknown.
        self._full_state = False

    def _propose(self, proposal_id: int) -> Proposal | None:
        running = self._pending_keys()
        for _ in range(_MAX_REDRAWS):
            params = self.space.sample(self.rng)
            self._draws += 1
            p = Proposal(proposal_id, params)
            if p.key not in running:
                return p
        return p

    def state_dict(self) -> dict[str, Any]:
        """The base state, and the generator's as the seed and the number of configurations
        drawn (``{"seed": 0, "draws": 41}``): the Mersenne Twister's own state is 625 numbers
        (6.5 KB of JSON), which was rewritten in the database twice per job."""
        state = super().state_dict()
        state["rng"] = (self.rng.state() if self._full_state
                        else {"seed": self.options.random_seed, "draws": self._draws})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state: the generator is seeded again and the draws are
        replayed (about 1 µs per parameter per draw), so proposals go on exactly as in an
        uninterrupted run."""
        super().load_state_dict(state)
        rng = state.get("rng")
        if isinstance(rng, dict) and "draws" in rng:
            self.rng = StdlibSource(rng.get("seed", self.options.random_seed))
            self._draws = int(rng["draws"])
            for _ in range(self._draws):
                self.space.sample(self.rng)
            self._full_state = False
        elif isinstance(rng, list):  # the generator's full state (versions before 2026-12)
            self.rng.set_state(rng)
            self._full_state = True
        else:
            # A state written by an earlier development version (numpy's generator): go on
            # with a generator seeded from the seed and the number of proposals made.
            log.warning("random: the stored generator state is of an older version; the "
                        "remaining proposals follow a new (reproducible) sequence")
            self.rng = StdlibSource(f"{self.options.random_seed}:{self._next_id}")
            self._full_state = True
