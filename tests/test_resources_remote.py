"""node (SSH), aws and ray specifics: bad input found before any job, uploads, pre/post
scripts, copies of the job files, a lost connection retried on another node, instances started
and stopped. Real sshd and a real Ray head; EC2 is moto's server (the suite's only mock, AWS
cannot be reached from CI)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli
from resource_backends import Backend, make_experiment, run_experiment, run_lost_then_retried

from aup.config import load_config
from aup.errors import AupError

pytest_plugins = ["fixtures_ssh", "fixtures_aws"]

OK = "import json, sys\ncfg = json.load(open(sys.argv[-1]))\nprint('#Auptimizer:', cfg['x'])\n"


def _prepare(tmp_path: Path, resource: str, args: dict, remote: Path | None = None):
    """Build the resource manager of an experiment and call prepare()."""
    from aup.resources import registry

    backend = Backend(resource, args, remote_wd=remote)
    path = make_experiment(tmp_path / "exp", backend, OK)
    config = load_config(path)
    rm = registry.get(resource)(config, queue.Queue())
    try:
        rm.prepare()
    finally:
        rm.close()


def _node(servers, tmp_path: Path, **extra) -> Backend:
    remote = tmp_path / "remote"
    remote.mkdir(exist_ok=True)
    return Backend("node", servers.node_args(python=sys.executable, **extra), remote_wd=remote)


# -- node: bad input ----------------------------------------------------------------------------
def test_unreachable_host_is_named_before_any_job(ssh_servers, tmp_path: Path) -> None:
    from fixtures_ssh import free_port

    port = free_port()
    args = ssh_servers.node_args(nodes=[f"{ssh_servers.user}@127.0.0.1:{port} "
                                        f"{ssh_servers.key}"])
    (tmp_path / "remote").mkdir()
    with pytest.raises(AupError, match=rf"127\.0\.0\.1:{port}.*cannot connect"):
        _prepare(tmp_path, "node", args, tmp_path / "remote")


def test_every_node_that_is_not_ready_is_named_at_once(ssh_servers, tmp_path: Path) -> None:
    """Trial 37: only the first node with a problem was named, so two bad nodes took two
    runs to find; the good node between them is not named."""
    from fixtures_ssh import free_port

    good = ssh_servers.entries()[0]
    ports = [free_port(), free_port()]
    args = ssh_servers.node_args(nodes=[f"{ssh_servers.user}@127.0.0.1:{ports[0]} "
                                        f"{ssh_servers.key}", good,
                                        f"{ssh_servers.user}@127.0.0.1:{ports[1]} "
                                        f"{ssh_servers.key}"])
    (tmp_path / "remote").mkdir()
    with pytest.raises(AupError, match="2 nodes are not ready") as err:
        _prepare(tmp_path, "node", args, tmp_path / "remote")
    text = str(err.value)
    assert all(f"127.0.0.1:{p}" in text for p in ports), text
    assert good.split()[0] not in text, text


def test_wrong_key_is_refused_with_the_host_named(ssh_servers, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    port = ssh_servers.ports[0]
    args = ssh_servers.node_args(nodes=[f"{ssh_servers.user}@127.0.0.1:{port} {other}"])
    (tmp_path / "remote").mkdir()
    with pytest.raises(AupError, match=rf"127\.0\.0\.1:{port}: authentication refused"):
        _prepare(tmp_path, "node", args, tmp_path / "remote")


def test_a_key_file_that_is_not_a_private_key_is_named(ssh_servers, tmp_path: Path) -> None:
    # The error was "SSH error: not a valid OPENSSH private key file", naming no file.
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    port = ssh_servers.ports[0]
    public = f"{other}.pub"
    args = ssh_servers.node_args(nodes=[f"{ssh_servers.user}@127.0.0.1:{port} {public}"])
    (tmp_path / "remote").mkdir()
    with pytest.raises(AupError, match=rf"the key file {public} cannot be used .*not the \.pub"):
        _prepare(tmp_path, "node", args, tmp_path / "remote")


def test_missing_remote_workingdir(ssh_servers, tmp_path: Path) -> None:
    with pytest.raises(AupError, match="remote workingdir .*does not exist"):
        _prepare(tmp_path, "node", ssh_servers.node_args(), tmp_path / "nowhere")


def test_unknown_host_key_is_refused_unless_checking_is_off(ssh_servers, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    (tmp_path / "remote").mkdir()
    with pytest.raises(AupError, match="host key is not in .*ssh-keyscan"):
        _prepare(tmp_path, "node", ssh_servers.node_args(known_hosts=str(empty)),
                 tmp_path / "remote")
    # Explicitly turned off: connects (trust on first use, nothing saved).
    _prepare(tmp_path / "b", "node", ssh_servers.node_args(known_hosts=str(empty),
                                                           check_host_keys=False),
             tmp_path / "remote")
    assert empty.read_text() == ""


def test_malformed_node_entry_is_a_config_error_exit_2(tmp_path: Path) -> None:
    backend = Backend("node", {"nodes": ["127.0.0.1:22"]}, remote_wd=Path("/tmp"))
    path = make_experiment(tmp_path, backend, OK)
    res = run_cli("run", str(path), cwd=tmp_path)
    assert res.returncode == 2
    assert "resource_args.nodes" in res.stderr + res.stdout
    assert "Traceback" not in res.stderr


def test_unreachable_node_from_the_cli_fails_cleanly(ssh_servers, tmp_path: Path) -> None:
    from fixtures_ssh import free_port

    port = free_port()
    remote = tmp_path / "remote"
    remote.mkdir()
    backend = Backend("node", ssh_servers.node_args(
        nodes=[f"{ssh_servers.user}@127.0.0.1:{port} {ssh_servers.key}"]), remote_wd=remote)
    path = make_experiment(tmp_path / "exp", backend, OK)
    res = run_cli("run", str(path), cwd=tmp_path / "exp")
    assert res.returncode == 2  # checked before anything is recorded
    assert f"127.0.0.1:{port}" in res.stderr + res.stdout
    assert "Traceback" not in res.stderr
    import sqlite3

    db = tmp_path / "exp" / ".aup" / "sqlite3.db"
    if db.exists():
        assert sqlite3.connect(db).execute("SELECT count(*) FROM experiment").fetchone()[0] == 0


# -- node: running ------------------------------------------------------------------------------
def test_job_files_remote_and_local_and_prescript_postscript(ssh_servers, tmp_path) -> None:
    backend = _node(ssh_servers, tmp_path)
    script = OK.replace("print(", "import os\nassert os.environ['AUP_PRE'] == 'yes'\nprint(")
    run = run_experiment(tmp_path / "exp", backend, script, runtime_args={
        "prescript": "export AUP_PRE=yes; echo pre > pre.txt",
        "postscript": 'echo "post $aup_rc" > post.txt'})
    assert run.result.status.value == "FINISHED", run.result.error
    (job,) = run.jobs()
    jid = job["jid"]
    remote = backend.remote_wd
    assert (remote / "pre.txt").read_text() == "pre\n"
    assert (remote / "post.txt").read_text() == "post 0\n"
    assert json.loads((remote / "jobs" / f"{jid}.json").read_text())["job_id"] == jid
    assert "#Auptimizer:" in (remote / "jobs" / f"{jid}.0.out").read_text()
    local = tmp_path / "exp" / "jobs"
    assert json.loads((local / f"{jid}.json").read_text())["job_id"] == jid
    assert "#Auptimizer:" in (local / f"{jid}.0.out").read_text()
    assert (remote / "job.py").is_file()  # uploaded


def test_script_uploaded_only_when_missing_or_overwrite(ssh_servers, tmp_path: Path) -> None:
    backend = _node(ssh_servers, tmp_path)
    remote = backend.remote_wd
    (remote / "job.py").write_text("print('#Auptimizer: 111')\n")
    run = run_experiment(tmp_path / "exp", backend, "print('#Auptimizer: 222')\n")
    assert run.jobs()[0]["score"] == 111  # the remote copy was kept
    run = run_experiment(tmp_path / "exp2", backend, "print('#Auptimizer: 222')\n",
                         runtime_args={"overwrite": True})
    assert run.jobs()[0]["score"] == 222
    assert "222" in (remote / "job.py").read_text()


KILL_MY_CONNECTION = """
import json, os, signal, sys, time
cfg = json.load(open(sys.argv[-1]))
if os.environ["AUP_ATTEMPT"] == "0":
    pid = os.getpid()
    while pid > 1:  # the nearest sshd ancestor is this connection's session process
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        pid = int(fields[1])
        with open(f"/proc/{pid}/comm") as f:
            if f.read().startswith("sshd"):
                os.kill(pid, signal.SIGKILL)
                break
    time.sleep(30)
