"""Python API behind :func:`aup.run_experiment` and :func:`aup.load_experiment`.

Also the database location rules shared by the CLI: ``--db`` / ``db=``, then the ``AUP_DB``
environment variable, then ``storage`` in experiment.json, then the ``database`` of
``.aup/env.ini`` (written by ``aup setup``), then ``.aup/sqlite3.db`` under the current
directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aup.errors import UsageError
from aup.store.store import Store, default_url, open_store


def resolve_db_url(db: str | None = None, storage: str | None = None) -> str:
    """The database URL to use (see the module docstring for the order).

    A bare file path (no ``://``) is taken as a SQLite file.
    """
    url = db or os.environ.get("AUP_DB") or storage
    if not url:
        from aup.environment import load_environment

        env = load_environment()
        url = env.database if env is not None else None
    url = url or default_url()
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser().resolve()}"
    return url


def db_option(store: Store) -> str:
    """``" --db URL"`` for a command hint (``aup resume``, ``aup stop``) when ``store`` is not
    the database such a command would open by default here (``--db``, ``storage`` or
    ``AUP_DB`` chose another one); ``""`` otherwise. A password in the URL is shown as ``***``.
    """
    import shlex

    if store.url == resolve_db_url(None):
        return ""
    return f" --db {shlex.quote(store._safe_url())}"


def find_experiment(store: Store, ref: int | str) -> dict[str, Any]:
    """The experiment row for an id or a name (the newest of that name).

    Raises:
        UsageError: no such experiment.
    """
    text = str(ref).strip()
    if text.isdigit():
        row = store.get_experiment(int(text))
        if row is not None:
            return row
    rows = store.find_experiments(text)
    if rows:
        return rows[0]
    raise UsageError(f"no experiment '{text}' in the database {store._safe_url()}; "
                     "see 'aup list'")


def run_experiment(path: str | os.PathLike, *, db: str | None = None, observer: Any = None,
                   user: str | None = None) -> Any:
    """Validate and run an experiment file; see :func:`aup.run_experiment`."""
    from aup.config import load_config
    from aup.environment import load_environment
    from aup.experiment import Experiment

    config = load_config(path)
    store = open_store(resolve_db_url(db, config.storage_url))
    try:
        exp = Experiment.create(config, store, user=user, observer=observer,
                                env_file=load_environment())
        return exp.run()
    finally:
        store.close()


@dataclass
class ExperimentRecord:
    """A recorded experiment, read from the store.

    Attributes:
        row: the experiment row (``eid``, ``name``, ``status``, ``exp_config``...).
        store: the store it was read from.
    """

    row: dict[str, Any]
    store: Store

    @property
    def eid(self) -> int:
        """The experiment id."""
        return int(self.row["eid"])

    def jobs(self) -> list[dict[str, Any]]:
        """Job rows in jid order (``job_config`` decoded)."""
        return self.store.jobs(self.eid)

    def best(self) -> dict[str, Any] | None:
        """The best FINISHED job by the experiment's target, or None."""
        return self.store.best_job(self.eid, self.row.get("target") == "max")

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per job: jid, status, score, fail_reason, times, budget, and one
        ``param_<name>`` key per parameter value (and extra job-config keys)."""
        out = []
        attempts = self.store.last_attempts(self.eid)
        for j in self.jobs():
            rec = {"jid": j["jid"], "status": j["status"], "score": j["score"],
                   "fail_reason": j["fail_reason"], "start_time": j["start_time"],
                   "end_time": j["end_time"], "n_attempts": j["n_attempts"],
                   "budget": j["budget"], "bracket": j["bracket"], "rung": j["rung"]}
            a = attempts.get(j["jid"])
            rec["detail"] = a["detail"] if a else None
            for k, v in (j["job_config"] or {}).items():
                rec[f"param_{k}"] = v
            out.append(rec)
        return out

    def to_dataframe(self) -> Any:
        """The jobs as a pandas DataFrame (needs pandas). Columns as in :meth:`records`."""
        try:
            import pandas as pd
        except ImportError:
            raise UsageError("to_dataframe() needs pandas: pip install pandas") from None
        return pd.DataFrame.from_records(self.records())


def load_experiment(experiment: int | str, *, db: str | None = None) -> ExperimentRecord:
    """Open a recorded experiment by id or name; see :func:`aup.load_experiment`."""
    store = open_store(resolve_db_url(db), create=True)
    return ExperimentRecord(find_experiment(store, experiment), store)
