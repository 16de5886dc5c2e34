"""Read-only queries behind the dashboard, the REST API, ``aup plot`` and ``aup export``.

Every query is SQLAlchemy Core over :mod:`aup.store.schema`, parameterised, and portable between
SQLite (3.25+, for window functions) and PostgreSQL. Aggregation and down-sampling happen in SQL,
so that an experiment with 100,000 jobs and millions of intermediate results answers with at
most a few thousand points:

- score per job: jobs are cut into buckets of consecutive jobs; each bucket keeps its lowest and
  highest score (the envelope of the cloud) and the best-so-far value at its last job;
- parallel coordinates: the best jobs plus an evenly spaced sample of the others;
- intermediate curves: at most ``max_points`` evenly spaced results per job (the last is kept).

The only write is :meth:`DashboardQueries.request_stop`, the same stop request as ``aup stop``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.engine import Engine

from aup.api import config_params, value_text
from aup.errors import AupError
from aup.job import FailReason
from aup.store import schema as s
from aup.store.store import (
    Store,
    budget_fields,
    largest_budget,
    plain_number,
    without_password,
)

#: Jobs the job table may be sorted by (API name -> column expression built in ``jobs``).
JOB_SORT_KEYS = ("jid", "score", "status", "start_time", "end_time", "duration", "n_attempts",
                 "budget")
#: Job statuses (``aup.job.JobStatus``) accepted as filters.
JOB_STATUSES = ("RUNNING", "FINISHED", "FAILED", "EARLY_STOPPED", "INTERRUPTED")
#: Failure reasons (the values of ``aup.job.FailReason``) accepted as filters.
FAIL_REASONS = tuple(r.value for r in FailReason)
#: Experiment statuses accepted as filters.
EXPERIMENT_STATUSES = ("CREATED", "RUNNING", "STOPPED", "FINISHED", "FAILED")
#: Seconds without a heartbeat after which a RUNNING experiment is shown as stale (its process
#: writes one every 5 s; a stale one probably died: ``aup resume`` continues it).
STALE_AFTER = 30.0
#: Statuses of jobs that count as done for progress.
_DONE = ("FINISHED", "FAILED", "EARLY_STOPPED")


class NotFound(AupError):
    """An experiment or job id that is not in the database (HTTP 404)."""


class Conflict(AupError):
    """A request that does not fit the current state, e.g. stopping a finished experiment."""


class Forbidden(AupError):
    """A file outside the experiment's own jobs directory was asked for (HTTP 403)."""