print("#Auptimizer: 0.5")
"""


def test_lost_connection_is_retried_on_the_other_node(ssh_servers, tmp_path: Path) -> None:
    backend = _node(ssh_servers, tmp_path)
    run, job = run_lost_then_retried(tmp_path / "exp", backend, KILL_MY_CONNECTION)
    assert run.slots[(job["jid"], 0)] != run.slots[(job["jid"], 1)]


# -- aws ----------------------------------------------------------------------------------------
def test_unknown_instance_id_is_named(ssh_servers, moto_ec2, tmp_path: Path) -> None:
    ids = moto_ec2.instances(ssh_servers, stopped=0)
    bad = "i-0123456789abcdef0"
    args = moto_ec2.resource_args(ssh_servers, [ids[0], bad])
    (tmp_path / "remote").mkdir()
    with pytest.raises(AupError, match=bad):
        _prepare(tmp_path, "aws", args, tmp_path / "remote")


def test_a_refused_run_stops_the_instances_it_started_and_names_every_one(
        ssh_servers, moto_ec2, tmp_path) -> None:
    """Trial 57: a pre-flight failure (here: the remote workingdir is missing on both)
    started the stopped instances and left them running, billed, even with shutdown: true;
    and only the first instance's problem was named."""
    ids = moto_ec2.instances(ssh_servers, stopped=2)
    args = moto_ec2.resource_args(ssh_servers, ids, python=sys.executable)
    with pytest.raises(AupError) as info:
        _prepare(tmp_path, "aws", args, tmp_path / "no-such-remote-folder")
    text = str(info.value)
    assert "2 nodes are not ready" in text and all(i in text for i in ids), text
    assert [moto_ec2.state(i) for i in ids] == ["stopped", "stopped"]


