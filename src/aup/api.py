"""Python API behind :func:`aup.run_experiment` and :func:`aup.load_experiment`.

Also the database location rules shared by the CLI: ``--db`` / ``db=``, then the ``AUP_DB``
environment variable, then ``storage`` in experiment.json, then the ``database`` of
``.aup/env.ini`` (written by ``aup setup``), then ``.aup/sqlite3.db`` under the current
directory.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aup.errors import AupError, UsageError
from aup.store.store import (
    Store,
    absolute_sqlite_url,
    default_url,
    open_store,
    sqlite_file,
    sqlite_url,
)

log = logging.getLogger(__name__)

#: The methods the experiment loop calls on an ``observer=`` (:class:`aup.experiment.Observer`).
_OBSERVER_METHODS = ("on_start", "on_job_started", "on_result", "on_job_ended", "on_stopping")


def _check_db(db: Any) -> None:
    """Refuse a ``db=`` that is neither a URL nor a path.

    Raises:
        UsageError: naming the type and value given.
    """
    if db is not None and not isinstance(db, str | os.PathLike):
        raise UsageError(f"db= needs a database URL or file path, got {type(db).__name__} "
                         f"{db!r:.80}")


def _check_observer(observer: Any) -> None:
    """Refuse an ``observer=`` the loop cannot call, before anything is recorded (a
    function, as Optuna's ``callbacks``, failed the run at its start with an AttributeError
    and left a FAILED experiment behind; trial 64).

    Raises:
        UsageError: naming the methods it lacks.
    """
    if observer is None:
        return
    missing = [m for m in _OBSERVER_METHODS if not callable(getattr(observer, m, None))]
    if missing:
        raise UsageError(
            f"observer= needs an object with the methods {', '.join(_OBSERVER_METHODS)}; "
            f"got {type(observer).__name__} {observer!r:.60}, which lacks {', '.join(missing)}. "
            "Fix: subclass aup.experiment.Observer and override the methods you need "
            "(e.g. on_job_ended(self, jid, attempt, outcome, job_status))")


def experiment_ref(experiment: Any, caller: str) -> int | str:
    """An experiment id or name as the Python API accepts it: an int (numpy ints too, as
    read from a DataFrame), a str, or what :func:`run_experiment` / :func:`load_experiment`
    returned (its ``eid``).

    Raises:
        UsageError: anything else (a bool, a float, a Series...), naming ``caller``.
    """
    import numbers

    eid = getattr(experiment, "eid", None)
    if isinstance(eid, int) and not isinstance(experiment, str | numbers.Number):
        return eid
    if isinstance(experiment, numbers.Integral) and not isinstance(experiment, bool):
        return int(experiment)
    if isinstance(experiment, str):
        return experiment
    raise UsageError(f"{caller}() needs an experiment id (int) or name (str), got "
                     f"{type(experiment).__name__} {experiment!r:.80}")


def resolve_db_url(db: str | os.PathLike | None = None, storage: str | None = None) -> str:
    """The database URL to use (see the module docstring for the order).

    A bare file path (no ``://``) is taken as a SQLite file.

    Raises:
        UsageError: ``db`` is given but empty, or the URL is an in-memory SQLite database
            (it would vanish with the command, and the job files it leaves in ``jobs/`` would
            block the next run).
    """
    if db is not None:
        db = os.fspath(db)  # a pathlib.Path is a file, like a str without '://'
    if db is not None and not db.strip():
        raise UsageError("--db is empty. Fix: give a database URL or file (e.g. --db "
                         "sqlite:///path/to/db.sqlite), or leave --db (db= in Python) out "
                         "for the default .aup/sqlite3.db under the current folder")
    url = db or os.environ.get("AUP_DB") or storage
    if not url:
        from aup.environment import load_environment

        env = load_environment()
        url = env.database if env is not None else None
    url = url or default_url()
    if in_memory_url(url):
        raise UsageError(f"the database {url} is in memory: every recorded job would be lost "
                         "when the command ends, and nothing could be resumed or shown. Fix: "
                         "give a file (e.g. sqlite:///path/to/db.sqlite), or leave --db "
                         "(db= in Python) out for the default .aup/sqlite3.db under the "
                         "current folder")
    if "://" not in url:  # a file, named exactly ('q?dir/x.db', 'runs%20x.db')
        return sqlite_url(Path(url).expanduser().resolve())
    # sqlite:///rel.db means rel.db in the current folder: say which one, so that the
    # resume hint and the start line work from anywhere
    return absolute_sqlite_url(url, Path.cwd())


def in_memory_url(url: str) -> bool:
    """True for an in-memory SQLite URL (``sqlite://``, ``sqlite:///:memory:``,
    ``...?mode=memory``) or the bare path ``:memory:``."""
    if url.strip() == ":memory:":
        return True
    if not url.lower().startswith("sqlite") or "://" not in url:
        return False
    # the options: a file named 'x?mode=memory' is 'x%3Fmode=memory' in its URL
    return sqlite_file(url) is None or "mode=memory" in url.partition("?")[2].lower()


#: What to do about a database without Auptimizer's tables (an empty file, or one an 'aup run'
#: killed while it created the database left behind; trial 51).
_UNSET_UP = ("Fix: give the database your experiments use (--db URL, db= in Python, or "
             "AUP_DB); if an 'aup run' was stopped while it created this one, before any "
             "experiment started, the next 'aup run' sets it up")


def open_existing_store(db: str | None = None, *, read_only: bool = False) -> Store:
    """Open the database of recorded experiments (location as :func:`resolve_db_url`) without
    creating anything: for every command that reads or steers recorded experiments (``list``,
    ``show``, ``resume``, ``tell``, ``repair``, ``export``, ``plot``, ``dashboard``...) and
    :func:`load_experiment`. An older schema is upgraded. ``read_only`` (the views: ``list``,
    ``show``, ``best``, ``export``, ``plot``, ``dashboard``): a SQLite file this process may
    not write is opened read-only instead of being refused.

    Raises:
        UsageError: there is no SQLite file at that place (a mistyped path must not become a
            new empty database), it is a folder, or the database holds no Auptimizer tables.
        StoreError: the database cannot be opened.
    """
    from sqlalchemy import inspect

    url = resolve_db_url(db)
    file = sqlite_file(url)
    if file is not None and file.exists() and not file.is_file():
        raise UsageError(f"the database {file} is not a file (it is a "
                         f"{'folder' if file.is_dir() else 'special file'}). Fix: give "
                         "the database file (--db URL, db= in Python, or AUP_DB)")
    if file is not None and not file.is_file():
        raise UsageError(f"no database at {file}: nothing was recorded there yet. Fix: "
                         "run this where you ran 'aup run', or give the database "
                         "(--db URL, db= in Python, or AUP_DB); an experiment whose "
                         "experiment.json sets \"storage\", or that was run with --db, keeps "
                         "its records in that database (the line 'experiment N ... started' "
                         "names it)")
    if file is not None and file.stat().st_size == 0:  # opening it would write a header
        raise UsageError(f"{file} is empty: it holds no Auptimizer experiments. {_UNSET_UP}")
    store = open_store(url, create=False, read_only=read_only)
    if not inspect(store.engine).has_table("experiment"):
        store.close()
        raise UsageError(f"{store._safe_url()} holds no Auptimizer experiments. {_UNSET_UP}")
    return store


def db_option(store: Store) -> str:
    """``" --db URL"`` for a command hint (``aup resume``, ``aup stop``) when ``store`` is not
    the database such a command would open by default here (``--db``, ``storage`` or
    ``AUP_DB`` chose another one); ``""`` otherwise.

    A password in the URL is never printed: it becomes ``$PGPASSWORD`` inside double quotes
    (the variable libpq also reads), so the hint still pastes once that variable is set.
    """
    from aup.store.store import pasteable_db

    if store.url == resolve_db_url(None):
        return ""
    return f" --db {pasteable_db(store.url)}"


def resume_hint(store: Store, eid: int) -> str:
    """How to continue experiment ``eid`` from Python and from a shell, for the interrupts of
    :func:`run_experiment` and :func:`resume_experiment` (a notebook's ``!aup`` is often not
    on PATH: the kernel's environment is not activated)."""
    from aup.store.store import pasteable_db

    db = "" if not db_option(store) else f", db={pasteable_db(store.url)!r}"
    return f"aup.resume_experiment({eid}{db}), or in a shell: aup resume{db_option(store)} {eid}"


def find_experiment(store: Store, ref: int | str) -> dict[str, Any]:
    """The experiment row for an id or a name (the newest of that name).

    Raises:
        UsageError: no such experiment.
    """
    from aup.store.schema import MAX_ID

    text = str(ref).strip()
    if text.isascii() and text.isdigit() and int(text) <= MAX_ID:  # else no id: a name
        row = store.get_experiment(int(text))
        if row is not None:
            named = [r for r in store.find_experiments(text) if r["eid"] != row["eid"]]
            if named:
                import logging

                logging.getLogger(__name__).warning(
                    "'%s' is the id of experiment %s (%s) and the name of experiment %s: the "
                    "id wins; to mean the other one, give its id %s", text, row["eid"],
                    row["name"], named[0]["eid"], named[0]["eid"])
            return row
    rows = store.find_experiments(text)
    if rows:
        return rows[0]
    raise UsageError(f"no experiment '{text}' in the database {store._safe_url()}; "
                     "see 'aup list'")


def check_run_database(url: str, resource: Any) -> None:
    """What :func:`create_run` would refuse about the database at ``url`` and the jobs folder,
    found without connecting or writing (``aup run --check``; a server that does not answer
    is found only by a run).

    Raises:
        StoreError: the URL or file cannot be used (see :func:`aup.store.store.check_url`).
        UsageError: a new database would meet another database's job files in ``jobs/``.
    """
    from aup.jobs_folder import check_jobs_dir
    from aup.store.store import check_url

    check_url(url)
    path = sqlite_file(url)
    if path is not None and not path.exists():
        check_jobs_dir(resource.jobs_dir, url)


def create_run(config: Any, url: str, *, user: str | None, observer: Any, env: Any,
               resource: Any) -> tuple[Any, bool]:
    """Open (or create) the database at ``url`` and record a new experiment of ``config``, as
    ``aup run`` and :func:`run_experiment` do.

    A new SQLite file is created only after its folder and the jobs folder were checked; when
    the experiment is refused after all (another run took the jobs folder in the meantime...),
    a database file this call created, still without an experiment, is removed again, with the
    folder it made for it.

    Args:
        config: the validated configuration.
        url: the database URL (:func:`resolve_db_url`).
        user, observer, env: as for :meth:`aup.experiment.Experiment.create`.
        resource: the resource manager built with ``check_only`` (its jobs folder is checked).

    Returns:
        ``(experiment, created)``: created is True when this call created the database.

    Raises:
        AupError: refused (nothing is left behind).
    """
    import contextlib

    from aup.experiment import Experiment
    from aup.jobs_folder import check_jobs_dir
    from aup.store.store import check_sqlite_folder

    new_file = sqlite_file(url)
    created = new_file is not None and not new_file.exists()
    if new_file is not None:
        check_sqlite_folder(new_file)  # a mistyped --db is named before any other problem
    if created:
        # a new database: refuse another one's job files before creating it
        check_jobs_dir(resource.jobs_dir, url)
    made_folder = created and not new_file.parent.exists()
    store = open_store(url)
    try:
        exp = Experiment.create(config, store, user=user, observer=observer, env_file=env,
                                resource=resource)
    except AupError:
        if created and not store.list_experiments(limit=1):
            store.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{new_file}{suffix}").unlink(missing_ok=True)
            if made_folder:  # the .aup it made for it, when still empty
                with contextlib.suppress(OSError):
                    new_file.parent.rmdir()
        else:
            store.close()
        raise
    if created and url == resolve_db_url(None):  # the default database: not chosen
        from aup.environment import unread_home_environment

        home = unread_home_environment()
        if home is not None:  # a 2.0 user's history would split without a word (trial 56)
            log.warning("%s exists but is not read (Auptimizer 2.0 used it when ./.aup had "
                        "no env.ini; this version does not): this experiment is recorded in "
                        "the new database %s. To record in the database it names instead, "
                        "set AUP_ENV=%s", home, store._safe_url(), home)
    return exp, created


def run_experiment(path: str | os.PathLike, *, db: str | os.PathLike | None = None,
                   observer: Any = None, user: str | None = None) -> Any:
    """Validate and run an experiment file; see :func:`aup.run_experiment`."""
    import queue

    from aup.config import load_config
    from aup.environment import load_environment
    from aup.experiment import prepared_resource, sigint_held

    if not isinstance(path, str | os.PathLike):
        raise UsageError(f"run_experiment() needs the path of an experiment.json file, got "
                         f"{type(path).__name__} {path!r:.80}")
    _check_db(db)
    _check_observer(observer)
    if user is not None and not isinstance(user, str):
        raise UsageError(f"user= needs a user name (str), got {type(user).__name__} "
                         f"{user!r:.80}")
    config = load_config(path)
    for w in config.warnings:  # as 'aup run' logs them
        log.warning("%s: %s", path, w)
    env = load_environment()
    checked = prepared_resource(config, queue.Queue(), env, check_only=True)
    exp, _ = create_run(config, resolve_db_url(db, config.storage_url),
                        user=user or (env.user if env else None), observer=observer, env=env,
                        resource=checked)
    try:
        return exp.run()
    except KeyboardInterrupt:  # the CLI prints the resume command; a notebook gets it here
        log.warning("experiment %d (%s) stopped; continue with %s", exp.eid,
                    config.experiment_name, resume_hint(exp.store, exp.eid))
        raise
    finally:
        # a second interrupt (a notebook's "interrupt" pressed twice) during the close printed
        # SQLAlchemy's "Exception closing connection" traceback, which looks like corruption
        with sigint_held(discard=True):
            exp.store.close()


def resume_experiment(experiment: int | str, *, db: str | os.PathLike | None = None,
                      observer: Any = None, force: bool = False) -> Any:
    """Continue a recorded experiment; see :func:`aup.resume_experiment`."""
    from aup.environment import load_environment
    from aup.experiment import Experiment, sigint_held

    experiment = experiment_ref(experiment, "resume_experiment")
    _check_db(db)
    _check_observer(observer)
    store = open_existing_store(os.fspath(db) if db is not None else None)
    try:
        row = find_experiment(store, experiment)
        exp = Experiment.resume(store, int(row["eid"]), observer=observer,
                                env_file=load_environment(), force=force)
        log.info("experiment %d (%s) resumed", exp.eid, row["name"])
        try:
            return exp.run()
        except KeyboardInterrupt:  # as run_experiment: the command that continues it
            log.warning("experiment %d (%s) stopped; continue with %s", exp.eid,
                        row["name"], resume_hint(store, exp.eid))
            raise
    finally:
        with sigint_held(discard=True):  # as run_experiment's
            store.close()


#: Keys 2.0 wrote into a job's config next to the parameters: the job's (or spearmint's grid)
#: id and hyperopt's trial id.
BOOKKEEPING_KEYS = ("job_id", "tid")


def value_text(value: Any) -> str:
    """A parameter value as experiment.json writes it (``null``, ``true``, ``1``), with a
    string bare unless it reads as another JSON value: ``"1"`` and ``"true"`` stay quoted, so
    the choice ``"1"`` never looks like the choice ``1`` (``aup show``, chart labels)."""
    import json

    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value)


def result_labels(exp_config: dict[str, Any] | None) -> list[str]:
    """The labels of an experiment's secondary result values (``multi_res_labels`` of its
    recorded configuration), in order; ``[]`` without any."""
    ra = (exp_config or {}).get("resource_args") or {}
    return [str(x) for x in (ra.get("multi_res_labels") or [])]


def config_params(config: dict[str, Any] | None) -> dict[str, Any]:
    """A job config without the bookkeeping keys (:data:`BOOKKEEPING_KEYS`: hyperopt's
    ``tid``, 2.0's ``job_id``), which the job file carries beside the parameters; the one rule
    of every view that lists a job's parameters (``aup show``, ``records()``, the dashboard
    and the export)."""
    return {k: v for k, v in (config or {}).items() if k not in BOOKKEEPING_KEYS}


def job_params(job: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a job row: its proposal's, or for a job recorded by Auptimizer 2.0
    (no proposal) its job config without 2.0's bookkeeping keys (``job_id``, ``tid``)."""
    proposal = job.get("proposal") or {}
    if "params" in proposal:
        return dict(proposal["params"])
    return config_params(job.get("job_config"))


@dataclass
class ExperimentRecord:
    """A recorded experiment, read from the store.

    Attributes:
        row: the experiment row (``eid``, ``name``, ``status``, ``exp_config``...).
        store: the store it was read from.
    """

    row: dict[str, Any]
    store: Store

    def __repr__(self) -> str:
        # The row holds the proposer's whole state (thousands of numbers for some): a short
        # summary instead of the dataclass's field dump.
        r = self.row
        return (f"ExperimentRecord(eid={r.get('eid')}, name={r.get('name')!r}, "
                f"status={r.get('status')!r}{', crashed' if self.crashed else ''}, "
                f"proposer={r.get('proposer')!r}, "
                f"database={self.store._safe_url()!r})")

    @property
    def eid(self) -> int:
        """The experiment id."""
        return int(self.row["eid"])

    @property
    def name(self) -> str:
        """The experiment's name."""
        return str(self.row["name"])

    @property
    def status(self) -> str:
        """Its status when it was loaded (``RUNNING``, ``FINISHED``, ``STOPPED``, ``FAILED``);
        load it again for a later one."""
        return str(self.row["status"])

    @property
    def crashed(self) -> bool:
        """True when the experiment is ``RUNNING`` but its ``aup run`` process on this machine
        is gone (a ``kill -9``, a reboot): ``aup list`` shows it as ``RUNNING (crashed)``, and
        ``aup.resume_experiment`` continues it. False for one that runs on another machine
        (that cannot be told from here)."""
        from aup.experiment import scheduler_gone

        return self.row.get("status") == "RUNNING" and scheduler_gone(self.row)

    @property
    def best_params(self) -> dict[str, Any] | None:
        """The parameters of the best FINISHED job (Optuna's ``study.best_params``; the budget
        of hyperband/bohb is in ``best()["budget"]``), or None while no job finished. Reads the
        database at each call."""
        best = self.best()
        return None if best is None else job_params(best)

    @property
    def best_value(self) -> float | None:
        """The score of the best FINISHED job (Optuna's ``study.best_value``), or None. Reads
        the database at each call."""
        best = self.best()
        return None if best is None else best["score"]

    def jobs(self) -> list[dict[str, Any]]:
        """Job rows in jid order (``job_config`` decoded)."""
        return self.store.jobs(self.eid)

    def best(self) -> dict[str, Any] | None:
        """The best FINISHED job by the experiment's target, or None."""
        return self.store.best_job(self.eid, self.row.get("target") == "max")

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per job, in jid order: ``jid``, ``status``, ``score``,
        ``fail_reason``, ``detail`` (of the last attempt), ``start_time``, ``end_time``,
        ``duration`` (``end_time - start_time``, None while either is unknown),
        ``n_attempts``, ``budget``, ``bracket``, ``rung``, one ``param_<name>`` key per
        recorded job-config value (the parameters, plus ``n_iterations`` for hyperband/bohb;
        not the bookkeeping keys ``job_id``, which is ``jid``, and hyperopt's ``tid``), and one ``result_<label>`` key per
        ``multi_res_labels`` label: that value of the job's final result (None without one).
        """
        out = []
        attempts = self.store.last_attempts(self.eid)
        labels = result_labels(self.row.get("exp_config"))
        extras = self.store.final_extras(self.eid) if labels else {}
        for j in self.jobs():
            start, end = j["start_time"], j["end_time"]
            a = attempts.get(j["jid"])
            rec = dict(zip(_RECORD_COLUMNS, (
                j["jid"], j["status"], j["score"], j["fail_reason"], a["detail"] if a else None,
                start, end, end - start if start is not None and end is not None else None,
                j["n_attempts"], j["budget"], j["bracket"], j["rung"]), strict=True))
            for k, v in config_params(j["job_config"]).items():  # no tid (trial 62)
                rec[f"param_{k}"] = v
            ex = extras.get(j["jid"], {})
            for i, lab in enumerate(labels, start=1):
                rec[f"result_{lab}"] = ex.get(i)
            out.append(rec)
        return out

    def intermediate_values(self) -> dict[int, list[float | None]]:
        """Each job's intermediate scores, by jid: every result line of its latest attempt in
        the order printed (None for a value that was not finite), like Optuna's
        ``trial.intermediate_values``. Recorded with ``track_intermediate_results`` (on with
        early stopping); jobs without any are left out. One query.
        """
        from aup.job import JobStatus

        out = self.store.histories(self.eid, [status.value for status in JobStatus])
        ra = (self.row.get("exp_config") or {}).get("resource_args") or {}
        if not out and not ra.get("track_intermediate_results") and not ra.get("early_stop"):
            log.warning("experiment %d (%s) records no intermediate results: "
                        "resource_args.track_intermediate_results was off (set it to true, or "
                        "use early stopping, in the next experiment)", self.eid, self.name)
        return out

    def close(self) -> None:
        """Close the database connections (also done when the record is garbage-collected,
        or by ``with aup.load_experiment(...) as record:``)."""
        self.store.close()

    def __enter__(self) -> ExperimentRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def to_dataframe(self) -> Any:
        """The jobs as a pandas DataFrame (needs pandas). Columns as in :meth:`records`."""
        try:
            import pandas as pd
        except ImportError:
            raise UsageError("to_dataframe() needs pandas: pip install pandas") from None
        records = self.records()
        if records:
            return pd.DataFrame.from_records(records)
        # No job yet: the columns all the same, so df[df.status == "FINISHED"] works.
        cfg = self.row.get("exp_config") or {}
        params = [p.get("name") for p in cfg.get("parameter_config") or []
                  if isinstance(p, dict) and isinstance(p.get("name"), str)]
        return pd.DataFrame(columns=[*_RECORD_COLUMNS, *(f"param_{n}" for n in params),
                                     *(f"result_{lab}" for lab in result_labels(cfg))])


#: The columns of :meth:`ExperimentRecord.records` every job has, in order.
_RECORD_COLUMNS = ("jid", "status", "score", "fail_reason", "detail", "start_time", "end_time",
                   "duration", "n_attempts", "budget", "bracket", "rung")


def load_experiment(experiment: int | str, *, db: str | None = None) -> ExperimentRecord:
    """Open a recorded experiment by id or name; see :func:`aup.load_experiment`.

    Raises:
        UsageError: no database at ``db`` (nothing is created), or no such experiment.
    """
    experiment = experiment_ref(experiment, "load_experiment")
    _check_db(db)
    store = open_existing_store(os.fspath(db) if db is not None else None, read_only=True)
    try:
        return ExperimentRecord(find_experiment(store, experiment), store)
    except BaseException:
        store.close()
        raise
