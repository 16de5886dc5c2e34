"""The contract every resource keeps, run on each of them with real parts.

cpu and gpu run local subprocesses (gpu with fake ids on this CPU-only machine); node runs
over SSH against two real ``sshd`` on loopback; aws runs through moto's EC2 server on loopback
(the only mock of the suite: AWS itself cannot be reached from CI) with the local sshd standing
in for the instances; ray runs on a real local Ray head; passive is driven by a "human" thread
that runs each printed job by hand and reports with ``aup tell``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from lifecycle_helpers import alive
from resource_backends import Backend, run_experiment, run_lost_then_retried

pytest_plugins = ["fixtures_ssh", "fixtures_aws", "fixtures_ray"]

RESOURCES = ["cpu", "gpu", "node", "aws", "ray", "passive"]


@pytest.fixture(params=RESOURCES)
def backend(request, tmp_path: Path) -> Backend:
    name = request.param
    if name == "cpu":
        return Backend("cpu")
    if name == "gpu":
        return Backend("gpu", {"gpus": [3, 5]})
    if name == "passive":
        return Backend("passive", {"poll_interval": 0.1}, passive=True)
    if name == "ray":
        head = request.getfixturevalue("ray_head")
        return Backend("ray", {"address": head, "num_cpus": 1})
    servers = request.getfixturevalue("ssh_servers")
    remote = tmp_path / "remote"
    remote.mkdir()
    if name == "node":
        return Backend("node", servers.node_args(python=sys.executable), remote_wd=remote)
    aws = request.getfixturevalue("moto_ec2")
    ids = aws.instances(servers)
    return Backend("aws", aws.resource_args(servers, ids, python=sys.executable),
                   remote_wd=remote, env=aws.env)


HEAD = "import json, os, subprocess, sys, time\ncfg = json.load(open(sys.argv[-1]))\n"


def test_success(backend: Backend, tmp_path: Path) -> None:
    run = run_experiment(tmp_path / "exp", backend, HEAD + 'print("#Auptimizer:", cfg["x"] * 2)\n',
                         n_samples=3, n_parallel=2)
    assert run.result.status.value == "FINISHED", run.result.error
    jobs = run.jobs()
    assert [j["status"] for j in jobs] == ["FINISHED"] * 3
    for j in jobs:
        assert j["score"] == pytest.approx(j["job_config"]["x"] * 2)
        # The output copy is local, next to the experiment file, for every resource.
        out = run.attempts(j["jid"])[0]["output_path"]
        if not backend.passive:
            assert "#Auptimizer:" in Path(out).read_text()


def test_failure_with_exit_code(backend: Backend, tmp_path: Path) -> None:
    run = run_experiment(tmp_path / "exp", backend,
                         HEAD + 'print("#Auptimizer: 1.5")\nprint("bad things")\nsys.exit(3)\n')
    assert run.result.status.value == "FAILED"
    (job,) = run.jobs()
    assert job["status"] == "FAILED"
    (att,) = run.attempts(job["jid"])
    assert att["fail_reason"] == "NONZERO_EXIT"
    assert att["exit_code"] == 3
    assert "exited with code 3" in att["detail"]
    if not backend.passive:
        assert "bad things" in att["output_tail"]


def test_timeout(backend: Backend, tmp_path: Path) -> None:
    t0 = time.monotonic()
    run = run_experiment(tmp_path / "exp", backend, HEAD + "time.sleep(60)\n", job_timeout=2,
                         resource_args={"kill_grace": 1})
    assert time.monotonic() - t0 < 30
    (job,) = run.jobs()
    assert job["status"] == "FAILED"
    (att,) = run.attempts(job["jid"])
    assert att["fail_reason"] == "TIMEOUT"
    # node/aws: setsid's own "child ... did not exit normally" was the only line of the tail
    assert "did not exit normally" not in (att["output_tail"] or ""), att["output_tail"]
    if backend.resource in ("cpu", "gpu", "node", "aws"):
        # killed by the SIGTERM: -15 on every resource (node and aws recorded 15, setsid's
        # exit status for a wrapper killed by signal 15)
        assert att["exit_code"] == -15


STOPPABLE = HEAD + """
child = subprocess.Popen(["sleep", "60"])
with open(os.path.join(os.environ["AUP_TEST_DIR"], f"{cfg['job_id']}.pid"), "w") as f:
    f.write(str(child.pid))