@pytest.mark.parametrize("case", ["no region", "not EC2", "nodes", "key file"])
def test_aws_mistakes_are_named_without_a_traceback(moto_ec2, tmp_path, monkeypatch,
                                                    case) -> None:
    """Trial 57: no region anywhere, or an endpoint that answers with something else than
    EC2's XML, were botocore tracebacks (exit 1); 'nodes' was ignored without a word; a
    missing key file passed 'aup run --check'."""
    import http.server
    import threading

    from aup.errors import ConfigError

    for var in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    args = {"instances": ["u@i-0123456789abcdef0"], "region": "us-east-1",
            "endpoint_url": moto_ec2.url}
    server = None
    if case == "no region":
        del args["region"], args["endpoint_url"]
        expect = AupError, 'no AWS region is set; give resource_args "region"'
    elif case == "not EC2":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                 http.server.SimpleHTTPRequestHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        args["endpoint_url"] = f"http://127.0.0.1:{server.server_address[1]}"
        expect = AupError, "aws: cannot describe instances i-0123456789abcdef0 .*check credentials"
    elif case == "nodes":
        args["nodes"] = ["u@host"]
        expect = ConfigError, "resource_args.nodes"
    else:
        args["instances"] = [f"u@i-0123456789abcdef0 {tmp_path / 'gone.pem'}"]
        expect = AupError, r"key file .*gone\.pem does not exist; fix the path after the host " \
                           r"in resource_args\.instances \(or aws_mapping"
    try:
        with pytest.raises(expect[0], match=expect[1]):
            _prepare(tmp_path, "aws", args, tmp_path)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def test_stopped_instances_are_started_and_shut_down(ssh_servers, moto_ec2, tmp_path) -> None:
    ids = moto_ec2.instances(ssh_servers, stopped=2)
    assert [moto_ec2.state(i) for i in ids] == ["stopped", "stopped"]
    remote = tmp_path / "remote"
    remote.mkdir()
    backend = Backend("aws", moto_ec2.resource_args(ssh_servers, ids, python=sys.executable,
                                                    shutdown=True), remote_wd=remote)
    run = run_experiment(tmp_path / "exp", backend, OK, n_samples=2, n_parallel=2)
    assert run.result.status.value == "FINISHED", run.result.error
    assert [moto_ec2.state(i) for i in ids] == ["stopped", "stopped"]  # shutdown: true
    names = {run.slots[(j["jid"], 0)] for j in run.jobs()}
    assert all(any(i in n for i in ids) for n in names)


