"""``resource: node``: job attempts on other machines over SSH (paramiko).

Hosts are written ``user@host[:port] [keyfile]``, in ``resource_args.nodes`` or in
``node_mapping`` of ``.aup/env.ini``; one slot per entry (a host listed twice runs two jobs at
once). ``workingdir`` is the REMOTE directory (``~/`` means the remote home); it must exist.

Before the first job, :meth:`SSHResourceManager.prepare` connects to every host (host keys are
checked against ``known_hosts`` unless the user turns that off with ``"check_host_keys": false``
or ``"known_hosts": null``), checks the remote ``workingdir``, creates ``<workingdir>/jobs`` and
uploads the script (its first word, found relative to the experiment file's folder) when it is
missing there or ``runtime_args.overwrite`` is true. Any problem raises an
:class:`~aup.errors.AupError` naming the host, before a job is started.

Each attempt: the job config is written locally (``jobs/<jid>.json`` next to the experiment
file) and uploaded to ``<workingdir>/jobs/<jid>.json``; the script runs under ``setsid`` (its own
process group, whose id the wrapper reports first) in the remote ``workingdir`` with
``runtime_args.env`` and ``prescript``/``postscript``; its output streams back line by line into
the local ``jobs/<jid>.<attempt>.out`` (a copy stays in ``<workingdir>/jobs`` on the node) and
through the same parser as local jobs. Stopping sends SIGTERM, then SIGKILL after
``kill_grace``, to the remote process group. A connection that cannot be (re)opened after
``max_retries`` attempts ``reconn_wait_time`` seconds apart ends the attempt with
``RESOURCE_ERROR``; a connection lost while the job runs ends it with ``LOST``. Both are retried by
the experiment loop on another node when ``job_failure.job_retries`` allows.

Every user value reaches the remote shell quoted (:func:`shlex.quote`); ``prescript`` and
``postscript`` are shell code by definition and run as written.

Files go to the node over SFTP, so its sshd needs the SFTP subsystem (``Subsystem sftp ...`` in
``sshd_config``); a node without it is named as such. paramiko's transport thread logs, at error
level and with a traceback, every exception that ends a connection (a port that sends no SSH
banner, a dropped link) and then hands it to the waiting call, which this module turns into an
:class:`SSHError` naming the host: importing this module moves those records to its own logger
at debug level (:class:`_ReportedHere`), so they reach the terminal only with ``aup --log
debug``.
"""

from __future__ import annotations

import io
import json
import logging
import shlex
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from pydantic import Field, field_validator

from aup.errors import AupError
from aup.job import FailReason, StopReason, judge
from aup.resources.base import (
    AttemptSpec,
    ResourceManager,
    ResourceOptions,
    RunningAttempts,
    Slot,
    ThreadedAttempt,
)
from aup.resources.local import write_job_config
from aup.resources.stream import OutputSink, end_event, resource_failure

log = logging.getLogger(__name__)

#: Longest chunk read at once from a remote job's output (bytes).
LINE_LIMIT = 1 << 20
#: First line printed by the remote wrapper: the job's process group id.
PGID_MARK = "#aup-pgid:"
#: The wrapper's line before it exits without starting the job (a start failure, the reason
#: follows): the attempt is START_FAILED, not the job's own NONZERO_EXIT.
START_FAILED_MARK = "#aup-start-failed:"
#: The fix named when a node's sshd does not give an SFTP session.
SFTP_HINT = ("Auptimizer copies files with SFTP, so the node's sshd needs the SFTP subsystem: add "
             "'Subsystem sftp internal-sftp' (or the path of its sftp-server) to the node's "
             "sshd_config and reload sshd")