time.sleep(60)
"""


def test_stop_kills_the_process_group(backend: Backend, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()

    def stopper(exp) -> None:
        end = time.monotonic() + 60
        while time.monotonic() < end and not list(marks.glob("*.pid")):
            time.sleep(0.1)
        exp.request_stop()

    t0 = time.monotonic()
    run = run_experiment(tmp_path / "exp", backend, STOPPABLE, on_start=stopper,
                         runtime_args={"env": {"AUP_TEST_DIR": str(marks)}},
                         resource_args={"kill_grace": 1})
    assert time.monotonic() - t0 < 45
    assert run.result.status.value == "STOPPED"
    (job,) = run.jobs()
    assert job["status"] == "INTERRUPTED"
    if backend.passive:
        return  # the user's own process is the user's to stop; the wait ended, that is all
    (pidfile,) = marks.glob("*.pid")
    pid = int(pidfile.read_text())
    end = time.monotonic() + 10
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.1)
    assert not alive(pid), "the job's child process survived the stop"


def test_intermediate_results_stream_live(backend: Backend, tmp_path: Path) -> None:
    script = HEAD + """
for i in range(4):
    print("#Auptimizer:", 10 - i, flush=True)
    time.sleep(0.4)
"""
    run = run_experiment(tmp_path / "exp", backend, script,
                         resource_args={"track_intermediate_results": True})
    assert run.result.status.value == "FINISHED", run.result.error
    (job,) = run.jobs()
    assert job["score"] == 7
    rows = run.store.intermediate(job["jid"])
    assert [r["score"] for r in rows] == [10, 9, 8, 7]
    times = [r["receive_time"] for r in rows]
    # Received while the job ran (0.4 s apart), not all at its end.
    assert times[-1] - times[0] > 0.6


def test_retry_on_another_slot(backend: Backend, tmp_path: Path) -> None:
    script = HEAD + """
if os.environ["AUP_ATTEMPT"] == "0":
    print("first attempt fails")
    sys.exit(1)
print("#Auptimizer: 0.25")
"""
    run = run_experiment(tmp_path / "exp", backend, script,
                         n_parallel=2, job_failure={"job_retries": 1, "ignore_fail": False})
    assert run.result.status.value == "FINISHED", run.result.error
    (job,) = run.jobs()
    assert job["status"] == "FINISHED" and job["score"] == 0.25
    a0, a1 = run.attempts(job["jid"])
    assert a0["fail_reason"] == "NONZERO_EXIT" and a1["status"] == "SUCCEEDED"
    jid = job["jid"]
    assert run.slots[(jid, 0)] != run.slots[(jid, 1)], "the retry ran on the same slot"


def test_environment_isolation(backend: Backend, tmp_path: Path) -> None:
    script = HEAD + """
bad = []
if os.environ.get("AUP_TEST_FLAVOUR") != "mint":
    bad.append("runtime_args.env missing")
if os.environ.get("AUP_JOB_ID") != str(cfg["job_id"]):
    bad.append("AUP_JOB_ID wrong")
if os.environ.get("AUP_TEST_LEAK"):
    bad.append("saw another job's variable")
print("CVD=" + os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))
os.environ["AUP_TEST_LEAK"] = "1"
if bad:
    print(bad)
    sys.exit(4)
time.sleep(0.3)
print("#Auptimizer: 1")
"""
    before = dict(os.environ)
    run = run_experiment(tmp_path / "exp", backend, script, n_samples=4, n_parallel=2,
                         runtime_args={"env": {"AUP_TEST_FLAVOUR": "mint"}})
    assert run.result.status.value == "FINISHED", run.result.error
    assert [j["status"] for j in run.jobs()] == ["FINISHED"] * 4
    assert run.env_changes == {}, "the scheduler's environment changed during the run"
    assert "AUP_TEST_FLAVOUR" not in os.environ and dict(os.environ) == before
    if backend.resource == "gpu":
        for j in run.jobs():
            (att,) = run.attempts(j["jid"])
            text = Path(att["output_path"]).read_text()
            assert f"CVD={_resource_name(run.store, att['rid'])}\n" in text
    if backend.resource == "cpu":
        for j in run.jobs():
            assert "CVD=\n" in Path(run.attempts(j["jid"])[0]["output_path"]).read_text()


def _resource_name(store, rid: int) -> str:
    from sqlalchemy import select

    from aup.store import schema

    with store.engine.connect() as c:
        return c.execute(select(schema.resource.c.name).where(schema.resource.c.rid == rid)
                         ).scalar()


def test_two_concurrent_jobs_never_share_a_gpu_slot(tmp_path: Path) -> None:
    """gpu: an id listed twice gives two slots; each running job holds its own slot."""
    marks = tmp_path / "marks"
    marks.mkdir()
    script = HEAD + """