# -- ray ----------------------------------------------------------------------------------------
def test_ray_address_that_does_not_answer(tmp_path: Path) -> None:
    from fixtures_ssh import free_port

    port = free_port()
    t0 = time.monotonic()
    with pytest.raises(AupError, match=rf"Ray cluster at 127\.0\.0\.1:{port} does not answer"):
        _prepare(tmp_path, "ray", {"address": f"127.0.0.1:{port}"})
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("service", ["web", "silent"])
def test_ray_address_of_another_service_is_refused_at_once(tmp_path: Path, service) -> None:
    """Trial 57: the dashboard's address (127.0.0.1:8265, printed by 'ray start') or any port
    that accepts connections passed the check, and ray.init then retried for ever, deaf to
    Ctrl-C. A GCS answers an HTTP/2 preface; a web server or a silent port does not."""
    import http.server
    import socketserver
    import threading

    if service == "web":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                 http.server.SimpleHTTPRequestHandler)
    else:
        class Silent(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                time.sleep(3)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Silent)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        t0 = time.monotonic()
        with pytest.raises(AupError, match=rf"127\.0\.0\.1:{port} \(resource_args\.address\) "
                                           r"answers, but not as a Ray "
                                           r"cluster.*port 6379 by default"):
            _prepare(tmp_path, "ray", {"address": f"127.0.0.1:{port}", "connect_timeout": 1})
        assert time.monotonic() - t0 < 10
    finally:
        server.shutdown()
        server.server_close()


def test_ray_client_address_is_refused_at_load(tmp_path: Path) -> None:
    """Trial 57: 'ray://host:10001' was documented, then every job failed with a
    RESOURCE_ERROR (Ray Client has no streaming generator tasks)."""
    from aup.config import parse_config
    from aup.errors import ConfigError
    from aup.resources.ray_cluster import check_address

    (tmp_path / "t.py").write_text("print('#Auptimizer: 1')\n")
    with pytest.raises(ConfigError) as info:
        parse_config({"script": "t.py", "resource": "ray",
                      "parameter_config": [{"name": "x", "type": "float", "range": [0, 1]}],
                      "resource_args": {"address": "ray://10.0.0.5:10001"}}, tmp_path)
    (problem,) = [p for p in info.value.problems if p.path == "resource_args.address"]
    assert "Ray Client address" in problem.message and '"10.0.0.5:6379"' in problem.hint
    with pytest.raises(AupError, match="is a Ray Client address"):  # e.g. from RAY_ADDRESS
        check_address("ray://10.0.0.5:10001", 1)


def test_node_reconnects_after_the_connection_drops_and_the_server_returns(ssh_servers) -> None:
    """max_retries/reconn_wait_time: a dropped connection is reopened; while the server is
    down the attempts are spaced and counted, then the error names the host."""
    import threading

    from fixtures_ssh import _start

    from aup.resources.ssh import Node, NodeOptions, parse_host

    opts = NodeOptions(known_hosts=str(ssh_servers.known_hosts), reconn_wait_time=0.5,
                       max_retries=3, connect_timeout=3)
    node = Node("n", parse_host(ssh_servers.entries()[1]), opts)
    assert node.run("echo hi")[1].strip() == "hi"
    node._client.get_transport().close()  # the connection drops
    assert node.run("echo again")[1].strip() == "again"  # reopened transparently
    node._client.get_transport().close()
    proc = ssh_servers.procs[1]
    proc.terminate()
    proc.wait(5)
    try:
        t0 = time.monotonic()
        with pytest.raises(AupError, match=rf"127\.0\.0\.1:{ssh_servers.ports[1]}.*cannot "
                                           "connect"):
            node.client()
        assert time.monotonic() - t0 >= 2 * 0.5  # 3 attempts, 2 waits
        # The server comes back while the node retries: the retry succeeds.
        node.options = NodeOptions(known_hosts=str(ssh_servers.known_hosts),
                                   reconn_wait_time=0.5, max_retries=40, connect_timeout=3)
        restart = threading.Timer(0.3, lambda: ssh_servers.procs.__setitem__(
            1, _start(ssh_servers.configs[1], ssh_servers.ports[1])))
        restart.start()
        assert node.run("echo back")[1].strip() == "back"
        restart.join()
    finally:
        if ssh_servers.procs[1].poll() is not None:
            ssh_servers.procs[1] = _start(ssh_servers.configs[1], ssh_servers.ports[1])
        node.close()


