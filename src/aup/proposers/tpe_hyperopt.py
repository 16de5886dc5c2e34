"""The ``hyperopt`` proposer: hyperopt's algorithms (TPE, random, annealing) in ask/tell form.

hyperopt's own driver, ``fmin``, owns the loop: it calls the objective itself. Auptimizer owns
the loop instead, so this module talks to hyperopt one level lower, the way ``fmin`` does
internally: a :class:`hyperopt.base.Domain` holds the search space, a
:class:`hyperopt.base.Trials` holds the history, and each :meth:`HyperoptProposer.ask` calls the
engine's ``suggest(new_ids, domain, trials, seed)`` once, with a seed drawn from a private
generator exactly like ``fmin`` does. :meth:`~HyperoptProposer.tell` writes the loss into the
trial document; a failure is written as hyperopt's ``fail`` status (TPE then treats the trial as
infinitely bad). Nothing runs in a thread, and no hyperopt code is copied.

Engines (option ``engine``): ``tpe`` (default; Bergstra, Bardenet, Bengio and Kegl 2011,
"Algorithms for Hyper-Parameter Optimization"), ``rand`` (alias ``random``) and ``anneal``.

Parameters map to hyperopt distributions as follows (bounds inclusive everywhere, unlike
Auptimizer 2.0, whose hyperopt integers never reached ``high``):

* float ``[low, high]`` -> ``hp.uniform`` (``hp.loguniform`` with ``"log": true``);
* int ``[low, high]`` -> ``hp.quniform(low - 0.5, high + 0.5, 1)`` (``hp.qloguniform`` on a log
  scale), rounded and clipped, so each integer has the same prior mass and TPE keeps the order;
* choice -> ``hp.choice`` over the positions of the values (the values themselves, whatever
  their JSON type, are copied from the list);
* constants never reach hyperopt; they are passed through.

State: the trial history (parameter values as hyperopt sees them, status, loss) and the seed
generator's state are plain JSON; :meth:`~HyperoptProposer.load_state_dict` rebuilds the
``Trials`` from them, so a resumed experiment proposes what an uninterrupted one would have.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import field_validator

from aup.proposers.base import Proposal, Proposer, ProposerOptions
from aup.space import ChoiceParam, FloatParam, IntParam, SearchSpace, config_key

#: Engine calls tried before accepting a configuration that is already running (tiny spaces).
_MAX_REDRAWS = 20
#: Uniform draws tried after that, before a running configuration is accepted.
_MAX_RANDOM_DRAWS = 200
#: Upper bound (exclusive) of the per-call seeds, as in ``hyperopt.fmin``.
_SEED_RANGE = 2**31 - 1

_STATUS_OK, _STATUS_FAIL, _STATUS_RUNNING = "ok", "fail", "running"


class HyperoptOptions(ProposerOptions):
    """Options of the ``hyperopt`` proposer.

    Attributes:
        engine: ``tpe`` (default), ``rand`` (``random`` is accepted as an alias) or ``anneal``.
        n_startup_jobs: TPE only: number of random jobs before the model is used (hyperopt's
            default, 20).
    """

    engine: Literal["tpe", "rand", "anneal"] = "tpe"
    n_startup_jobs: int = 20

    @field_validator("engine", mode="before")
    @classmethod
    def _alias(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip().lower()
            return "rand" if v == "random" else v
        return v

    @field_validator("n_startup_jobs")
    @classmethod
    def _startup(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be >= 0; use 0 or more random jobs before TPE (default 20)")
        return v


def _hp_space(space: SearchSpace) -> dict[str, Any]:
    """hyperopt expression (a dict label -> distribution) of the non-constant parameters."""
    from hyperopt import hp

    out: dict[str, Any] = {}
    for p in space:
        if p.is_constant:
            continue
        if isinstance(p, FloatParam):
            out[p.name] = (hp.loguniform(p.name, math.log(p.low), math.log(p.high)) if p.log
                           else hp.uniform(p.name, p.low, p.high))
        elif isinstance(p, IntParam):
            if p.log:
                lo = math.log(max(p.low - 0.5, 0.5 * p.low))
                out[p.name] = hp.qloguniform(p.name, lo, math.log(p.high + 0.5), 1)
            else:
                out[p.name] = hp.quniform(p.name, p.low - 0.5, p.high + 0.5, 1)
        else:
            out[p.name] = hp.choice(p.name, list(range(len(p.choices))))
    return out


def _algo(options: HyperoptOptions) -> Callable[..., Any]:
    from hyperopt import anneal, rand, tpe

    if options.engine == "tpe":
        return functools.partial(tpe.suggest, n_startup_jobs=options.n_startup_jobs,
                                 verbose=False)
    return anneal.suggest if options.engine == "anneal" else rand.suggest


class HyperoptProposer(Proposer):
    """hyperopt's TPE / random / annealing search, driven one proposal at a time.

    Each proposal carries ``tid`` (hyperopt's trial id, equal to the proposal id) in its job
    config, as in Auptimizer 2.0 (``tid`` is a reserved parameter name,
    :data:`aup.config.RESERVED_JOB_KEYS`).
    """

    name = "hyperopt"
    accepts_points = True
    Options = HyperoptOptions

    @classmethod
    def option_warnings(cls, options: HyperoptOptions, given: set[str]) -> list[str]:
        if "n_startup_jobs" in given and options.engine != "tpe":
            return [f"n_startup_jobs is ignored by engine {options.engine!r} (only tpe starts "
                    "with random jobs)"]
        if options.engine == "tpe" and options.n_samples <= options.n_startup_jobs:
            # hyperopt's default of 20 random jobs: an Optuna port with n_trials 15 (its
            # TPESampler starts after 10) would be random search without a word (trial 72)
            return [f"with n_samples {options.n_samples} and n_startup_jobs "
                    f"{options.n_startup_jobs}, every job is a random one: TPE uses its model "
                    "only after n_startup_jobs results. Fix: more jobs, or a smaller "
                    "\"n_startup_jobs\": 10 (Optuna's TPESampler starts "
                    "after 10)"]
        return []

    def __init__(self, space: SearchSpace, options: HyperoptOptions):
        super().__init__(space, options)
        from hyperopt import Domain, Trials

        self.options: HyperoptOptions = options
        for p in space:
            if (isinstance(p, FloatParam | IntParam) and not p.log
                    and math.isinf(float(p.high) - float(p.low))):
                # numpy's uniform(low, high) raises OverflowError at the first proposal
                raise ValueError(
                    f"hyperopt cannot sample parameter '{p.name}' on [{p.low:g}, {p.high:g}]: "
                    "the width high - low is more than the largest float. Fix: narrow the "
                    "range, use \"log\": true with positive bounds, or another proposer "
                    "(random, spearmint and sequence take it)")
        self.rng = np.random.Generator(np.random.PCG64(options.random_seed))
        expr = _hp_space(space)
        self._domain = Domain(lambda _: 0.0, expr) if expr else None
        self._trials = Trials()
        self._algo = _algo(options)
        # tid -> [tid, vals, status, loss]: the JSON history, mirrored into self._trials.
        self._history: dict[int, list[Any]] = {}
        self._docs: dict[int, dict[str, Any]] = {}

    # -- proposing ---------------------------------------------------------------------------
    def _propose(self, proposal_id: int) -> Proposal | None:
        running = self._pending_keys()
        vals: dict[str, Any] = {}
        params: dict[str, Any] = {}
        for _ in range(_MAX_REDRAWS):
            seed = int(self.rng.integers(_SEED_RANGE))
            vals = self._suggest(proposal_id, seed)
            params = self._decode(vals)
            if Proposal(proposal_id, params).key not in running:
                break
        else:
            # The model's draws all landed on running configurations (TPE concentrates on
            # the favourite of a small space): a uniform draw among the others instead.
            for _ in range(_MAX_RANDOM_DRAWS):
                drawn = self.space.sample(self.rng)
                if config_key(drawn) not in running:
                    params, vals = drawn, self._encode(drawn)
                    break
        self._record(proposal_id, vals, _STATUS_RUNNING, None)
        return Proposal(proposal_id, params, extra={"tid": proposal_id})

    def _given(self, proposal_id: int, params: dict[str, Any]) -> Proposal:
        return Proposal(proposal_id, params, extra={"tid": proposal_id})

    def _suggest(self, tid: int, seed: int) -> dict[str, Any]:
        """One call of the engine: the new trial's values as hyperopt reports them."""
        if self._domain is None:
            return {}
        docs = self._algo([tid], self._domain, self._trials, seed)
        vals = docs[0]["misc"]["vals"]
        return {k: _plain(v[0]) for k, v in vals.items() if v}

    def _decode(self, vals: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for p in self.space:
            if p.is_constant:
                params[p.name] = p.from_unit(0.5)
            elif isinstance(p, ChoiceParam):
                params[p.name] = copy.deepcopy(p.choices[int(vals[p.name])])
            elif isinstance(p, IntParam):
                params[p.name] = int(min(p.high, max(p.low, round(float(vals[p.name])))))
            else:
                params[p.name] = float(min(p.high, max(p.low, float(vals[p.name]))))
        return params

    # -- the history, in JSON and in hyperopt's Trials ----------------------------------------
    def _record(self, tid: int, vals: dict[str, Any], status: str, loss: float | None,
                refresh: bool = True) -> None:
        entry = [tid, vals, status, loss]
        self._history[tid] = entry
        if self._domain is None:
            return
        from hyperopt.base import JOB_STATE_DONE, JOB_STATE_RUNNING

        doc = self._docs.get(tid)
        if doc is None:
            misc = {"tid": tid, "cmd": self._domain.cmd, "workdir": None,
                    "idxs": {k: [tid] for k in vals}, "vals": {k: [v] for k, v in vals.items()}}
            for label in self._domain.params:
                misc["idxs"].setdefault(label, [])
                misc["vals"].setdefault(label, [])
            doc = self._trials.new_trial_docs([tid], [None], [{"status": "new"}], [misc])[0]
            self._trials.insert_trial_docs([doc])
            doc = self._trials._dynamic_trials[-1]
            self._docs[tid] = doc
        if status == _STATUS_RUNNING:
            doc["state"] = JOB_STATE_RUNNING
            doc["result"] = {"status": "running"}
        else:
            doc["state"] = JOB_STATE_DONE
            doc["result"] = ({"status": "ok", "loss": loss} if status == _STATUS_OK
                             else {"status": "fail"})
        if refresh:
            self._trials.refresh()

    def _vals(self, proposal: Proposal) -> dict[str, Any]:
        """hyperopt's values of a proposal: recorded at ask, or rebuilt from the parameters
        (a result told for a configuration this proposer did not propose, e.g. a warm start)."""
        entry = self._history.get(proposal.id)
        if entry is not None:
            return entry[1]
        return self._encode(proposal.params)

    def _encode(self, params: dict[str, Any]) -> dict[str, Any]:
        """hyperopt's values of an assignment: a choice's index, a number as a float."""
        vals: dict[str, Any] = {}
        for p in self.space:
            if p.is_constant:
                continue
            v = params[p.name]
            vals[p.name] = p.index(v) if isinstance(p, ChoiceParam) else float(v)
        return vals

    def _observe(self, proposal: Proposal, loss: float) -> None:
        self._record(proposal.id, self._vals(proposal), _STATUS_OK, loss)

    def _observe_failure(self, proposal: Proposal) -> None:
        self._record(proposal.id, self._vals(proposal), _STATUS_FAIL, None)

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["rng"] = self.rng.bit_generator.state
        state["trials"] = [list(e) for e in self._history.values()]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from hyperopt import Trials

        super().load_state_dict(state)
        self.rng.bit_generator.state = state["rng"]
        self._trials = Trials()
        self._history = {}
        self._docs = {}
        for tid, vals, status, loss in state.get("trials", []):
            self._record(int(tid), dict(vals), status, loss, refresh=False)
        self._trials.refresh()


def _plain(value: Any) -> Any:
    """A numpy scalar as a plain Python number."""
    return value.item() if isinstance(value, np.generic) else value
