"""node (SSH) errors as the user sees them: a port that accepts TCP but speaks no SSH gives our
one-line error without paramiko's logged traceback, and a node whose sshd has no SFTP subsystem
is named as such (a real sshd started without ``Subsystem sftp``)."""

from __future__ import annotations

import contextlib
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli
from resource_backends import Backend, make_experiment

from aup.config import load_config
from aup.errors import AupError

pytest_plugins = ["fixtures_ssh"]

OK = "import json, sys\ncfg = json.load(open(sys.argv[-1]))\nprint('#Auptimizer:', cfg['x'])\n"


@contextlib.contextmanager
def not_ssh_listener(silent: bool) -> Iterator[int]:
    """A loopback port that accepts TCP and then closes at once (``silent``: keeps the
    connection open and says nothing); yields the port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            if silent:
                held.append(conn)
            else:
                conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(5)
        for c in held:
            c.close()
        srv.close()


@pytest.mark.parametrize("silent", [False, True], ids=["accepts-and-closes", "silent"])
def test_port_without_ssh_banner_fails_cleanly_from_the_cli(tmp_path: Path, silent) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    with not_ssh_listener(silent) as port:
        # no key file: the banner fails before any authentication is tried
        backend = Backend("node", {"nodes": [f"me@127.0.0.1:{port}"], "connect_timeout": 1,
                                   "max_retries": 1, "reconn_wait_time": 0}, remote_wd=remote)
        path = make_experiment(tmp_path / "exp", backend, OK)
        res = run_cli("run", str(path), cwd=tmp_path / "exp")
    out = res.stderr + res.stdout
    assert res.returncode == 2, out
    assert f"resource 'node' is not ready: node me@127.0.0.1:{port}: SSH error:" in out
    assert "SSH protocol banner" in out and "banner[" not in out  # paramiko's run-on text
    assert "Traceback" not in out
    assert "paramiko" not in out  # not a line of paramiko's own logging either


def test_paramiko_transport_errors_go_to_debug(caplog) -> None:
    """What paramiko's transport thread logs as errors (the exception it also hands to us) is
    kept at debug level under our logger; other paramiko records are left alone."""
    import logging

    import aup.resources.ssh  # noqa: F401  (installs the filter)

    plog = logging.getLogger("paramiko.transport")
    with caplog.at_level(logging.DEBUG):
        plog.error("Exception (client): Error reading SSH protocol banner")
        plog.warning("Oops, unhandled type 3")
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("paramiko.transport", logging.ERROR,
            "Exception (client): Error reading SSH protocol banner") not in records
    assert ("aup.resources.ssh", logging.DEBUG,
            "paramiko.transport: Exception (client): Error reading SSH protocol banner") in records
    assert ("paramiko.transport", logging.WARNING, "Oops, unhandled type 3") in records


@pytest.fixture
def sshd_without_sftp(ssh_servers, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A third sshd like the fixture's, but without ``Subsystem sftp``: (port, known_hosts)."""
    from fixtures_ssh import _start, free_port

    port = free_port()
    lines = []
    for line in ssh_servers.configs[0].read_text().splitlines():
        if line.startswith("Subsystem"):
            continue
        if line.startswith("Port "):
            line = f"Port {port}"
        elif line.startswith("PidFile "):
            line = f"PidFile {tmp_path}/sshd_nosftp.pid"
        lines.append(line)
    cfg = tmp_path / "sshd_config_nosftp"
    cfg.write_text("\n".join(lines) + "\n")
    kh = tmp_path / "known_hosts"
    first = ssh_servers.known_hosts.read_text().splitlines()[0].split()
    kh.write_text(f"[127.0.0.1]:{port} {first[1]} {first[2]}\n")
    proc = _start(cfg, port)
    try:
        yield port, kh
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_node_without_sftp_subsystem_is_named(ssh_servers, sshd_without_sftp, tmp_path) -> None:
    from aup.resources import registry

    port, kh = sshd_without_sftp
    remote = tmp_path / "remote"
    remote.mkdir()
    args = ssh_servers.node_args(nodes=[f"{ssh_servers.user}@127.0.0.1:{port} {ssh_servers.key}"],
                                 known_hosts=str(kh), python=sys.executable)
    path = make_experiment(tmp_path / "exp", Backend("node", args, remote_wd=remote), OK)
    rm = registry.get("node")(load_config(path), queue.Queue())
    try:
        with pytest.raises(AupError, match=r"127\.0\.0\.1:\d+: cannot write .*job\.py.*"
                                           r"SFTP.*Subsystem sftp") as info:
            rm.prepare()  # the script is missing on the node: it is uploaded with SFTP
    finally:
        rm.close()
    assert "sshd_config" in str(info.value)