def test_node_experiment_through_the_cli(ssh_servers, tmp_path: Path) -> None:
    backend = _node(ssh_servers, tmp_path)
    path = make_experiment(tmp_path / "exp", backend, OK, n_samples=4, n_parallel=2)
    res = run_cli("run", str(path), cwd=tmp_path / "exp")
    assert res.returncode == 0, res.stdout + res.stderr
    outs = sorted((tmp_path / "exp" / "jobs").glob("*.0.out"))
    assert len(outs) == 4 and all("#Auptimizer:" in p.read_text() for p in outs)
    assert len(list((backend.remote_wd / "jobs").glob("*.json"))) == 4


def _run_killing_node0(servers, tmp_path: Path, backend: Backend, script: str, n_running: int,
                       **cfg):
    """Run an experiment (one retry per job) whose node 0 dies (server stopped, its open
    connection dropped) once ``n_running`` jobs run; the server is started again afterwards.

    Returns:
        the run and node 0's label.
    """
    from fixtures_ssh import _start

    dead = servers.entries()[0].split()[0]

    def kill_node0(exp) -> None:
        end = time.monotonic() + 60
        while len(exp.running) < n_running and time.monotonic() < end:
            time.sleep(0.02)
        # ... and until their commands were sent over their channels: a node killed while an
        # attempt still connected fails it with RESOURCE_ERROR, not the LOST these tests test
        # (a flake in CI of 900aea1)
        attempts = exp.resource._attempts
        while (any(a.chan is None for a in list(attempts._by_key.values()))
               and time.monotonic() < end):
            time.sleep(0.02)
        servers.procs[0].terminate()
        servers.procs[0].wait(5)
        node = exp.resource._nodes[dead]
        if node._client is not None:
            node._client.get_transport().close()  # the open connection drops too

    try:
        run = run_experiment(tmp_path / "exp", backend, script, on_start=kill_node0,
                             job_failure={"job_retries": 1, "ignore_fail": False}, **cfg)
    finally:
        servers.procs[0] = _start(servers.configs[0], servers.ports[0])
    return run, dead


def test_dead_node_is_avoided_by_new_jobs(ssh_servers, tmp_path: Path) -> None:
    """Node 0 dies during the run (server stopped, connection dropped): its job is retried on
    node 1, and new jobs start on node 1 only (the lost connection marked node 0 down)."""
    backend = _node(ssh_servers, tmp_path, reconn_wait_time=0.2, max_retries=2)
    script = OK.replace("print(", "import time\ntime.sleep(0.5)\nprint(")
    run, dead = _run_killing_node0(ssh_servers, tmp_path, backend, script, 1, n_samples=4,
                                   n_parallel=1)
    assert run.result.status.value == "FINISHED", run.result.error
    order = sorted(run.slots.items(), key=lambda kv: kv[0])
    reasons = {(j["jid"], a["num"]): a["fail_reason"] for j in run.jobs()
               for a in run.attempts(j["jid"])}
    on_dead = [key for key, slot in order if dead in slot]
    assert on_dead, order
    assert [reasons[k] for k in on_dead] == ["LOST"], (reasons, order)
    assert all(j["status"] == "FINISHED" for j in run.jobs())


def test_a_job_lost_with_its_node_is_retried_on_a_live_node(ssh_servers, tmp_path: Path
                                                              ) -> None:
    """Trial 37: with both nodes busy, the job lost with node 0 was retried on node 0 again
    (its only free slot: a LOST connection did not mark the node down) and failed for good
    with RESOURCE_ERROR; the retry now waits for node 1."""
    backend = _node(ssh_servers, tmp_path, reconn_wait_time=30, max_retries=1)
    script = OK.replace("print(", "import time\ntime.sleep(1.5)\nprint(")
    run, dead = _run_killing_node0(ssh_servers, tmp_path, backend, script, 2, n_samples=2,
                                   n_parallel=2)
    assert run.result.status.value == "FINISHED", run.result.error
    attempts = {(j["jid"], a["num"]): a for j in run.jobs() for a in run.attempts(j["jid"])}
    lost = [k for k, a in attempts.items() if a["fail_reason"] == "LOST"]
    assert len(lost) == 1, attempts
    retry = (lost[0][0], lost[0][1] + 1)
    assert attempts[retry]["status"] == "SUCCEEDED", attempts
    assert dead not in run.slots[retry], run.slots


SILENT = """
import json, os, sys, time
cfg = json.load(open(sys.argv[-1]))
os.makedirs("pids", exist_ok=True)
open(f"pids/{cfg['job_id']}.pid", "w").write(str(os.getpid()))
time.sleep(60)  # silent: no output that a closed channel could break
print("#Auptimizer:", cfg["x"])
"""


