"""The advice that ends the summary of a failed run names the likely fix."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from aup.api import resolve_db_url
from aup.cli import EXIT_FAILED, _print_summary
from aup.experiment import ExperimentResult, ExperimentStatus


def _summary(error: str) -> tuple[int, str]:
    out = io.StringIO()
    exp = SimpleNamespace(
        config=SimpleNamespace(experiment_name="e",
                               job_failure=SimpleNamespace(ignore_fail=False)),
        store=SimpleNamespace(url=resolve_db_url(None), histories=lambda eid, statuses: {}),
        saved_model=None)
    result = ExperimentResult(eid=1, status=ExperimentStatus.FAILED, best=None, n_jobs=4,
                              n_finished=2, n_failed=1, n_early_stopped=0, error=error)
    rc = _print_summary(Console(file=out, width=400), exp, result)
    return rc, " ".join(out.getvalue().split())


@pytest.mark.parametrize("reason", ["LOST", "RESOURCE_ERROR"])
def test_a_job_failed_by_a_lost_node_connection_gets_the_job_retries_advice(reason):
    # trial 54: an sshd restart failed a job (LOST) and the advice was to fix the script
    rc, text = _summary(f"job 3 attempt 0 failed ({reason}): node u@h:22: connection lost "
                        "while the job ran")
    assert rc == EXIT_FAILED
    assert "resume with: aup resume 1 (once the nodes answer again" in text
    assert '"job_retries": 2' in text and "fixing the cause in the script" not in text


def test_a_job_that_failed_by_itself_gets_the_script_advice():
    rc, text = _summary("job 3 attempt 0 failed (NONZERO_EXIT): exit code 1")
    assert rc == EXIT_FAILED
    assert "after fixing the cause in the script or its data" in text
    assert '"ignore_fail": true' in text and "job_retries\": 2" not in text


def test_a_2_0_job_failure_block_without_job_retries_is_named_when_jobs_fail(tmp_path):
    """Trial 56: 2.0 retried 3 times when a job_failure block was present; here the default is
    0 and a 2.0 file lost its retries without a word."""
    from conftest import run_cli, write_experiment, write_script

    write_script(tmp_path, "job.py", "import json, sys\nx = json.load(open(sys.argv[-1]))['x']\n"
                                     "sys.exit('boom') if x == 0 else print('#Auptimizer:', x)\n")
    x = [{"name": "x", "type": "choice", "range": [0, 1]}]
    exp = write_experiment(tmp_path, script="job.py", proposer="sequence", parameter_config=x,
                           job_failure={"ignore_fail": True})
    res = run_cli(str(exp), cwd=tmp_path)
    text = " ".join(res.stdout.split())
    assert res.returncode == 0, res.stdout + res.stderr  # ignore_fail: FINISHED
    assert "note: failed jobs were not retried: job_failure sets no job_retries" in text, text
    assert '"job_retries": 3' in text
    exp = write_experiment(tmp_path, "explicit.json", script="job.py", proposer="sequence",
                           parameter_config=x, job_failure={"ignore_fail": True,
                                                            "job_retries": 0})
    res = run_cli(str(exp), cwd=tmp_path)
    assert res.returncode == 0 and "were not retried" not in res.stdout, res.stdout
    # trial 65: a NaN loss fails again on a retry of the same configuration: no advice
    write_script(tmp_path, "nan.py", "import json, sys\nx = json.load(open(sys.argv[-1]))['x']"
                                     "\nprint('#Auptimizer:', 'nan' if x == 0 else x)\n")
    exp = write_experiment(tmp_path, "nan.json", script="nan.py", proposer="sequence",
                           parameter_config=x, job_failure={"ignore_fail": True})
    res = run_cli(str(exp), cwd=tmp_path)
    assert res.returncode == 0 and "failed 1" in res.stdout, res.stdout + res.stderr
    assert "were not retried" not in res.stdout, res.stdout


def _ray_summary(error: str, retries: int) -> str:
    out = io.StringIO()
    exp = SimpleNamespace(
        config=SimpleNamespace(experiment_name="e", resource="ray",
                               job_failure=SimpleNamespace(ignore_fail=False,
                                                           job_retries=retries)),
        store=SimpleNamespace(url=resolve_db_url(None), histories=lambda eid, statuses: {}),
        saved_model=None)
    result = ExperimentResult(eid=1, status=ExperimentStatus.FAILED, best=None, n_jobs=2,
                              n_finished=0, n_failed=0, n_early_stopped=0, error=error)
    _print_summary(Console(file=out, width=400), exp, result)
    return " ".join(out.getvalue().split())


def test_a_ray_failure_gets_ray_advice_and_the_keys_a_ray_resume_takes():
    """Trial 57: a Ray runtime environment that cannot be set up got the SSH advice ('once
    the nodes answer again', 'add job_retries 2' with job_retries set already), and the
    resume after fixing runtime_env kept the broken one."""
    text = _ray_summary("job 3 attempt 0 failed (RESOURCE_ERROR): Ray could not set up the "
                        "runtime environment: ValueError: no conda", retries=0)
    assert "after fixing what the error names (resource_args.runtime_env" in text, text
    assert "nodes" not in text
    assert ("resume takes the edited job_failure, job_timeout, n_parallel, "
            "resource_args.address and resource_args.runtime_env") in text, text
    text = _ray_summary("job 3 attempt 1 failed (LOST): the worker died", retries=1)
    assert "once the Ray cluster answers again" in text and "raise job_retries (now 1)" in text
