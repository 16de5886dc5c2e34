"""Test helpers that drive a proposer without jobs: serially, or with restarts from saved state.

Used by the multi-fidelity proposer tests (Hyperband, BOHB).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def never(q: Any) -> bool:
    """A ``fail`` predicate that fails no proposal."""
    return False


def drain(p, loss_of: Callable[[Any], float], fail: Callable[[Any], bool] = never) -> list:
    """Run a proposer serially to the end; return the proposals in order.

    Each proposal is told ``loss_of(q)``, or told as a failure when ``fail(q)``.
    """
    out = []
    while not p.finished:
        q = p.ask()
        assert q is not None, "serial run must never wait"
        out.append(q)
        if fail(q):
            p.tell_failure(q)
        else:
            p.tell(q, loss_of(q))
    assert p.ask() is None
    return out


def drain_with_restarts(make: Callable[[], Any], loss_of: Callable[[Any], float], every: int,
                        fail: Callable[[Any], bool] = never) -> list:
    """Like :func:`drain`, but with one job held running at a time and, every ``every`` steps,
    the proposer replaced by a fresh ``make()`` loaded from a JSON round trip of its
    ``state_dict()`` (a pause and resume with jobs still running). Returns the proposals."""
    p = make()
    got, running = [], []
    step = 0
    while not p.finished or running:
        step += 1
        if step % every == 0:
            state = json.loads(json.dumps(p.state_dict(), allow_nan=False))
            p = make()
            p.load_state_dict(state)
        q = p.ask() if not running else None
        if q is not None:
            got.append(q)
            running.append(q)
        else:
            r = running.pop()
            if fail(r):
                p.tell_failure(r)
            else:
                p.tell(r, loss_of(r))
    return got