def _end_background_run(proc, pids_dir: Path) -> None:
    """Kill the job processes whose pids are in ``pids_dir/*.pid`` and close the output files
    of the background ``aup run`` ``proc``."""
    from lifecycle_helpers import alive

    for p in [int(f.read_text()) for f in pids_dir.glob("*.pid")]:
        if alive(p):
            os.kill(p, 9)
    for f in getattr(proc, "_aup_files", ()):
        f.close()


def test_remote_jobs_end_when_the_scheduler_dies(ssh_servers, tmp_path: Path) -> None:
    """Trial 37: after a kill -9 of 'aup run', a remote job that printed nothing ran on to its
    end, beside its re-run after 'aup resume' (resume kills orphans on this machine only).
    A watchdog on the node ends the job's process group once the SSH channel closes."""
    from lifecycle_helpers import alive, start_cli

    backend = _node(ssh_servers, tmp_path)
    folder = tmp_path / "exp"
    path = make_experiment(folder, backend, SILENT, n_samples=2, n_parallel=2)
    proc = start_cli(str(path), cwd=folder)
    pids_dir = backend.remote_wd / "pids"
    try:
        end = time.monotonic() + 60
        while len(list(pids_dir.glob("*.pid"))) < 2 and time.monotonic() < end:
            time.sleep(0.1)
        pids = [int(p.read_text()) for p in pids_dir.glob("*.pid")]
        assert len(pids) == 2 and all(alive(p) for p in pids), pids
        proc.kill()  # kill -9 of the scheduler: its SSH connections close
        proc.wait()
        end = time.monotonic() + 15
        while any(alive(p) for p in pids) and time.monotonic() < end:
            time.sleep(0.1)
        assert not [p for p in pids if alive(p)], "remote jobs outlived their scheduler"
    finally:
        _end_background_run(proc, pids_dir)


def test_ray_backstop_kills_a_stopped_jobs_group_on_this_machine() -> None:
    # When Ray kills the worker before the task's clean-up ran (forced cancel, the driver
    # disconnecting), the scheduler kills what is left of a job in its own PID namespace. A
    # group that ignores SIGTERM (sh and its sleeps) goes within the grace time.
    from aup.resources.ray_cluster import reap_group
    from aup.resources.ray_task import process_namespace

    assert process_namespace()  # Linux: the boot id and the PID namespace are known
    proc = subprocess.Popen(["/bin/sh", "-c", "trap '' TERM; sleep 60 & sleep 60"],
                            start_new_session=True)
    time.sleep(0.2)
    t0 = time.monotonic()
    reap_group(proc.pid, 0.3)
    assert proc.wait(timeout=5) != 0
    assert time.monotonic() - t0 < 3
    with pytest.raises(ProcessLookupError):  # the background sleep went with the group
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            os.killpg(proc.pid, 0)
            time.sleep(0.05)
    t0 = time.monotonic()
    reap_group(proc.pid, 5.0)  # a group that is gone: returns at once
    assert time.monotonic() - t0 < 1


def test_node_kills_a_timed_out_job_that_ignores_sigterm(ssh_servers, tmp_path: Path) -> None:
    # The SIGKILL after kill_grace was skipped once the channel reported an exit (the wrapper
    # shell dies of the SIGTERM), so a job ignoring SIGTERM and its child ran on for ever.
    backend = _node(ssh_servers, tmp_path, kill_grace=1)
    script = ("import os, signal, subprocess, sys, time\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
              "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)'])\n"
              "open('pids.txt', 'w').write(f'{os.getpid()} {child.pid}')\n"
              "time.sleep(300)\n")
    run = run_experiment(tmp_path / "exp", backend, script, job_timeout=2,
                         job_failure={"ignore_fail": True})
    (job,) = run.jobs()
    assert job["fail_reason"] == "TIMEOUT", job
    pids = [int(p) for p in (backend.remote_wd / "pids.txt").read_text().split()]
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        time.sleep(0.1)
    assert not alive, f"still running after the timeout and kill_grace: {alive}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


DELETES_ITSELF = """
import json, os, sys, time
cfg = json.load(open(sys.argv[-1]))
time.sleep(3 if cfg["job_id"] == 1 else 0.05)
if cfg["job_id"] == 3:
    os.remove(__file__)  # the script is gone on the nodes for every later job
print("#Auptimizer:", cfg["x"])
"""


