"""pytest plugin: two real OpenSSH servers on 127.0.0.1 (two "nodes") for the SSH resources.

Each ``sshd -D`` runs with its own config (generated host key, our own authorized_keys,
``StrictModes no``, ``PermitRootLogin yes`` because CI runs as root) on a free loopback port and
is stopped after the session. A generated user key logs in as the current user. A known_hosts
file lists both servers' host keys, so host key checking stays on in the tests.

Use with ``pytest_plugins = ["fixtures_ssh"]`` in a test module.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd on port {port} exited with {proc.returncode}: "
                               f"{proc.stderr.read().decode(errors='replace') if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                if s.recv(4).startswith(b"SSH"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"sshd on port {port} did not answer within {timeout}s")


@dataclass
class SSHServers:
    """The running servers.

    Attributes:
        user: the login name.
        key: the user's private key file.
        known_hosts: a known_hosts file with both servers.
        ports: the ports, one per node.
        procs: the sshd processes (a test may stop one to kill a node).
    """

    user: str
    key: Path
    known_hosts: Path
    ports: list[int]
    procs: list[subprocess.Popen] = field(default_factory=list)
    configs: list[Path] = field(default_factory=list)

    def entries(self) -> list[str]:
        """``user@127.0.0.1:port keyfile`` for every node."""
        return [f"{self.user}@127.0.0.1:{p} {self.key}" for p in self.ports]

    def node_args(self, **extra) -> dict:
        """resource_args for the ``node`` resource on these servers (fast retry settings)."""
        return {"nodes": self.entries(), "known_hosts": str(self.known_hosts),
                "reconn_wait_time": 0.2, "max_retries": 2, "connect_timeout": 5,
                "kill_grace": 2, **extra}


def _start(config: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_port(port, proc)
    return proc


@contextlib.contextmanager
def running_ssh_servers(d: Path) -> Iterator[SSHServers]:
    """Start two sshd with keys and configs under folder ``d``; stop them at exit."""
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
    host_key, user_key = d / "host_key", d / "user_key"
    _keygen(host_key)
    _keygen(user_key)
    auth = d / "authorized_keys"
    auth.write_text((d / "user_key.pub").read_text())
    auth.chmod(0o600)
    host_pub = (d / "host_key.pub").read_text().split()[:2]
    ports = [free_port(), free_port()]
    while ports[1] == ports[0]:
        ports[1] = free_port()
    kh = d / "known_hosts"
    kh.write_text("".join(f"[127.0.0.1]:{p} {host_pub[0]} {host_pub[1]}\n" for p in ports))
    servers = SSHServers(getpass.getuser(), user_key, kh, ports)
    try:
        for i, port in enumerate(ports):
            cfg = d / f"sshd_config_{i}"
            cfg.write_text("\n".join([
                f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
                f"PidFile {d}/sshd_{i}.pid", f"AuthorizedKeysFile {auth}",
                "PubkeyAuthentication yes", "PasswordAuthentication no",
                "KbdInteractiveAuthentication no", "StrictModes no", "UsePAM no",
                "PermitRootLogin yes", "MaxSessions 50", "MaxStartups 50:30:100",
                "Subsystem sftp internal-sftp", "LogLevel ERROR", ""]))
            servers.configs.append(cfg)
            servers.procs.append(_start(cfg, port))
        yield servers
    finally:
        for p in servers.procs:
            p.terminate()
        for p in servers.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="session")
def ssh_servers(tmp_path_factory) -> Iterator[SSHServers]:
    """Two sshd servers on loopback (skipped only outside CI when sshd is missing)."""
    if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("sshd / ssh-keygen missing under CI (install openssh-server)")
        pytest.skip("OpenSSH server not installed (apt-get install openssh-server)")
    with running_ssh_servers(tmp_path_factory.mktemp("sshd")) as servers:
        yield servers