def _budget(value: Any) -> int | float | None:
    """A job's budget as the job got it: ``9``, not the ``9.0`` the float column holds (trial
    68: bohb's whole budgets showed as 9.0 in the job table and its API)."""
    return None if value is None else plain_number(value)


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _num(x: Any) -> float | None:
    """A JSON-safe float (NaN/inf become None)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


class DashboardQueries:
    """The dashboard's view of a store.

    Args:
        store: an open :class:`~aup.store.store.Store` (its engine is used for reads; the
            store itself for the stop request).
    """

    def __init__(self, store: Store):
        self.store = store
        self.engine: Engine = store.engine

    # -- experiments ---------------------------------------------------------------------------
    def _counts(self, eids: Sequence[int] | None = None):
        # The best score follows Store.best_job: finished jobs at the largest budget only (a
        # score after fewer epochs is not comparable; hyperband's budget-1 scores showed here).
        j = s.job
        scored, budget, top = largest_budget(eids)
        at_top = and_(scored, budget == top.c.top)
        q = (select(j.c.eid,
                    func.count().label("n_jobs"),
                    *(func.coalesce(func.sum(case((j.c.status == st, 1), else_=0)), 0)
                      .label(f"n_{st.lower()}") for st in JOB_STATUSES),
                    func.max(case((at_top, j.c.score))).label("max_score"),
                    func.min(case((at_top, j.c.score))).label("min_score"),
                    func.max(case((at_top, top.c.top))).label("best_budget"),
                    func.max(j.c.budget).label("largest_budget_run"))
             .outerjoin(top, top.c.eid == j.c.eid)
             .where(j.c.is_rerun.is_(False)).group_by(j.c.eid))
        if eids is not None:
            q = q.where(j.c.eid.in_(list(eids)))
        return q.subquery()

    @staticmethod
    def _experiment_summary(m: Any) -> dict[str, Any]:
        cfg = _loads(m["exp_config"]) or {}
        n_jobs = int(m["n_jobs"] or 0)
        counts = {f"n_{st.lower()}": int(m[f"n_{st.lower()}"] or 0) for st in JOB_STATUSES}
        n_done = sum(counts[f"n_{st.lower()}"] for st in _DONE)
        total = m["n_total"]
        target = m["target"] or "max"
        best = m["max_score"] if target == "max" else m["min_score"]
        return {
            "eid": int(m["eid"]), "name": m["name"], "user": m["user"], "status": m["status"],
            "proposer": m["proposer"], "target": target, "n_total": total,
            "n_jobs": n_jobs, **counts, "n_done": n_done,
            "progress": (min(1.0, n_done / total) if total else None),
            "best_score": _num(best), "start_time": m["start_time"], "end_time": m["end_time"],
            # with budgets (hyperband, bohb), as in `aup list --json`
            **budget_fields(m["largest_budget_run"], m["best_budget"]),
            "stop_requested": bool(m["stop_requested"]), "error_msg": m["error_msg"],
            "resource": cfg.get("resource"), "n_parallel": cfg.get("n_parallel"),
            "heartbeat": m["heartbeat"], "host": m["host"],
            "stale": (m["status"] == "RUNNING"
                      and (m["heartbeat"] or 0) < time.time() - STALE_AFTER),
        }

    def list_experiments(self, *, offset: int = 0, limit: int = 50,
                         status: str | None = None) -> dict[str, Any]:
        """A page of experiments, newest first, with job counts, progress and best score.

        Returns:
            ``{"total": int, "offset": int, "limit": int, "items": [summary, ...]}``.
        """
        e = s.experiment
        where = [e.c.status == status] if status else []
        with self.engine.connect() as c:
            total = c.execute(select(func.count()).select_from(e).where(*where)).scalar() or 0
            page = (select(e.c.eid).where(*where).order_by(e.c.eid.desc())
                    .offset(offset).limit(limit))
            eids = [int(x) for x in c.execute(page).scalars()]
            items = self._summaries(c, eids)
        return {"total": int(total), "offset": offset, "limit": limit, "items": items}

    def _summaries(self, c, eids: Sequence[int]) -> list[dict[str, Any]]:
        if not eids:
            return []
        e, u = s.experiment, s.user
        counts = self._counts(eids)
        q = (select(e.c.eid, e.c.name, e.c.status, e.c.proposer, e.c.target, e.c.n_total,
                    e.c.start_time, e.c.end_time, e.c.stop_requested, e.c.error_msg,
                    e.c.exp_config, e.c.heartbeat, e.c.host, u.c.name.label("user"),
                    *(getattr(counts.c, k) for k in
                      ["n_jobs", *(f"n_{st.lower()}" for st in JOB_STATUSES),
                       "max_score", "min_score", "best_budget", "largest_budget_run"]))
             .outerjoin(counts, counts.c.eid == e.c.eid)
             .outerjoin(u, u.c.uid == e.c.uid).where(e.c.eid.in_(list(eids)))
             .order_by(e.c.eid.desc()))
        return [self._experiment_summary(r._mapping) for r in c.execute(q)]

    def _row(self, c, eid: int) -> dict[str, Any]:
        row = c.execute(select(s.experiment).where(s.experiment.c.eid == eid)).first()
        if row is None:
            raise NotFound(f"no experiment {eid}")
        return dict(row._mapping)

    def experiment(self, eid: int) -> dict[str, Any]:
        """One experiment: its summary, configuration, search space, result labels and best job.

        Raises:
            NotFound: no experiment ``eid``.
        """
        with self.engine.connect() as c:
            row = self._row(c, eid)
            summary = self._summaries(c, [eid])[0]
        cfg = without_password(_loads(row["exp_config"]) or {})
        maximize = summary["target"] == "max"
        best = self.store.best_job(eid, maximize)
        out = dict(summary)
        out.update({
            "config": cfg,
            "workingdir": row["workingdir"], "config_path": row["config_path"],
            "parameters": [{"name": p.get("name"), "type": p.get("type"),
                            "range": p.get("range"), "log": bool(p.get("log"))}
                           for p in cfg.get("parameter_config") or []],
            "labels": self.labels(cfg),
            "best_job": None if best is None else {
                "jid": best["jid"], "score": _num(best["score"]),
                "params": config_params(best["job_config"]), "end_time": best["end_time"]},
        })
        return out

    @staticmethod
    def labels(cfg: dict[str, Any]) -> list[str]:
        """Labels of the secondary result values (``multi_res_labels``), in order."""
        from aup.api import result_labels

        return result_labels(cfg)

    def target(self, eid: int) -> str:
        """``"min"`` or ``"max"``. Raises NotFound."""
        with self.engine.connect() as c:
            t = c.execute(select(s.experiment.c.target).where(s.experiment.c.eid == eid)).first()
        if t is None:
            raise NotFound(f"no experiment {eid}")
        return t[0] or "max"

    def request_stop(self, eid: int) -> dict[str, Any]:
        """Ask a running experiment to stop (the same request as ``aup stop``).

        Raises:
            NotFound: no experiment ``eid``.
            Conflict: the experiment is not running, its process on this machine is gone (it
                crashed), or the database is open read-only.
        """
        with self.engine.connect() as c:
            row = self._row(c, eid)
        if row["status"] != "RUNNING":
            raise Conflict(f"experiment {eid} is {row['status']}, not running")
        if self.store.read_only:
            raise Conflict(f"the dashboard opened the database read-only (its user may not "
                           f"write it), so it cannot ask experiment {eid} to stop; run "
                           f"'aup stop {eid}' as a user who can write the database")
        from aup.experiment import crashed_fix, crashed_text, scheduler_gone

        if scheduler_gone(row):  # nothing would read the request
            raise Conflict(f"{crashed_text(row)}; continue it with: "
                           f"{crashed_fix(row, self.store)}")
        self.store.request_stop(eid)
        return {"eid": eid, "stop_requested": True}

    # -- jobs ----------------------------------------------------------------------------------
    def jobs(self, eid: int, *, offset: int = 0, limit: int = 50, sort: str = "jid",
             order: str = "asc", status: Sequence[str] = (), min_score: float | None = None,
             max_score: float | None = None, fail_reason: str | None = None) -> dict[str, Any]:
        """A page of an experiment's job table, sorted and filtered in SQL.

        Args:
            sort: one of :data:`JOB_SORT_KEYS`; ``duration`` is ``end_time - start_time``.
            order: ``asc`` or ``desc``; jobs without a value (no score yet) come last.
            status: keep only these job statuses (empty: all).
            min_score, max_score: inclusive score bounds.
            fail_reason: keep only jobs that failed for this reason.

        Returns:
            ``{"total", "offset", "limit", "labels", "items"}``; each item has ``jid``, ``n``
            (absent), ``status``, ``score``, ``params``, times, ``duration``, ``n_attempts``,
            ``fail_reason``, ``detail`` (of the last attempt) and ``extras`` (the final
            multiple-result values, by label).

        Raises:
            NotFound: no experiment ``eid``.
        """
        j = s.job
        with self.engine.connect() as c:
            row = self._row(c, eid)
            where = [j.c.eid == eid, j.c.is_rerun.is_(False)]
            if status:
                where.append(j.c.status.in_(list(status)))
            if min_score is not None:
                where.append(j.c.score >= min_score)
            if max_score is not None:
                where.append(j.c.score <= max_score)
            if fail_reason:
                where.append(j.c.fail_reason == fail_reason)
            total = c.execute(select(func.count()).select_from(j).where(*where)).scalar() or 0
            key = (j.c.end_time - j.c.start_time) if sort == "duration" else j.c[sort]
            direction = key.desc() if order == "desc" else key.asc()
            ordering = [direction] if sort == "jid" else \
                [case((key.is_(None), 1), else_=0), direction, j.c.jid]
            # Two steps: sort and page the ids on the covering index ix_job_dashboard, then
            # read the wide rows (JSON parameters) of this page only.
            jids = [int(x) for x in c.execute(select(j.c.jid).where(*where)
                                              .order_by(*ordering).offset(offset).limit(limit)
                                              ).scalars()]
            by_jid = {int(r.jid): r._mapping for r in c.execute(
                select(j.c.jid, j.c.status, j.c.score, j.c.job_config, j.c.start_time,
                       j.c.end_time, j.c.n_attempts, j.c.fail_reason, j.c.budget, j.c.bracket,
                       j.c.rung)
                .where(j.c.jid.in_(jids)))} if jids else {}
            rows = [by_jid[x] for x in jids if x in by_jid]
            details = self._last_details(c, jids)
            extras = self._last_extras(c, jids)
        labels = self.labels(_loads(row["exp_config"]) or {})
        items = []
        for r in rows:
            jid = int(r["jid"])
            start, end = r["start_time"], r["end_time"]
            # a job's label values are those of its result: none without a score (a FAILED
            # job's last line, say before its crash, is not a result)
            ex = extras.get(jid, {}) if r["score"] is not None else {}
            items.append({
                "jid": jid, "status": r["status"], "score": _num(r["score"]),
                "params": config_params(_loads(r["job_config"])), "start_time": start, "end_time": end,
                "duration": (end - start) if start is not None and end is not None else None,
                "n_attempts": r["n_attempts"], "fail_reason": r["fail_reason"],
                "budget": _budget(r["budget"]), "bracket": r["bracket"], "rung": r["rung"],
                "detail": details.get(jid),
                "extras": {(labels[i - 1] if 0 < i <= len(labels) else f"value{i}"): v
                           for i, v in sorted(ex.items())},
            })
        return {"total": int(total), "offset": offset, "limit": limit, "labels": labels,
                "items": items}

    def _last_details(self, c, jids: Sequence[int]) -> dict[int, str | None]:
        if not jids:
            return {}
        a = s.job_attempt
        last = select(func.max(a.c.jaid)).where(a.c.jid.in_(list(jids))).group_by(a.c.jid)
        rows = c.execute(select(a.c.jid, a.c.detail).where(a.c.jaid.in_(last)))
        return {int(r.jid): r.detail for r in rows}

    def _last_extras(self, c, jids: Sequence[int]) -> dict[int, dict[int, float | None]]:
        """The final secondary values of each job (``is_last_result``), by label order."""
        if not jids:
            return {}
        m = s.multiple_result
        rows = c.execute(select(m.c.jid, m.c.label_order, m.c.value)
                         .where(m.c.jid.in_(list(jids)), m.c.is_last_result.is_(True)))
        out: dict[int, dict[int, float | None]] = {}
        for r in rows:
            out.setdefault(int(r.jid), {})[int(r.label_order)] = _num(r.value)
        return out

    def job(self, eid: int, jid: int) -> dict[str, Any]:
        """One job: parameters, score, attempts (with failure reasons and output tails) and
        the multiple-result values of its last result line.

        Raises:
            NotFound: no such experiment, or the job is not part of it.
        """
        j, a, m = s.job, s.job_attempt, s.multiple_result
        with self.engine.connect() as c:
            row = self._row(c, eid)
            job = c.execute(select(j).where(j.c.jid == jid, j.c.eid == eid)).first()
            if job is None:
                raise NotFound(f"no job {jid} in experiment {eid}")
            attempts = [dict(r._mapping) for r in
                        c.execute(select(a).where(a.c.jid == jid).order_by(a.c.num))]
            n_inter = c.execute(select(func.count()).select_from(s.intermediate_result)
                                .where(s.intermediate_result.c.jid == jid)).scalar()
            last_time = c.execute(select(func.max(m.c.receive_time))
                                  .where(m.c.jid == jid)).scalar()
            extras = []
            # as the job table, the export and records(): a job's label values are those of
            # its result, none without a score (trial 70: a FAILED job's last line showed here)
            if last_time is not None and job._mapping["score"] is not None:
                extras = c.execute(select(m.c.label_order, m.c.value)
                                   .where(m.c.jid == jid, m.c.receive_time == last_time)
                                   .order_by(m.c.label_order)).all()
        jm = job._mapping
        labels = self.labels(_loads(row["exp_config"]) or {})
        return {
            "jid": jid, "eid": eid, "status": jm["status"], "score": _num(jm["score"]),
            "params": config_params(_loads(jm["job_config"])), "start_time": jm["start_time"],
            "end_time": jm["end_time"], "n_attempts": jm["n_attempts"],
            "fail_reason": jm["fail_reason"], "budget": _budget(jm["budget"]), "bracket": jm["bracket"],
            "rung": jm["rung"], "n_intermediate": int(n_inter or 0),
            "is_rerun": bool(jm["is_rerun"]),
            "extras": [{"label": labels[o - 1] if 0 < o <= len(labels) else f"value{o}",
                        "value": _num(v)} for o, v in extras],
            "attempts": [{k: at[k] for k in ("num", "status", "start_time", "end_time",
                                             "exit_code", "fail_reason", "detail",
                                             "output_tail")} for at in attempts],
        }

    def log_tail(self, eid: int, jid: int, attempt: int | None = None,
                 max_bytes: int = 16384) -> dict[str, Any]:
        """The last ``max_bytes`` of a job attempt's output file.

        Only files inside the experiment's own ``<workingdir>/jobs`` directory are read; when
        the file is gone the tail stored in the database is returned instead.

        Raises:
            NotFound: no such experiment, job or attempt.
            Forbidden: the recorded path lies outside ``<workingdir>/jobs``.
        """
        a = s.job_attempt
        with self.engine.connect() as c:
            row = self._row(c, eid)
            ok = c.execute(select(s.job.c.jid).where(s.job.c.jid == jid,
                                                     s.job.c.eid == eid)).first()
            if ok is None:
                raise NotFound(f"no job {jid} in experiment {eid}")
            q = select(a.c.num, a.c.output_path, a.c.output_tail).where(a.c.jid == jid)
            q = q.where(a.c.num == attempt) if attempt is not None else \
                q.order_by(a.c.num.desc()).limit(1)
            at = c.execute(q).first()
        if at is None:
            raise NotFound(f"job {jid} has no attempt {attempt if attempt is not None else ''}"
                           .strip())
        text, source, truncated = at.output_tail or "", "database", False
        if at.output_path:
            path = self._safe_path(row.get("workingdir"), at.output_path)
            if path.is_file():
                size = path.stat().st_size
                with path.open("rb") as fh:
                    fh.seek(max(0, size - max_bytes))
                    text = fh.read(max_bytes).decode("utf-8", errors="replace")
                source, truncated = "file", size > max_bytes
        return {"jid": jid, "attempt": int(at.num), "source": source, "truncated": truncated,
                "text": text}

    @staticmethod
    def _safe_path(workingdir: str | None, output_path: str) -> Path:
        if not workingdir:
            raise Forbidden("the experiment has no recorded working directory")
        from aup.store.text import stored_path

        # a folder whose name is not valid UTF-8 is stored as readable text (caf\xe9)
        workingdir = str(stored_path(workingdir))
        jobs_dir = (Path(workingdir) / "jobs").resolve()
        path = stored_path(output_path)
        if not path.is_absolute():
            path = Path(workingdir) / path
        path = path.resolve()
        if not path.is_relative_to(jobs_dir):
            raise Forbidden(f"refusing to read {output_path}: outside {jobs_dir}")
        return path

    # -- charts --------------------------------------------------------------------------------
    def _finished(self, eid: int):
        j = s.job
        return [j.c.eid == eid, j.c.status == "FINISHED", j.c.score.is_not(None),
                j.c.is_rerun.is_(False)]

    def history(self, eid: int, *, max_points: int = 2000) -> dict[str, Any]:
        """Score per finished job and the best-so-far line, down-sampled in SQL.

        Jobs are numbered ``n = 1, 2, ...`` in jid order among the experiment's finished jobs.
        Up to ``max_points / 2`` jobs, every job is a point. Beyond, the jobs are grouped in
        ``max_points / 2`` buckets of equal job-id ranges (one GROUP BY in SQL; about ``step``
        jobs each); each bucket gives two points, its lowest and its highest score, drawn at the
        bucket's middle job (``jid`` is then None), and the best-so-far line takes the running
        best of the buckets at each bucket's last job, which is exact.

        The points are every finished job; the best-so-far line counts only the jobs at the
        experiment's largest budget (the rule of ``aup best``; hyperband's and bohb's low-budget
        scores are not comparable), so for those it starts at the first such job.

        Returns:
            ``{"target", "n_finished", "step", "points": {"n", "jid", "score", "budget"},
            "best": {"n", "jid", "score"}}`` (column lists; a point's ``budget`` is None
            without budgets and for the buckets).

        Raises:
            NotFound: no experiment ``eid``.
        """
        target = self.target(eid)
        better = max if target == "max" else min
        j = s.job
        where = self._finished(eid)
        budget = func.coalesce(j.c.budget, 0)
        points: dict[str, list] = {"n": [], "jid": [], "score": [], "budget": []}
        best: dict[str, list] = {"n": [], "jid": [], "score": []}
        with self.engine.connect() as c:
            total, lo, hi, top = c.execute(
                select(func.count(), func.min(j.c.jid), func.max(j.c.jid), func.max(budget))
                .select_from(j).where(*where)).one()
            at_top = budget == top
            total = int(total or 0)
            n_buckets = max(1, max_points // 2)
            if total <= n_buckets:
                step = 1
                # "jid + 0": number the jobs reading the covering index (then sorting narrow
                # rows) rather than walking ix_job_eid_status and the wide table rows.
                f = select(j.c.jid, j.c.score, j.c.budget, at_top.label("at_top"),
                           func.row_number().over(order_by=j.c.jid + 0).label("n")
                           ).where(*where).subquery()
                running = None
                for r in c.execute(select(f).order_by(f.c.n)):
                    score = _num(r.score)
                    if r.at_top:
                        running = score if running is None else better(running, score)
                    for d, v in ((points, score), (best, running)):
                        if v is None:  # no job at the largest budget yet: no line
                            continue
                        d["n"].append(int(r.n))
                        d["jid"].append(int(r.jid))
                        d["score"].append(v)
                    if score is not None:
                        points["budget"].append(None if r.budget is None
                                                else plain_number(r.budget))
            else:
                # Buckets of equal job-id ranges, one GROUP BY on the covering index; the job
                # numbers at the bucket edges are the running sums of the bucket counts.
                width = max(1, math.ceil((int(hi) - int(lo) + 1) / n_buckets))
                step = max(1, math.ceil(total / n_buckets))
                b = (j.c.jid - int(lo)).self_group().op("/")(width).label("b")  # integer div
                q = (select(b, func.min(j.c.score).label("lo"), func.max(j.c.score).label("hi"),
                            func.min(case((at_top, j.c.score))).label("top_lo"),
                            func.max(case((at_top, j.c.score))).label("top_hi"),
                            func.count().label("cnt"), func.max(j.c.jid).label("last_jid"))
                     .where(*where).group_by(b).order_by(b))
                running, done = None, 0
                for r in c.execute(q):
                    first, done = done + 1, done + int(r.cnt)
                    mid = (first + done) // 2
                    for v in (r.lo, r.hi) if r.lo != r.hi else (r.lo,):
                        points["n"].append(mid)
                        points["jid"].append(None)
                        points["score"].append(_num(v))
                        points["budget"].append(None)  # a bucket mixes budgets
                    edge = r.top_hi if target == "max" else r.top_lo
                    if edge is not None:
                        running = edge if running is None else better(running, edge)
                    if running is None:
                        continue
                    best["n"].append(done)
                    best["jid"].append(int(r.last_jid))
                    best["score"].append(_num(running))
        return {"eid": eid, "target": target, "n_finished": total, "step": step,
                "points": points, "best": best}

    def parallel(self, eid: int, *, max_lines: int = 1000, n_best: int = 100
                 ) -> dict[str, Any]:
        """Parameters and score of a sample of finished jobs for parallel coordinates.

        The sample is the ``n_best`` best jobs plus the first job of each range of consecutive
        job ids (as many ranges as ``max_lines - n_best``), so at most ``max_lines`` jobs.

        Returns:
            ``{"target", "n_finished", "n_shown", "dimensions": [{"name", "type", "values",
            "choices"}], "score": [...], "jid": [...]}``. Choice values are given as indices
            into ``choices``. With budgets (hyperband, bohb) the last dimension is ``budget``.

        Raises:
            NotFound: no experiment ``eid``.
        """
        exp = self.experiment_config(eid)
        target = exp["target"]
        j = s.job
        where = self._finished(eid)
        with self.engine.connect() as c:
            total = int(c.execute(select(func.count()).select_from(j).where(*where)).scalar()
                        or 0)
            n_best = min(n_best, max_lines)
            rank_order = j.c.score.desc() if target == "max" else j.c.score.asc()
            # The best jobs (ordered by the covering index), then one job (the first) per
            # range of ``width`` consecutive job ids; then the JSON parameters of those only.
            top = select(j.c.jid).where(*where)
            if total > max_lines:
                top = top.order_by(rank_order, j.c.jid).limit(n_best)
            jids = [int(x) for x in c.execute(top).scalars()]
            if total > max_lines:
                lo, hi = c.execute(select(func.min(j.c.jid), func.max(j.c.jid))
                                   .where(*where)).one()
                width = max(1, math.ceil((hi - lo + 1) / max(1, max_lines - n_best)))
                bucket = (j.c.jid - lo).self_group().op("/")(width)  # integer division
                sample = select(func.min(j.c.jid)).where(*where).group_by(bucket)
                jids = sorted(set(jids) | {int(x) for x in c.execute(sample).scalars()})
            rows = sorted(c.execute(select(j.c.jid, j.c.score, j.c.job_config, j.c.budget)
                                    .where(j.c.jid.in_(jids))).all(),
                          key=lambda r: r.jid) if jids else []
        params = exp["parameters"]
        configs = [_loads(r.job_config) or {} for r in rows]
        with_budget = any(r.budget is not None for r in rows)
        # the axes the chart adds itself: a parameter of that name is told apart
        taken = {"score", "budget"} if with_budget else {"score"}
        dims = []
        for p in params:
            vals = [cfg.get(p["name"]) for cfg in configs]
            name = f"{p['name']} (parameter)" if p["name"] in taken else p["name"]
            if p.get("type") == "choice":
                choices = list(p.get("range") or [])
                keys = [json.dumps(x) for x in choices]
                vals_i = [keys.index(json.dumps(v)) if json.dumps(v) in keys else None
                          for v in vals]
                dims.append({"name": name, "type": "choice", "log": False, "values": vals_i,
                             # as experiment.json writes them: null, true, not None,
                             # True; the string "1" quoted, apart from the number 1
                             "choices": [value_text(x) for x in choices]})
            else:
                dims.append({"name": name, "type": p.get("type"), "log": bool(p.get("log")),
                             "values": [_num(v) if isinstance(v, int | float) else None
                                        for v in vals], "choices": None})
        if with_budget:
            # hyperband/bohb: scores at different budgets are not comparable; show which is
            # which. The budgets are geometric (max_budget / eta^k): a log axis spaces them
            # evenly where a linear one squeezed all but the largest into its bottom third.
            budgets = [_num(r.budget) for r in rows]
            known = [b for b in budgets if b is not None]
            dims.append({"name": "budget", "type": "float",
                         "log": bool(known) and min(known) > 0 and max(known) >= 3 * min(known),
                         "values": budgets, "choices": None})
        return {"eid": eid, "target": target, "n_finished": total, "n_shown": len(rows),
                "dimensions": dims, "score": [_num(r.score) for r in rows],
                "jid": [int(r.jid) for r in rows]}

    def experiment_config(self, eid: int) -> dict[str, Any]:
        """The experiment's target and parameter list, from its stored configuration.

        Raises:
            NotFound: no experiment ``eid``.
        """
        with self.engine.connect() as c:
            row = c.execute(select(s.experiment.c.exp_config, s.experiment.c.target)
                            .where(s.experiment.c.eid == eid)).first()
        if row is None:
            raise NotFound(f"no experiment {eid}")
        cfg = without_password(_loads(row.exp_config) or {})
        return {"target": row.target or "max", "config": cfg, "labels": self.labels(cfg),
                "parameters": [{"name": p.get("name"), "type": p.get("type"),
                                "range": p.get("range"), "log": bool(p.get("log"))}
                               for p in cfg.get("parameter_config") or []]}

    def curves(self, eid: int, jids: Sequence[int] = (), *, n_jobs: int = 10,
               max_points: int = 200) -> dict[str, Any]:
        """Intermediate results of some jobs, at most ``max_points`` per job.

        Args:
            jids: the jobs to show; empty: the ``n_jobs`` best finished jobs (with budgets,
                those at the largest budget first) and up to ``n_jobs`` running ones.

        Returns:
            ``{"target", "jobs": [{"jid", "status", "budget", "num": [...],
            "score": [...]}]}``.

        Raises:
            NotFound: no experiment ``eid``, or a job of ``jids`` is not one of its jobs.
        """
        target = self.target(eid)
        j, ir = s.job, s.intermediate_result
        with self.engine.connect() as c:
            if jids:
                chosen = c.execute(select(j.c.jid, j.c.status, j.c.budget)
                                   .where(j.c.eid == eid, j.c.jid.in_(list(jids)))
                                   .order_by(j.c.jid)).all()
                unknown = sorted(set(jids) - {int(r.jid) for r in chosen})
                if unknown:  # as the job endpoints: an unknown job is a 404, not left out
                    raise NotFound(f"no job {', '.join(map(str, unknown))} in experiment {eid}")
            else:
                # the best by the rule of `aup best`: the largest budget first (hyperband's
                # budget-1 scores are not comparable), then the score
                order = j.c.score.desc() if target == "max" else j.c.score.asc()
                chosen = c.execute(select(j.c.jid, j.c.status, j.c.budget)
                                   .where(*self._finished(eid))
                                   .order_by(func.coalesce(j.c.budget, 0).desc(), order,
                                             j.c.jid).limit(n_jobs)).all()
                chosen += c.execute(select(j.c.jid, j.c.status, j.c.budget)
                                    .where(j.c.eid == eid, j.c.status == "RUNNING")
                                    .order_by(j.c.jid.desc()).limit(n_jobs)).all()
            status = {int(r.jid): r.status for r in chosen}
            budget = {int(r.jid): None if r.budget is None else plain_number(r.budget)
                      for r in chosen}
            out: dict[int, dict[str, Any]] = {
                jid: {"jid": jid, "status": st, "budget": budget[jid], "num": [], "score": []}
                for jid, st in status.items()}
            if status:
                rn = func.row_number().over(partition_by=ir.c.jid,
                                            order_by=(ir.c.num, ir.c.irid))
                cnt = func.count().over(partition_by=ir.c.jid)
                f = select(ir.c.jid, ir.c.num, ir.c.score, rn.label("rn"), cnt.label("cnt")
                           ).where(ir.c.jid.in_(list(status))).subquery()
                stride = (f.c.cnt + (max_points - 1)) // max_points
                q = (select(f.c.jid, f.c.num, f.c.score)
                     .where(or_(((f.c.rn - 1) % stride) == 0, f.c.rn == f.c.cnt))
                     .order_by(f.c.jid, f.c.rn))
                for r in c.execute(q):
                    d = out[int(r.jid)]
                    d["num"].append(int(r.num))
                    d["score"].append(_num(r.score))
        return {"eid": eid, "target": target, "jobs": list(out.values())}

    def compare(self, eids: Sequence[int], *, max_points: int = 1000) -> dict[str, Any]:
        """Best-so-far curves of several experiments (x: job number within each experiment).

        Raises:
            NotFound: one of the ids is unknown.
        """
        series = []
        for eid in eids:
            h = self.history(eid, max_points=max_points)
            with self.engine.connect() as c:
                name = c.execute(select(s.experiment.c.name)
                                 .where(s.experiment.c.eid == eid)).scalar()
            series.append({"eid": eid, "name": name, "target": h["target"],
                           "n_finished": h["n_finished"], "n": h["best"]["n"],
                           "best": h["best"]["score"]})
        return {"series": series}


#: The fixed columns of :func:`flat_records`, before the parameters and result labels.
EXPORT_COLUMNS = ("jid", "status", "score", "fail_reason", "detail", "start_time", "end_time",
                  "duration", "n_attempts", "budget", "bracket", "rung")


def flat_records(queries: DashboardQueries, eid: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Every job of an experiment as flat rows for CSV/JSON export.

    Returns:
        ``(columns, rows)``: the :data:`EXPORT_COLUMNS` (``jid``, ``status``, ``score``,
        ``fail_reason``, ``detail``, ``start_time``, ``end_time``, ``duration``,
        ``n_attempts``, ``budget``, ``bracket``, ``rung``), then one column per parameter
        (its name), other job-config keys (the budget as ``n_iterations``...) and one per
        ``multi_res_labels`` label. A parameter named like a fixed column gets the column
        ``param.<name>`` (with ``_`` appended while another parameter has that name), a label
        named like any other column ``result.<name>``, so no value ever hides another.

    Raises:
        NotFound: no experiment ``eid``.
    """
    exp = queries.experiment_config(eid)
    params = [p["name"] for p in exp["parameters"]]
    labels = exp["labels"]

    # Parameters keep their names; one named like a fixed column becomes param.<name>, with
    # "_" added while another parameter has that name too (a parameter named "param.score").
    param_columns = {p: p for p in params if p not in EXPORT_COLUMNS}
    taken_by_params = {*EXPORT_COLUMNS, *param_columns.values()}
    for p in params:
        if p in EXPORT_COLUMNS:
            name = f"param.{p}"
            while name in taken_by_params:
                name += "_"
            param_columns[p] = name
            taken_by_params.add(name)

    def param_column(name: str) -> str:
        return param_columns[name]

    rows: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    page, offset = 5000, 0
    while True:
        chunk = queries.jobs(eid, offset=offset, limit=page)
        for it in chunk["items"]:
            rec = {k: it[k] for k in EXPORT_COLUMNS}
            for p in params:
                rec[param_column(p)] = it["params"].get(p)
            for k, v in it["params"].items():  # job-config keys: the budget as n_iterations
                if k not in params and k not in rec and k != "job_id":
                    rec[k] = v
            rows.append(rec)
            results.append(it["extras"])
        offset += page
        if offset >= chunk["total"]:
            break
    # A label takes its own name unless any column has it (fixed, a parameter, a job-config
    # key such as n_iterations, or a renamed param.<name>): then result.<name>.
    taken = {*EXPORT_COLUMNS, *(param_column(p) for p in params)}
    for r in rows:
        taken.update(r)
    label_columns: dict[str, str] = {}
    for lab in labels:
        name = lab if lab not in taken else f"result.{lab}"
        while name in taken:
            name += "_"
        label_columns[lab] = name
        taken.add(name)
    for rec, extras in zip(rows, results, strict=True):
        for lab, name in label_columns.items():
            rec[name] = extras.get(lab)
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    if not rows:
        columns = [*EXPORT_COLUMNS, *(param_column(p) for p in params),
                   *label_columns.values()]
    return columns, rows


__all__ = ["DashboardQueries", "NotFound", "Conflict", "Forbidden", "JOB_SORT_KEYS",
           "JOB_STATUSES", "EXPERIMENT_STATUSES", "FAIL_REASONS", "flat_records"]