def test_a_script_gone_on_the_nodes_is_a_start_failure_and_stops_the_run(
        ssh_servers, tmp_path: Path) -> None:
    # Trial 47: the node wrapper's own start errors (no folder, config not writable, script
    # gone) were the job's NONZERO_EXIT, so with ignore_fail every remaining job failed for
    # good within a second (7 of 9) and the experiment ended FINISHED. They are START_FAILED
    # now: the jobs are not spent, and once no node can start one the run stops, resumable.
    path = make_experiment(tmp_path / "exp", _node(ssh_servers, tmp_path), DELETES_ITSELF,
                           n_samples=12, n_parallel=2, job_failure={"ignore_fail": True},
                           runtime_args={"overwrite": True})
    res = run_cli("run", str(path), cwd=tmp_path / "exp", timeout=120)
    out = " ".join((res.stdout + res.stderr).split())
    assert res.returncode == 1, out
    assert "no job can start any more" in out and "is gone on the node" in out, out
    jobs = json.loads(run_cli("show", "1", "--json", cwd=tmp_path / "exp").stdout)
    assert not [j for j in jobs if j["status"] == "FAILED"], jobs
    assert any(j["fail_reason"] == "START_FAILED" for j in jobs), jobs
    res = run_cli("resume", "1", "-q", cwd=tmp_path / "exp", timeout=120)  # re-uploads it
    assert res.returncode == 0, res.stdout + res.stderr
    jobs = json.loads(run_cli("show", "1", "--json", cwd=tmp_path / "exp").stdout)
    assert len(jobs) == 12 and all(j["status"] == "FINISHED" for j in jobs), jobs


def test_every_node_down_with_ignore_fail_stops_without_spending_jobs(
        ssh_servers, tmp_path: Path) -> None:
    # Trial 47: with every sshd stopped mid-run, ignore_fail turned each remaining job into a
    # RESOURCE_ERROR failure within seconds and the experiment ended FINISHED, not resumable.
    # A job the resource could not run is not spent: the run stops once no node can start one.
    from fixtures_ssh import _start

    backend = _node(ssh_servers, tmp_path, reconn_wait_time=0.2, max_retries=1)
    script = OK.replace("print(", "import time\ntime.sleep(1)\nprint(")

    def kill_every_node(exp) -> None:
        end = time.monotonic() + 60
        while len(exp.running) < 2 and time.monotonic() < end:
            time.sleep(0.02)
        for i, proc in enumerate(ssh_servers.procs):
            proc.terminate()
            proc.wait(5)
            node = exp.resource._nodes[ssh_servers.entries()[i].split()[0]]
            if node._client is not None:
                node._client.get_transport().close()

    try:
        run = run_experiment(tmp_path / "exp", backend, script, on_start=kill_every_node,
                             n_samples=8, n_parallel=2, job_failure={"ignore_fail": True})
    finally:
        for i in range(len(ssh_servers.procs)):
            ssh_servers.procs[i] = _start(ssh_servers.configs[i], ssh_servers.ports[i])
    assert run.result.status.value == "FAILED", run.result
    assert "no job can start any more" in (run.result.error or ""), run.result.error
    jobs = run.jobs()
    spent = [j for j in jobs if j["status"] == "FAILED"]
    assert all(j["fail_reason"] == "LOST" for j in spent), jobs  # only the 2 that were running
    assert any(j["status"] == "INTERRUPTED" for j in jobs) and len(jobs) < 8, jobs


