"""Database schema (SQLAlchemy Core).

Table names and their original columns follow Auptimizer 2.0 (``user``, ``resource``,
``experiment``, ``job``, ``job_attempt``, ``intermediate_result``, ``multiple_result``); the
columns we need on top are added (statuses, failure reasons, budgets, proposer state, stop
requests). Times are Unix epoch seconds as floats (2.0 used whole seconds).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

from aup.store.text import readable_text

#: The largest id an Auptimizer database holds: ids are INTEGER columns, 32-bit on PostgreSQL
#: (SQLite's are 64-bit, but a database must move between the two). A larger number is no id:
#: queries with it would fail on PostgreSQL ("integer out of range") instead of finding nothing.
MAX_ID = 2**31 - 1

#: Bumped whenever the schema changes; migrations bring older databases up to it.
SCHEMA_VERSION = 1



class NulFreeText(TypeDecorator):
    """``TEXT`` that never stores a NUL character: each one is written as U+FFFD.

    PostgreSQL's text columns cannot hold NUL (``DataError``), and a job's output (its tail and
    the exception line quoted in a failure's detail) may contain one; SQLite could store it,
    but then the two backends would show different records. Reads are unchanged; the DDL is
    plain ``TEXT`` (a migration sees no difference).
    """

    impl = Text
    cache_ok = True

    @staticmethod
    def clean(value: object) -> object:
        """The value to store: ``str`` values with NUL replaced and made storable
        (:func:`aup.store.text.readable_text`: a path that is not valid UTF-8 would fail the
        whole write), anything else as is."""
        if isinstance(value, str) and "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        return readable_text(value) if isinstance(value, str) else value

    def process_bind_param(self, value: object, dialect: object) -> object:
        """SQLAlchemy's bind hook: :meth:`clean`."""
        return self.clean(value)


metadata = MetaData()

user = Table(
    "user", metadata,
    Column("uid", Integer, primary_key=True),
    Column("name", String(255), unique=True, nullable=False),
    Column("permission", String(32), nullable=False, default="all"),
)

resource = Table(
    "resource", metadata,
    Column("rid", Integer, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("type", String(32), nullable=False),
    Column("status", String(16), nullable=False, default="free"),
    Index("ix_resource_type_name", "type", "name", unique=True),
)

experiment = Table(
    "experiment", metadata,
    Column("eid", Integer, primary_key=True, autoincrement=True),
    Column("uid", Integer, ForeignKey("user.uid"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("start_time", Float),
    Column("end_time", Float),
    # CREATED, RUNNING, STOPPED, FINISHED, FAILED (see aup.experiment.ExperimentStatus)
    Column("status", String(16), nullable=False),
    Column("exp_config", NulFreeText, nullable=False),
    Column("error_msg", NulFreeText),
    # -- added in Auptimizer 3 --
    Column("proposer", String(64)),
    Column("target", String(8)),
    Column("n_total", Integer),
    Column("proposer_state", NulFreeText),
    Column("stop_requested", Boolean, nullable=False, default=False),
    Column("config_path", NulFreeText),
    Column("workingdir", NulFreeText),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("heartbeat", Float),
)

job = Table(
    "job", metadata,
    Column("jid", Integer, primary_key=True, autoincrement=True),
    Column("score", Float),
    Column("eid", Integer, ForeignKey("experiment.eid"), nullable=False),
    Column("start_time", Float),
    Column("end_time", Float),
    # RUNNING, FINISHED, FAILED, EARLY_STOPPED, INTERRUPTED (aup.job.JobStatus)
    Column("status", String(16), nullable=False),
    Column("job_config", NulFreeText, nullable=False),
    # -- added in Auptimizer 3 --
    Column("proposal", NulFreeText),
    Column("budget", Float),
    Column("bracket", Integer),
    Column("rung", Integer),
    Column("fail_reason", String(32)),
    Column("n_attempts", Integer, nullable=False, default=0),
    Column("is_rerun", Boolean, nullable=False, default=False),
    Index("ix_job_eid_status", "eid", "status"),
    Index("ix_job_eid_score", "eid", "score"),
    # Covering index of the dashboard: experiment counts, best scores, history and every sort
    # of the job table read only this index (100,000 jobs: tens of ms instead of seconds).
    Index("ix_job_dashboard", "eid", "is_rerun", "status", "score", "start_time", "end_time",
          "n_attempts"),
)

job_attempt = Table(
    "job_attempt", metadata,
    Column("jaid", Integer, primary_key=True, autoincrement=True),
    Column("jid", Integer, ForeignKey("job.jid"), nullable=False),
    Column("num", Integer, nullable=False),
    Column("rid", Integer, ForeignKey("resource.rid")),
    Column("start_time", Float),
    Column("end_time", Float),
    # -- added in Auptimizer 3 --
    # RUNNING, SUCCEEDED, FAILED, EARLY_STOPPED, STOPPED, LOST (aup.job.AttemptStatus)
    Column("status", String(16), nullable=False, default="RUNNING"),
    Column("exit_code", Integer),
    Column("fail_reason", String(32)),
    Column("detail", NulFreeText),
    Column("output_tail", NulFreeText),
    Column("output_path", NulFreeText),
    Index("ix_job_attempt_jid", "jid"),
)

intermediate_result = Table(
    "intermediate_result", metadata,
    Column("irid", Integer, primary_key=True, autoincrement=True),
    Column("num", Integer, nullable=False),
    Column("score", Float),
    Column("jid", Integer, ForeignKey("job.jid"), nullable=False),
    Column("receive_time", Float),
    Index("ix_intermediate_result_jid", "jid", "num"),
)

multiple_result = Table(
    "multiple_result", metadata,
    Column("mrid", Integer, primary_key=True, autoincrement=True),
    Column("label_order", Integer, nullable=False),
    Column("value", Float),
    Column("receive_time", Float),
    Column("jid", Integer, ForeignKey("job.jid"), nullable=False),
    Column("irid", Integer, ForeignKey("intermediate_result.irid")),
    Column("eid", Integer, ForeignKey("experiment.eid"), nullable=False),
    Column("is_last_result", Boolean, nullable=False, default=False),
    Index("ix_multiple_result_jid", "jid"),
)

#: Results sent by hand for jobs of the ``passive`` resource (``aup tell``), read by the
#: experiment process. ``final`` false = an intermediate result; ``exit_code`` set = the user
#: reports that the job failed with that code.
told_result = Table(
    "told_result", metadata,
    Column("tid", Integer, primary_key=True, autoincrement=True),
    Column("jid", Integer, ForeignKey("job.jid"), nullable=False),
    Column("vals", NulFreeText),
    Column("final", Boolean, nullable=False, default=True),
    Column("exit_code", Integer),
    Column("time", Float),
    Index("ix_told_result_jid", "jid", "tid"),
)

schema_info = Table(
    "aup_schema", metadata,
    Column("version", Integer, primary_key=True),
)
