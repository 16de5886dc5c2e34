"""The ``random`` proposer beyond the shared contract: its generator and its stored state."""

from __future__ import annotations

import json
import logging

import pytest

from aup.proposers.base import ProposerOptions
from aup.proposers.random import RandomProposer, StdlibSource
from aup.space import ChoiceParam, FloatParam, IntParam, SearchSpace

SPACE = SearchSpace((FloatParam("lr", 1e-4, 1.0, log=True), IntParam("units", 8, 64),
                     ChoiceParam("act", ("relu", "tanh"))))


def make(seed: int = 3) -> RandomProposer:
    return RandomProposer(SPACE, ProposerOptions(n_samples=50, random_seed=seed))


def test_integer_draws_cover_the_half_open_range_only() -> None:
    src = StdlibSource(0)
    draws = {src.integers(2, 5) for _ in range(500)} | {src.integers(3) + 10 for _ in range(500)}
    assert draws == {2, 3, 4, 10, 11, 12}


def test_state_is_plain_json_and_restores_the_sequence() -> None:
    a = make()
    for _ in range(7):
        a.tell(a.ask(), 0.0)
    state = json.loads(json.dumps(a.state_dict()))
    b = make()
    b.load_state_dict(state)
    assert [a.ask().params for _ in range(5)] == [b.ask().params for _ in range(5)]


def test_the_stored_generator_state_is_small() -> None:
    # The Mersenne Twister's 625 numbers (6.5 KB of JSON) were rewritten twice per job.
    a = make()
    for _ in range(40):
        a.tell(a.ask(), 0.5)
    assert len(json.dumps(a.state_dict())) < 200


def test_a_full_generator_state_of_an_earlier_version_still_resumes_exactly() -> None:
    a, reference = make(), make()
    for _ in range(5):
        a.tell(a.ask(), 0.5)
        reference.tell(reference.ask(), 0.5)
    old = a.state_dict()
    old["rng"] = a.rng.state()  # what versions before this one stored
    b = make()
    b.load_state_dict(json.loads(json.dumps(old)))
    for _ in range(5):
        p, q = b.ask(), reference.ask()
        assert p.params == q.params
        b.tell(p, 0.5)
        reference.tell(q, 0.5)
    # it keeps saving the full state (the draws behind it are unknown), and that goes on too
    again = b.state_dict()
    assert isinstance(again["rng"], list)
    c = make()
    c.load_state_dict(json.loads(json.dumps(again)))
    assert c.ask().params == reference.ask().params


def test_a_state_of_the_former_numpy_generator_still_resumes(caplog) -> None:
    # Development versions stored numpy's PCG64 state; resuming such an experiment goes on
    # with a new sequence (the same for every resume) instead of failing.
    old = make().state_dict()
    old["rng"] = {"bit_generator": "PCG64", "state": {"state": 1, "inc": 3},
                  "has_uint32": 0, "uinteger": 0}
    old["next_id"] = 4
    resumed = []
    for _ in range(2):
        p = make()
        with caplog.at_level(logging.WARNING):
            p.load_state_dict(old)
        resumed.append([p.ask().params for _ in range(3)])
    assert resumed[0] == resumed[1]
    assert resumed[0] != [make().ask().params for _ in range(3)]
    assert "older version" in caplog.text


@pytest.mark.parametrize("seed", [0, 1, 2**31])
def test_same_seed_same_proposals_different_seed_different(seed: int) -> None:
    first = [make(seed).ask().params for _ in range(1)]
    assert first == [make(seed).ask().params for _ in range(1)]
    assert first != [make(seed + 1).ask().params for _ in range(1)]
