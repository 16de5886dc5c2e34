"""Response models of the dashboard's REST API (they document ``/openapi.json``).

Times are Unix epoch seconds; scores are in the script's direction (``target`` says whether
higher or lower is better); a missing or non-finite value is null.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

Number = float | None
#: A budget: an int when whole (as the job got it: 9, not 9.0), else a float.
Budget = int | float | None


class Error(BaseModel):
    """An error: what is wrong and how to fix it."""

    detail: str


class Settings(BaseModel):
    """What the pages need to know about the server."""

    refresh_seconds: float
    job_statuses: list[str]
    experiment_statuses: list[str]
    job_sort_keys: list[str]
    max_compared: int = Field(description="the most experiments /compare takes at once")


class ExperimentSummary(BaseModel):
    """One experiment with its job counts and best score."""

    eid: int
    name: str
    user: str | None = Field(default=None, description="the user who ran it (env.ini's user, "
                             "--user, else $USER)")
    status: str = Field(description="CREATED, RUNNING, STOPPED, FINISHED or FAILED")
    proposer: str | None
    target: str = Field(description="min or max")
    n_total: int | None = Field(description="jobs the proposer will run (null: unknown)")
    n_jobs: int
    n_running: int
    n_finished: int
    n_failed: int
    n_early_stopped: int
    n_interrupted: int
    n_done: int = Field(description="finished + failed + early-stopped")
    progress: Number = Field(description="n_done / n_total, 0..1")
    best_score: Number
    best_budget: Budget = Field(default=None, description="budget of the best job (hyperband, "
                                "bohb); null without budgets")
    largest_budget_run: Budget = Field(default=None, description="largest budget any job ran "
                                       "at, failed ones too; a best_budget below it means "
                                       "the best score is not from the largest budget")
    start_time: Number
    end_time: Number
    stop_requested: bool
    error_msg: str | None
    resource: str | None
    n_parallel: int | None
    heartbeat: Number
    host: str | None
    stale: bool = Field(description="RUNNING but no heartbeat for 30 s (process gone?)")


class ExperimentPage(BaseModel):
    """A page of experiments, newest first."""

    total: int
    offset: int
    limit: int
    items: list[ExperimentSummary]


class Parameter(BaseModel):
    """A parameter of the search space."""

    name: str | None
    type: str | None
    range: Any = None
    log: bool = False


class BestJob(BaseModel):
    """The best finished job."""

    jid: int
    score: Number
    params: dict[str, Any]
    end_time: Number


class ExperimentDetail(ExperimentSummary):
    """One experiment with its configuration and best job."""

    config: dict[str, Any]
    workingdir: str | None
    config_path: str | None
    parameters: list[Parameter]
    labels: list[str] = Field(description="multi_res_labels")
    best_job: BestJob | None


class StopAnswer(BaseModel):
    """The stop request was recorded."""

    eid: int
    stop_requested: bool


class JobRow(BaseModel):
    """A row of the job table."""

    jid: int
    status: str
    score: Number
    params: dict[str, Any]
    start_time: Number
    end_time: Number
    duration: Number = Field(description="seconds")
    n_attempts: int | None
    fail_reason: str | None
    budget: Budget
    bracket: int | None = Field(default=None, description="hyperband/bohb bracket")
    rung: int | None = Field(default=None, description="hyperband/bohb rung")
    detail: str | None = Field(description="how the last attempt ended")
    extras: dict[str, Number] = Field(description="final multiple-result values by label")


class JobPage(BaseModel):
    """A page of the job table."""

    total: int
    offset: int
    limit: int
    labels: list[str]
    items: list[JobRow]


class Attempt(BaseModel):
    """One attempt of a job."""

    num: int
    status: str
    start_time: Number
    end_time: Number
    exit_code: int | None
    fail_reason: str | None
    detail: str | None
    output_tail: str | None


class Extra(BaseModel):
    """One multiple-result value."""

    label: str
    value: Number


class JobDetail(BaseModel):
    """One job with its attempts."""

    jid: int
    eid: int
    status: str
    score: Number
    params: dict[str, Any]
    start_time: Number
    end_time: Number
    n_attempts: int | None
    fail_reason: str | None
    budget: Budget
    bracket: int | None
    rung: int | None
    n_intermediate: int
    extras: list[Extra]
    attempts: list[Attempt]
    is_rerun: bool = Field(default=False, description="the save_model re-run of the best job "
                           "(not in the job table; its bracket and rung are the best job's)")


class LogTail(BaseModel):
    """The end of an attempt's output."""

    jid: int
    attempt: int
    source: str = Field(description="file, or database when the file is gone")
    truncated: bool
    text: str


class Series(BaseModel):
    """Columns of a chart: job number, job id (null for a bucket), score."""

    n: list[int]
    jid: list[int | None]
    score: list[Number]


class Points(Series):
    """The score points, with each job's budget (null without budgets, and for a bucket)."""

    budget: list[Budget]


class History(BaseModel):
    """Score per finished job and best so far, down-sampled."""

    eid: int
    target: str
    n_finished: int
    step: int = Field(description="jobs per bucket (1: every job is a point)")
    points: Points
    best: Series


class Dimension(BaseModel):
    """One axis of the parallel coordinates."""

    name: str | None
    type: str | None
    log: bool = Field(False, description="a log-scale parameter (draw its axis in log10)")
    values: list[Number | int | None]
    choices: list[str] | None = Field(description="for choice parameters: values are indices")


class Parallel(BaseModel):
    """Parameters and scores of a sample of finished jobs."""

    eid: int
    target: str
    n_finished: int
    n_shown: int
    dimensions: list[Dimension]
    score: list[Number]
    jid: list[int]


class Curve(BaseModel):
    """Intermediate results of one job."""

    jid: int
    status: str
    budget: Budget = Field(default=None, description="the job's budget (hyperband, bohb)")
    num: list[int]
    score: list[Number]


class Curves(BaseModel):
    """Intermediate results of some jobs."""

    eid: int
    target: str
    jobs: list[Curve]


class CompareSeries(BaseModel):
    """Best-so-far curve of one experiment."""

    eid: int
    name: str | None
    target: str
    n_finished: int
    n: list[int]
    best: list[Number]


class Compare(BaseModel):
    """Best-so-far curves of several experiments."""

    series: list[CompareSeries]