class _ReportedHere(logging.Filter):
    """On paramiko's ``paramiko.transport`` logger: its error records (the exception that ended
    a connection, with its traceback) become debug records of this module's logger. On the
    client side paramiko logs errors only there, for an exception it also hands to the caller,
    whose :class:`SSHError` (or job outcome) already says what went wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s", record.name, record.getMessage())
        return False


logging.getLogger("paramiko.transport").addFilter(_ReportedHere())


class SSHError(AupError):
    """A node cannot be used (unreachable, refused key, unknown host key, missing folder)."""


@dataclass(frozen=True)
class HostSpec:
    """One ``user@host[:port] [keyfile]`` entry.

    Attributes:
        user: login name.
        host: host name or IPv4 address.
        port: SSH port (22 by default).
        keyfile: private key file, or None for the default keys of ``~/.ssh``.
    """

    user: str
    host: str
    port: int = 22
    keyfile: str | None = None

    @property
    def name(self) -> str:
        """``user@host:port``, as stored in ``resource.name``."""
        return f"{self.user}@{self.host}:{self.port}"


def parse_host(text: str) -> HostSpec:
    """Parse ``user@host[:port] [keyfile]``.

    Raises:
        ValueError: the entry does not have that form (the message says why).
    """
    parts = str(text).split()
    if not parts or len(parts) > 2:
        raise ValueError(f"{text!r} is not 'user@host[:port] [keyfile]'")
    user, at, hostport = parts[0].rpartition("@")
    if not at or not user or not hostport:
        raise ValueError(f"{text!r} lacks 'user@': write it as user@host[:port] [keyfile]")
    host, colon, port = hostport.partition(":")
    if not host:
        raise ValueError(f"{text!r} has no host name")
    port_n = 22
    if colon:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r}: port {port!r} must be a number in 1..65535")
        port_n = int(port)
    return HostSpec(user, host, port_n, parts[1] if len(parts) == 2 else None)


class NodeOptions(ResourceOptions):
    """``resource_args`` of ``node``.

    Attributes:
        nodes: host entries (``user@host[:port] [keyfile]``); None: ``node_mapping`` of env.ini.
        reconn_wait_time: seconds between two connection attempts.
        max_retries: connection attempts per job before it fails with RESOURCE_ERROR.
        connect_timeout: seconds allowed for TCP connect, banner and authentication.
        known_hosts: known_hosts file to check host keys against; null turns checking off.
        check_host_keys: false turns host key checking off (trust on first use, not saved).
        python: interpreter for a ``.py`` script on the node.
    """

    nodes: list[str] | None = None
    reconn_wait_time: float = Field(default=30.0, ge=0)
    max_retries: int = Field(default=3, ge=1)
    connect_timeout: float = Field(default=10.0, gt=0)
    known_hosts: str | None = "~/.ssh/known_hosts"
    check_host_keys: bool = True
    python: str = "python3"

    @field_validator("nodes")
    @classmethod
    def _hosts(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError('give at least one host, e.g. "nodes": ["me@host:22 ~/.ssh/id"]')
            for entry in v:
                parse_host(entry)
        return v


def remote_path(path: str) -> str:
    """A remote path as the remote shell and SFTP see it: ``~/x`` becomes ``x`` (relative to
    the login directory, which is the home)."""
    if path in ("~", "~/"):
        return "."
    if path.startswith("~/"):
        return path[2:] or "."
    return path


class Node:
    """One SSH host: a shared, self-healing connection (paramiko), commands and file uploads.

    Args:
        label: the slot name (``user@host:port``, or ``user@instance-id`` for aws).
        spec: where to connect.
        options: the resource options (timeouts, retries, host keys).
    """

    def __init__(self, label: str, spec: HostSpec, options: NodeOptions):
        self.label = label
        self.spec = spec
        self.options = options
        self._client: Any = None
        self._lock = threading.Lock()
        self._down = threading.Event()
        self._closed = threading.Event()

    @property
    def where(self) -> str:
        """The host for messages (``user@host:port``, plus the instance id for aws)."""
        s = self.spec.name
        return s if self.label == s else f"{self.label} ({s})"

    def connect_once(self) -> Any:
        """Open a new connection.

        Raises:
            SSHError: with a message naming the host and the fix.
        """
        import paramiko

        spec, opts = self.spec, self.options
        client = paramiko.SSHClient()
        check = opts.check_host_keys and opts.known_hosts is not None
        if check:
            kh = Path(str(opts.known_hosts)).expanduser()
            if kh.is_file():
                client.load_host_keys(str(kh))
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        key = str(Path(spec.keyfile).expanduser()) if spec.keyfile else None
        if key is not None and not Path(key).is_file():
            raise SSHError(f"node {self.where}: key file {spec.keyfile} does not exist; fix the "
                           "path after the host in its entry (resource_args nodes or "
                           "instances, or node_mapping / aws_mapping in .aup/env.ini)")
        t = opts.connect_timeout
        try:
            # our own TCP connect: paramiko's ``timeout`` also bounds the whole negotiation and,
            # when that runs out first, it goes on to authenticate and fails with "No existing
            # session"; so the negotiation gets 2*t and the banner t of them
            sock = socket.create_connection((spec.host, spec.port), timeout=t)
        except OSError as err:
            client.close()
            raise SSHError(f"node {self.where}: cannot connect: "
                           f"{getattr(err, 'strerror', None) or err}; check that the host is up "
                           "and the port is right") from None
        try:
            client.connect(spec.host, spec.port, spec.user, key_filename=key, timeout=2 * t,
                           banner_timeout=t, auth_timeout=t, allow_agent=key is None,
                           look_for_keys=key is None, sock=sock)
        except paramiko.BadHostKeyException as err:
            client.close()
            sock.close()
            raise SSHError(f"node {self.where}: the host key does not match the one in "
                           f"{opts.known_hosts} ({err}); if the host really changed, remove the "
                           "old line from known_hosts") from None
        except paramiko.AuthenticationException as err:
            client.close()
            sock.close()
            raise SSHError(f"node {self.where}: authentication refused ({err}); check the user "
                           f"name and the key file {spec.keyfile or '(default keys in ~/.ssh)'}"
                           ) from None
        except paramiko.SSHException as err:
            client.close()
            sock.close()
            if "not found in known_hosts" in str(err):
                raise SSHError(
                    f"node {self.where}: its host key is not in {opts.known_hosts}; add it with "
                    f"'mkdir -p {Path(opts.known_hosts).parent} && ssh-keyscan -p "
                    f"{spec.port} {spec.host} >> {opts.known_hosts}', or set "
                    '"check_host_keys": false in resource_args to skip the check') from None
            text = str(err).replace("banner[", "banner: [")  # paramiko joins them
            if "private key" in text and key is not None:
                raise SSHError(f"node {self.where}: the key file {spec.keyfile} cannot be "
                               f"used ({text}); give a private key file (not the .pub) in a "
                               "format paramiko reads (OpenSSH, PEM)") from None
            raise SSHError(f"node {self.where}: SSH error: {text}") from None
        except (TimeoutError, OSError, EOFError) as err:
            client.close()
            sock.close()
            raise SSHError(f"node {self.where}: cannot connect: "
                           f"{getattr(err, 'strerror', None) or err}; check that the host is up "
                           "and the port is right") from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(15)
        return client

    def client(self, retry: bool = True) -> Any:
        """The live connection, reconnecting (``max_retries`` attempts, ``reconn_wait_time``
        seconds apart) when it was lost.

        Raises:
            SSHError: no connection could be made.
        """
        with self._lock:
            c = self._client
            if c is not None:
                t = c.get_transport()
                if t is not None and t.is_active():
                    return c
                c.close()
                self._client = None
            tries = self.options.max_retries if retry else 1
            last: SSHError | None = None
            for i in range(tries):
                if i:
                    log.warning("%s; retrying in %ss (%d/%d)", last, self.options.reconn_wait_time,
                                i + 1, tries)
                    time.sleep(self.options.reconn_wait_time)
                try:
                    self._client = self.connect_once()
                    return self._client
                except SSHError as err:
                    last = err
            assert last is not None
            raise last

    def run(self, command: str, timeout: float = 60.0) -> tuple[int, str]:
        """Run a short command; return its exit status and merged output (text).

        Raises:
            SSHError: the connection failed.
        """
        import paramiko

        client = self.client()
        try:
            chan = client.get_transport().open_session(timeout=timeout)
            chan.set_combine_stderr(True)
            chan.settimeout(timeout)
            chan.exec_command(command)
            data = chan.makefile("rb").read()
            rc = chan.recv_exit_status()
            chan.close()
        except (paramiko.SSHException, OSError, EOFError) as err:
            raise SSHError(f"node {self.where}: command failed: {err}") from None
        return rc, data.decode("utf-8", errors="replace")

    def upload(self, data: bytes, path: str, mode: int | None = None) -> None:
        """Write ``data`` to the remote file ``path`` (through a temporary name, then renamed).

        Raises:
            SSHError: the connection or the write failed.
        """
        import paramiko

        client = self.client()
        tmp = path + ".aup-tmp"
        try:
            sftp = client.open_sftp()
        except paramiko.ChannelException as err:  # no channel at all: not about SFTP
            raise SSHError(f"node {self.where}: cannot write {path}: {err}") from None
        except (paramiko.SSHException, OSError, EOFError) as err:
            transport = client.get_transport()
            if transport is not None and transport.is_active():  # only the SFTP channel failed
                raise SSHError(f"node {self.where}: cannot write {path}: the node gives no SFTP "
                               f"session ({err}); {SFTP_HINT}") from None
            raise SSHError(f"node {self.where}: cannot write {path}: {err}") from None
        try:
            with sftp:
                sftp.putfo(io.BytesIO(data), tmp, confirm=False)
                if mode is not None:
                    sftp.chmod(tmp, mode)
                sftp.posix_rename(tmp, path)
        except (paramiko.SSHException, OSError, EOFError) as err:
            raise SSHError(f"node {self.where}: cannot write {path}: {err}") from None

    @property
    def down(self) -> bool:
        """True after a failed (re)connection, until a background probe connects again."""
        return self._down.is_set()

    def mark_down(self) -> None:
        """Note that the node does not answer and probe it every ``reconn_wait_time`` seconds
        (at least 1 s) in a background thread until it does."""
        with self._lock:
            if self._down.is_set() or self._closed.is_set():
                return
            self._down.set()
        log.warning("node %s does not answer; new jobs go to other nodes until it does",
                    self.where)

        def probe() -> None:
            while not self._closed.wait(max(1.0, self.options.reconn_wait_time)):
                try:
                    self.client(retry=False)
                except SSHError:
                    continue
                self._down.clear()
                log.warning("node %s answers again", self.where)  # as "does not answer" is
                return

        threading.Thread(target=probe, name=f"aup-probe-{self.label}", daemon=True).start()

    def close(self) -> None:
        """Close the connection (and stop probing)."""
        self._closed.set()
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def wrapper_body(prescript: str, postscript: str, kill_grace: float = 2.0) -> str:
    """The remote ``/bin/sh -c`` program that runs one job.

    Positional parameters: ``$1`` the working directory, ``$2`` the remote output file, ``$3``
    the job config path and ``$4`` its JSON text (written there first, so that no separate
    upload is needed), ``$5`` the job script (relative to ``$1``), then the job's argv. It
    prints the process group id first, starts a watchdog that sends SIGTERM to the process
    group when the SSH channel's input ends (the scheduler died or its connection dropped:
    the attempt is LOST and runs again on resume, so this copy must not go on beside it), and
    SIGKILL ``kill_grace`` seconds later (a job that ignores SIGTERM went on, and ran twice
    after the resume); a missing folder, an unwritable config or a missing script ends it
    with a :data:`START_FAILED_MARK` line (the job never ran); it runs the prescript, the job
    (input from ``/dev/null``, output merged and tee'd to the remote output file), the
    postscript, sends SIGTERM to whatever the job left in its process group, and exits with
    the job's status.
    """
    grace = f"{max(0.0, float(kill_grace)):g}"
    fail = "echo \"" + START_FAILED_MARK
    return ("exec 2>&1\n"  # its own stderr is the channel's output (setsid's goes nowhere)
            "echo \"" + PGID_MARK + "$$\"\n"
            # fd 3: the channel's input (an asynchronous list gets /dev/null as its stdin);
            # the watchdog ignores the TERM it sends (and the wrapper's last one)
            "exec 3<&0\n"
            "{ trap '' TERM; cat <&3; kill -TERM 0; sleep " + grace + "; kill -KILL 0; } "
            ">/dev/null 2>&1 &\n"
            "exec 3<&-\n"
            'cd "$1" || { ' + fail + 'cannot cd to $1 on the node"; exit 111; }\n'
            'aup_out=$2\n'
            'printf "%s\\n" "$4" > "$3.tmp" && mv -f "$3.tmp" "$3" || '
            '{ ' + fail + 'cannot write $1/$3 on the node"; exit 112; }\n'
            '[ -e "$5" ] || { ' + fail + 'the job script $1/$5 is gone on the node"; '
            'exit 113; }\n'
            'shift 5\n'
            f"{prescript}\n"
            '{ "$@" </dev/null; echo $? > "$aup_out.rc"; } 2>&1 | tee "$aup_out"\n'
            'aup_rc=$(cat "$aup_out.rc" 2>/dev/null || echo 1); rm -f "$aup_out.rc"\n'
            f"{postscript}\n"
            'trap "" TERM; kill -TERM 0 2>/dev/null\n'
            "exit $aup_rc\n")


def shell_exit_code(rc: int) -> int:
    """A shell's ``128 + n`` for a job killed by signal ``n`` becomes ``-n`` (as locally)."""
    if 128 < rc < 128 + 65:
        try:
            signal.Signals(rc - 128)
            return -(rc - 128)
        except ValueError:
            return rc
    return rc


def stopped_exit_code(rc: int) -> int | None:
    """The exit code of an attempt that aup stopped (SIGTERM, then SIGKILL, to its group).

    ``setsid -w`` exits with the signal's number when the wrapper shell is killed by a signal,
    so 15 or 9 here means the stop's signal killed it: recorded as ``-15`` or ``-9``, as the
    ``cpu`` resource records a job killed by a signal. ``-1`` (no status) gives None.
    """
    if rc == -1:
        return None
    if rc in (signal.SIGTERM, signal.SIGKILL):
        return -rc
    return shell_exit_code(rc)


class RemoteAttempt(ThreadedAttempt):
    """One attempt running on a node (a thread reading its SSH channel)."""

    thread_prefix = "aup-ssh"
    manager: SSHResourceManager

    def __init__(self, manager: SSHResourceManager, spec: AttemptSpec, node: Node):
        super().__init__(manager, spec)
        self.node = node
        self.pgid: int | None = None
        self.chan: Any = None

    def _command(self) -> str:
        m, spec = self.manager, self.spec
        wd = remote_path(m.config.workingdir)
        env = {"PYTHONUNBUFFERED": "1", "AUP_JOB_ID": str(spec.job_id),
               "AUP_ATTEMPT": str(spec.attempt), **spec.env}
        cfg = f"jobs/{spec.job_id}.json"
        argv = [*m.remote_command(), cfg]
        out = f"jobs/{spec.job_id}.{spec.attempt}.out"
        words = ["env", *[f"{k}={v}" for k, v in env.items()], "setsid", "-w", "/bin/sh", "-c",
                 wrapper_body(spec.prescript, spec.postscript, m.options.kill_grace),
                 "aup-job", wd, out, cfg, json.dumps(spec.job_config, indent=1),
                 m.config.script_argv[0], *argv]
        # setsid -w reports a child killed by a signal ("did not exit normally") on its own
        # stderr: noise in the job's output, where it was the only line after a timeout.
        return shlex.join(words) + " 2>/dev/null"

    def _run(self) -> None:
        import paramiko

        spec, node = self.spec, self.node
        outcome = None
        sink = None
        try:
            sink = OutputSink(spec, self.manager.events)
            write_job_config(spec)
            client = node.client()
            chan = client.get_transport().open_session(timeout=node.options.connect_timeout)
            chan.set_combine_stderr(True)
            with self._lock:
                self.chan = chan
            chan.exec_command(self._command())
        except SSHError as err:
            node.mark_down()  # new attempts go elsewhere until it answers again
            outcome = resource_failure(sink.parser if sink else _parser(spec),
                                       FailReason.RESOURCE_ERROR, str(err))
        except (paramiko.SSHException, OSError, EOFError) as err:
            outcome = resource_failure(sink.parser if sink else _parser(spec),
                                       FailReason.RESOURCE_ERROR,
                                       f"node {node.where}: cannot start the job: {err}")
        if outcome is not None:
            if sink is not None:
                sink.close()
            self._finish(outcome)
            return
        assert sink is not None
        lost = None
        start_error = None
        try:
            f = chan.makefile("rb")
            first = True
            while True:
                chunk = f.readline(LINE_LIMIT)
                if not chunk:
                    break
                if start_error is None and chunk.startswith(START_FAILED_MARK.encode()):
                    start_error = chunk[len(START_FAILED_MARK):].decode(
                        "utf-8", "replace").strip()
                    continue
                if first and chunk.startswith(PGID_MARK.encode()):
                    first = False
                    try:
                        self.pgid = int(chunk[len(PGID_MARK):].strip())
                    except ValueError:
                        pass
                    if self.stopped is not None:  # stop() came before the pgid
                        self._signal(signal.SIGTERM)
                    continue
                first = False
                sink.write_chunk(chunk)
            rc = _exit_status(chan)
        except (paramiko.SSHException, OSError, EOFError) as err:
            lost, rc = err, -1
        finally:
            sink.close()
        transport = chan.get_transport()
        alive = transport is not None and transport.is_active()
        if self.stopped is not None:  # timeout, early stop, experiment stop: as asked
            outcome = judge(stopped_exit_code(rc), sink.parser, stopped=self.stopped)
        elif start_error is not None:  # the wrapper could not start the job: it never ran
            outcome = judge(None, sink.parser, start_error=start_error)
        elif rc == -1 and (lost is not None or not alive):
            # The retry goes elsewhere until the node answers a probe again (it went to this
            # node's free slot, and failed there for good with RESOURCE_ERROR).
            node.mark_down()
            outcome = resource_failure(sink.parser, FailReason.LOST,
                                       f"node {node.where}: connection lost while the job ran"
                                       + (f" ({lost})" if lost else ""))
        elif rc == -1:
            outcome = resource_failure(sink.parser, FailReason.KILLED_BY_SIGNAL,
                                       f"killed by a signal on node {node.where}")
        else:  # not stopped, and rc != -1 (the two branches above)
            outcome = judge(shell_exit_code(rc), sink.parser)
        chan.close()
        self._finish(outcome)

    def _finish(self, outcome) -> None:
        self.manager.events.put(end_event(self.spec, outcome))
        self.manager._attempts.ended(self)

    def _signal(self, sig: int, quiet: bool = False) -> None:
        if self.pgid is None:
            return
        try:
            self.node.run(f"kill -{int(sig)} -- -{int(self.pgid)} 2>/dev/null || true",
                          timeout=self.node.options.connect_timeout)
        except SSHError as err:
            if not quiet:
                log.warning("%s: cannot signal the remote job: %s", self.spec.label, err)

    def stop(self, reason: StopReason) -> None:
        """SIGTERM the remote process group now and SIGKILL it after ``kill_grace``."""
        with self._lock:
            if self.stopped is not None:
                return
            self.stopped = reason

        def kill() -> None:
            self._signal(signal.SIGTERM)
            time.sleep(self.manager.options.kill_grace)
            # Always: the channel reports an exit as soon as the wrapper shell dies of the
            # SIGTERM, while a job that ignores it lives on in the group.
            self._signal(signal.SIGKILL, quiet=True)
            if self.chan is not None and not self.chan.exit_status_ready():
                time.sleep(1.0)
                if not self.chan.exit_status_ready():
                    self.chan.close()  # the job cannot be reached: give up the channel

        threading.Thread(target=kill, daemon=True).start()


def _exit_status(chan: Any, timeout: float = 30.0) -> int:
    """The exit status of a channel whose output ended, or -1 when none comes (the channel
    was closed, the connection lost, or the job was killed by a signal)."""
    end = time.monotonic() + timeout
    while not chan.exit_status_ready():
        if chan.closed or time.monotonic() > end:
            return -1
        time.sleep(0.01)
    return int(chan.exit_status)


def _parser(spec: AttemptSpec):
    from aup.job import OutputParser

    return OutputParser(spec.n_labels, spec.label)


class SSHResourceManager(ResourceManager):
    """``resource: node`` (see the module docstring)."""

    kind: ClassVar[str] = "node"
    Options = NodeOptions
    local_files: ClassVar[bool] = False
    #: env.ini attribute holding the host list when resource_args has none.
    env_key: ClassVar[str] = "nodes"
    #: The env.ini key of the hosts, for messages.
    mapping_key: ClassVar[str] = "node_mapping"
    #: resource_args key holding the host list (for messages).
    args_key: ClassVar[str] = "nodes"
    slot_source: ClassVar[str] = 'one per host ("nodes")'
    resume_args: ClassVar[tuple[str, ...]] = ("nodes",)

    def lost_copies_gone_after(self) -> float:
        """A node's watchdog sees the dead scheduler's connection close, sends SIGTERM, and
        SIGKILL ``kill_grace`` seconds later; 2 s more for the connection to be seen closed
        and the kill to land."""
        return float(self.options.kill_grace) + 2.0

    def __init__(self, config, events, env_file: Any = None):
        super().__init__(config, events, env_file)
        self._nodes: dict[str, Node] = {}
        self._attempts: RunningAttempts[RemoteAttempt] = RunningAttempts()

    # -- hosts and slots -----------------------------------------------------------------------
    def entries(self) -> list[str]:
        """The host entries, from resource_args or env.ini."""
        ra = getattr(self.options, self.args_key, None)
        if ra:
            return list(ra)
        return list(getattr(self.env_file, self.env_key, None) or [])

    def labelled_specs(self) -> list[tuple[str, HostSpec]]:
        """``(slot name, host)`` for every entry, in order.

        Raises:
            SSHError: an entry from env.ini is malformed.
        """
        out = []
        for e in self.entries():
            try:
                spec = parse_host(e)
            except ValueError as err:
                raise SSHError(f"{self.kind}: {err}") from None
            out.append((spec.name, spec))
        return out

    @property
    def slots(self) -> list[Slot]:
        try:
            specs = self.labelled_specs()
        except SSHError:
            return []
        return [Slot(f"{self.kind}:{i}/{label}", self.kind, label)
                for i, (label, _) in enumerate(specs)]

    # -- preparation ---------------------------------------------------------------------------
    def remote_command(self) -> list[str]:
        """argv prefix of the script on the node (relative to the remote workingdir)."""
        argv = self.config.script_argv
        first = argv[0]
        if first.endswith(".py"):
            return [self.options.python, first, *argv[1:]]
        if "/" not in first:
            first = "./" + first
        return [first, *argv[1:]]

    def local_script(self) -> Path:
        """The local copy of the script (first word, relative to the experiment file folder)."""
        first = Path(self.config.script_argv[0]).expanduser()
        return first if first.is_absolute() else (self.config.base_dir / first).resolve()

    def check(self) -> None:
        if not self.labelled_specs():
            raise SSHError(f'resource "{self.kind}" has no hosts: give resource_args '
                           f'"{self.args_key}": ["user@host:port keyfile"], or run aup setup '
                           f"to write {self.mapping_key} in .aup/env.ini")
        self.check_key_files()


    def check_key_files(self) -> None:
        """Raise :class:`SSHError` naming every entry whose key file does not exist: a local
        path, checked without connecting (so by ``aup run --check`` too; trial 57)."""
        missing = [f"{label}: key file {spec.keyfile} does not exist"
                   for label, spec in self.labelled_specs()
                   if spec.keyfile and not Path(spec.keyfile).expanduser().is_file()]
        if missing:
            raise SSHError("; ".join(dict.fromkeys(missing)) + "; fix the path after the host "
                           f"in resource_args.{self.args_key} (or {self.mapping_key} in "
                           ".aup/env.ini)")

    def prepare(self) -> None:
        self.check()
        specs = self.labelled_specs()
        for label, spec in specs:
            if label not in self._nodes:
                self._nodes[label] = Node(label, spec, self.options)
        self.check_nodes(lambda node: node.client(retry=False))

    def check_nodes(self, connect: Callable[[Node], Any]) -> None:
        """Connect to every node (``connect``) and check it (workingdir, script); raise one
        :class:`SSHError` that names the problems of all of them (two nodes with unknown host
        keys took two runs to find)."""
        problems = []
        for node in self._nodes.values():
            try:
                connect(node)
                self._check_node(node)
            except SSHError as err:
                problems.append(str(err))
        if len(problems) == 1:
            raise SSHError(problems[0])
        if problems:
            raise SSHError(f"{len(problems)} nodes are not ready:\n  - "
                           + "\n  - ".join(problems))

    def _check_node(self, node: Node) -> None:
        wd = remote_path(self.config.workingdir)
        q = shlex.quote
        rc, out = node.run(f"test -d {q(wd)} && mkdir -p {q(wd + '/jobs')} && "
                           f"command -v setsid >/dev/null && echo ok")
        if rc != 0 or "ok" not in out:
            rc2, _ = node.run(f"test -d {q(wd)}")
            if rc2 != 0:
                raise SSHError(f"node {node.where}: the remote workingdir {self.config.workingdir}"
                               " does not exist; create it there or fix \"workingdir\" (for node/"
                               "aws it is the path on the remote machine)")
            raise SSHError(f"node {node.where}: cannot create {self.config.workingdir}/jobs or "
                           f"'setsid' is missing there: {out.strip()[:200]}")
        first = self.config.script_argv[0]
        target = str(PurePosixPath(wd) / first)
        rc, _ = node.run(f"test -f {q(target)}")
        local = self.local_script()
        if rc == 0 and not self.config.runtime_args.overwrite:
            return
        if not local.is_file():
            if rc == 0:
                log.warning("node %s: runtime_args.overwrite is set but %s does not exist "
                            "locally; using the remote script", node.where, local)
                return
            raise SSHError(f"node {node.where}: the script {first} is not in the remote "
                           f"workingdir {self.config.workingdir}, and there is no local copy at "
                           f"{local} to upload")
        log.info("node %s: uploading %s to %s", node.where, local, target)
        node.upload(local.read_bytes(), target, mode=0o755)

    # -- attempts ------------------------------------------------------------------------------
    def available(self, slot: Slot) -> bool:
        """False for a node that stopped answering, unless every node did (then the attempts
        fail and ``job_failure`` decides, rather than the experiment waiting for ever)."""
        node = self._nodes.get(slot.name)
        if node is None or not node.down:
            return True
        return all(n.down for n in self._nodes.values())

    def start(self, spec: AttemptSpec, slot: Slot) -> None:
        node = self._nodes.get(slot.name)
        if node is None:  # prepare() was not called (library use)
            label_spec = dict(self.labelled_specs()).get(slot.name)
            node = self._nodes.setdefault(slot.name, Node(slot.name, label_spec, self.options))
        self._attempts.start(RemoteAttempt(self, spec, node))

    def stop(self, job_id: int, attempt: int, reason: StopReason) -> None:
        self._attempts.stop(job_id, attempt, reason)

    def close(self) -> None:
        if self._attempts.stop_all():
            self._attempts.wait_empty(self.options.kill_grace + 2)
        for node in self._nodes.values():
            node.close()