def test_resume_goes_on_without_a_node_that_died_for_good(ssh_servers, tmp_path: Path) -> None:
    # Trial 47 left this out: a resume checked every recorded node, so one host that died for
    # good blocked the experiment forever. A resume now takes the edited host list (and
    # n_parallel) from experiment.json: where the jobs run, not what is searched.
    from fixtures_ssh import _start

    backend = _node(ssh_servers, tmp_path)
    script = OK.replace("print(", "assert cfg['x'] != 2, 'x = 2 diverged'\nprint(")
    folder = tmp_path / "exp"
    grid = [{"name": "x", "type": "choice", "range": [1, 2, 3, 4, 5]}]
    path = make_experiment(folder, backend, script, proposer="sequence", parameter_config=grid)
    res = run_cli("run", str(path), cwd=folder)
    assert res.returncode == 1, res.stdout + res.stderr  # job 2 failed: the run stopped
    dead = ssh_servers.entries()[1]
    ssh_servers.procs[1].terminate()
    ssh_servers.procs[1].wait(5)
    try:
        res = run_cli("resume", "1", cwd=folder)
        assert res.returncode == 2 and dead.split()[0] in res.stdout + res.stderr
        assert "Traceback" not in res.stderr
        alive = [e for e in backend.args["nodes"] if e != dead]
        # a mistyped key file: exit 2, and the recorded hosts stay (trial 49: they were
        # replaced although the resume was refused)
        typo = [alive[0].replace(str(ssh_servers.key), str(ssh_servers.key) + "x")]
        make_experiment(folder, backend, script, proposer="sequence", parameter_config=grid,
                        resource_args={"nodes": typo})
        res = run_cli("resume", "1", cwd=folder)
        assert res.returncode == 2 and "does not exist" in res.stderr, res.stderr
        (row,) = json.loads(run_cli("list", "--json", cwd=folder).stdout)
        assert row["exp_config"]["resource_args"]["nodes"] == backend.args["nodes"]
        make_experiment(folder, backend, script, proposer="sequence", parameter_config=grid,
                        resource_args={"nodes": alive}, job_failure={"ignore_fail": True})
        res = run_cli("resume", "1", cwd=folder)
    finally:
        ssh_servers.procs[1] = _start(ssh_servers.configs[1], ssh_servers.ports[1])
    err = " ".join(res.stderr.split())
    assert res.returncode == 0, res.stdout + res.stderr
    assert "resume uses the edited job_failure and resource_args.nodes" in err, err
    assert "jobs 5, finished 4, failed 1" in res.stdout, res.stdout
    (row,) = json.loads(run_cli("list", "--json", cwd=folder).stdout)
    assert row["exp_config"]["resource_args"]["nodes"] == alive
    assert row["exp_config"]["resource_args"]["known_hosts"] == backend.args["known_hosts"]


# Ignores SIGTERM (a long checkpoint save) and notes whether its previous attempt still runs.
STUBBORN = """
import json, os, signal, sys, time
cfg = json.load(open(sys.argv[-1]))
signal.signal(signal.SIGTERM, signal.SIG_IGN)
os.makedirs("life", exist_ok=True)
jid, att = cfg["job_id"], int(os.environ["AUP_ATTEMPT"])
open(f"life/{jid}.{att}.pid", "w").write(str(os.getpid()))
if att:
    old = int(open(f"life/{jid}.{att - 1}.pid").read())
    try:
        state = open(f"/proc/{old}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        state = "gone"
    open(f"life/{jid}.{att}.previous", "w").write(state)
time.sleep(0.2 if att else 60)
print("#Auptimizer:", cfg["x"])
"""


def test_a_resume_waits_until_the_old_copies_on_the_nodes_are_gone(ssh_servers, tmp_path):
    # Trial 54: after a kill -9 of 'aup run' and an immediate resume, a remote job that
    # ignored SIGTERM ran beside its own re-run until the node's watchdog killed it
    # (kill_grace later). The resume now waits for that. AUP_SCHEDULER_PID is overridden so
    # that the resume's clean-up of this machine's orphans does not see the jobs: as on a
    # real remote node, only the watchdog can stop them.
    from lifecycle_helpers import start_cli

    backend = _node(ssh_servers, tmp_path, kill_grace=3)
    folder = tmp_path / "exp"
    path = make_experiment(folder, backend, STUBBORN, n_samples=2, n_parallel=2,
                           runtime_args={"env": {"AUP_SCHEDULER_PID": "0"}})
    life = backend.remote_wd / "life"
    proc = start_cli(str(path), cwd=folder)
    try:
        end = time.monotonic() + 60
        while len(list(life.glob("*.0.pid"))) < 2 and time.monotonic() < end:
            time.sleep(0.1)
        first = [int(p.read_text()) for p in life.glob("*.0.pid")]
        assert len(first) == 2, first
        proc.kill()  # kill -9 of the scheduler: its connections close, the watchdogs act
        proc.wait()
        res = run_cli("resume", "1", cwd=folder)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "old copies on the nodes are surely stopped" in res.stderr, res.stderr
        seen = {p.name: p.read_text() for p in life.glob("*.1.previous")}
        assert len(seen) == 2 and set(seen.values()) <= {"gone", "Z"}, seen
    finally:
        _end_background_run(proc, life)