slot = os.environ["CUDA_VISIBLE_DEVICES"]
print("CVD=" + slot)
time.sleep(0.3)
print("#Auptimizer: 1")
"""
    backend = Backend("gpu", {"gpus": [0, 0, 1]})
    run = run_experiment(tmp_path / "exp", backend, script, n_samples=6, n_parallel=3)
    assert run.result.status.value == "FINISHED", run.result.error
    seen = []
    for j in run.jobs():
        (att,) = run.attempts(j["jid"])
        text = Path(att["output_path"]).read_text()
        seen.append(text.split("CVD=")[1].split()[0])
    assert set(seen) == {"0", "1"}
    # 3 slots, 6 jobs of 0.3 s: ran 3 at a time.
    starts = sorted((a["start_time"], a["end_time"]) for j in run.jobs()
                    for a in run.attempts(j["jid"]))
    overlap = max(sum(1 for s, e in starts if s <= t < e) for t, _ in starts)
    assert overlap == 3


def test_ray_job_that_no_node_can_place_is_refused(ray_head, tmp_path: Path) -> None:
    """A 2-CPU, 0-GPU cluster cannot give a job 1 GPU: error before any job, not a hang."""
    from aup.errors import AupError

    backend = Backend("ray", {"address": ray_head, "num_gpus": 1})
    with pytest.raises(AupError, match=r"num_gpus=1 for one job .*GPU: 0"):
        run_experiment(tmp_path / "exp", backend, HEAD + "print('#Auptimizer: 1')\n")


def test_ray_without_address_next_to_a_running_cluster(ray_head, tmp_path: Path,
                                                       monkeypatch) -> None:
    """Trial 37: without "address", ray.init(num_cpus=...) attached to the cluster that
    RAY_ADDRESS (or a 'ray start' on this machine) names, and Ray refused: "When connecting to
    an existing cluster, num_cpus and num_gpus must not be provided". RAY_ADDRESS is now the
    address, as for Ray itself."""
    monkeypatch.setenv("RAY_ADDRESS", ray_head)
    backend = Backend("ray", {"num_cpus": 1})
    run = run_experiment(tmp_path / "exp", backend, HEAD + "print('#Auptimizer: 1')\n",
                         n_samples=2)
    assert run.result.status.value == "FINISHED", run.result.error
    assert [j["status"] for j in run.jobs()] == ["FINISHED", "FINISHED"]


def test_ray_worker_death_is_lost_and_retried(ray_head, tmp_path: Path) -> None:
    """The first attempt kills its Ray worker: the attempt is LOST, the retry succeeds."""
    script = HEAD + """
import signal
if os.environ["AUP_ATTEMPT"] == "0":
    os.kill(os.getppid(), signal.SIGKILL)  # the Ray worker running the task
    time.sleep(5)
    sys.exit(0)
print("#Auptimizer: 0.5")
"""
    backend = Backend("ray", {"address": ray_head, "num_cpus": 1})
    run_lost_then_retried(tmp_path / "exp", backend, script)


CURVES = HEAD + """
q = cfg["q"]
for i in range(1, 16):
    print("#Auptimizer:", q + 1.0 / i, flush=True)
    time.sleep(0.25 if q > 1 else 0.03)  # the bad job leaves time to be stopped
"""


def test_early_stopping_stops_the_bad_job(backend: Backend, tmp_path: Path) -> None:
    """Results arrive live, so the median policy stops the bad job before its end."""
    es = {"aup_policy": "median", "aup_policy_steps": 5}
    run = run_experiment(tmp_path / "exp", backend, CURVES, proposer="sequence",
                         parameter_config=[{"name": "q", "type": "choice",
                                            "range": [0.0, -0.05, 8.0]}],
                         resource_args={"early_stop": es, "kill_grace": 1})
    assert run.result.status.value == "FINISHED", run.result.error
    good1, good2, bad = run.jobs()
    assert good1["status"] == good2["status"] == "FINISHED"
    assert bad["status"] == "EARLY_STOPPED"
    n = len(run.store.intermediate(bad["jid"]))
    assert 5 <= n < 15


def test_ray_runtime_env_refused_by_ray_is_named_as_such(ray_head, tmp_path: Path) -> None:
    """Trial 57: a runtime_env that Ray refuses said 'cannot connect to the Ray cluster',
    blaming a cluster that was fine."""
    from aup.errors import AupError

    backend = Backend("ray", {"address": ray_head,
                              "runtime_env": {"py_modules": ["/nonexistent/mod"]}})
    with pytest.raises(AupError, match=r"Ray refused the runtime environment \(resource_args"
                                       r"\.runtime_env") as info:
        run_experiment(tmp_path / "exp", backend, HEAD + "print('#Auptimizer: 1')\n")
    assert "cannot connect" not in str(info.value)


def test_a_dead_ray_address_from_the_environment_names_that_variable(tmp_path: Path,
                                                                     monkeypatch) -> None:
    """Trial 57: an address from RAY_ADDRESS that does not answer said 'fix
    resource_args.address', a key the user never set."""
    pytest.importorskip("ray")
    from fixtures_ssh import free_port

    from aup.errors import AupError

    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")
    with pytest.raises(AupError, match="does not answer .*or fix the RAY_ADDRESS variable"):
        run_experiment(tmp_path / "exp", Backend("ray", {}), HEAD + "print('#Auptimizer: 1')\n")
