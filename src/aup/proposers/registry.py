"""Proposers by name. Modules are imported on first use so that ``import aup`` stays light.

To add a proposer, write a module with a :class:`~aup.proposers.base.Proposer` subclass and add
its name here; the shared contract tests pick it up from :func:`names`.
"""

from __future__ import annotations

import importlib

from aup.proposers.base import Proposer

_PROPOSERS: dict[str, str] = {
    "random": "aup.proposers.random:RandomProposer",
    "sequence": "aup.proposers.sequence:SequenceProposer",
    "hyperband": "aup.proposers.hyperband:HyperbandProposer",
    "bohb": "aup.proposers.bohb:BOHBProposer",
    "hyperopt": "aup.proposers.tpe_hyperopt:HyperoptProposer",
    "spearmint": "aup.proposers.spearmint:SpearmintProposer",
}


#: Optional modules a proposer needs: name -> (pip extra, top-level module names).
REQUIREMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "bohb": ("bo", ("statsmodels", "scipy")),
    "hyperopt": ("bo", ("hyperopt",)),
    "spearmint": ("bo", ("scipy", "threadpoolctl")),
}


def names() -> list[str]:
    """Registered proposer names, sorted."""
    return sorted(_PROPOSERS)


def get(name: str) -> type[Proposer]:
    """The proposer class registered under ``name`` (case-insensitive).

    Raises:
        KeyError: no proposer of that name.
    """
    target = _PROPOSERS[name.strip().lower()]
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
