"""``resource: ray``: each job attempt is a Ray task on a Ray cluster.

Install with ``pip install 'auptimizer[ray]'``. ``resource_args``:

* ``address``: the cluster (``host:port`` of the head's GCS, or ``auto``). Absent: a local
  Ray instance is started for the experiment and shut down at its end. A ``host:port`` that
  does not answer, or answers as another service, is reported before any job starts. Ray
  Client addresses (``ray://``) are refused at load: Ray Client has no streaming generator
  tasks, which carry the jobs' output.
* ``num_cpus`` (default 1) and ``num_gpus`` (default 0) reserved per job; Ray sets
  ``CUDA_VISIBLE_DEVICES`` for the GPUs it gives a job.
* ``ship_workingdir`` (default true): ``workingdir`` is sent to the workers with Ray's runtime
  environment (``jobs/`` and ``.aup/`` excluded) and the job runs in that copy; false runs the
  job in ``workingdir`` itself on the worker (a shared file system).
* ``runtime_env``: more runtime environment keys (``pip``, ``env_vars``...), merged in.

There are ``n_parallel`` slots; Ray places each task where its resources are free (tasks wait in
Ray's queue while the cluster is full, and ``job_timeout`` counts that wait too). The task body
(:mod:`aup.resources.ray_task`) is standard-library only and is shipped by value, so workers do
not need Auptimizer. Its output streams back while the job runs (a streaming generator task)
into the local ``jobs/<jid>.<attempt>.out`` and through the same parser as local jobs; stopping
cancels the task, which kills the job's process group (SIGTERM, SIGKILL after ``kill_grace``).
A task lost with its worker or node ends with ``LOST`` and is retried by the loop when
``job_failure.job_retries`` allows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import Field

from aup.errors import AupError, Problem, install_hint
from aup.job import FailReason, OutputParser, StopReason, judge
from aup.resources.base import (
    AttemptSpec,
    ResourceManager,
    ResourceOptions,
    RunningAttempts,
    Slot,
    ThreadedAttempt,
)
from aup.resources.local import kill_group, write_job_config
from aup.resources.ray_task import process_namespace
from aup.resources.stream import OutputSink, end_event, resource_failure

log = logging.getLogger(__name__)


class RayOptions(ResourceOptions):
    """``resource_args`` of ``ray`` (see the module docstring)."""

    address: str | None = None
    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    ship_workingdir: bool = True
    runtime_env: dict[str, Any] = Field(default_factory=dict)
    connect_timeout: float = Field(default=5.0, gt=0)
    warm_up_timeout: float = Field(default=60.0, ge=0)
    check_resources: bool = True


#: What to give as the address, for the messages.
_GCS_HINT = ("give the address 'ray start --head' printed after --address= (the head's GCS, "
             "port 6379 by default), or 'auto' on a machine of the cluster")
#: An HTTP/2 client's first bytes (the connection preface and an empty SETTINGS frame): a
#: gRPC server, such as Ray's GCS, answers with a SETTINGS frame of its own.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def ray_client_problem(address: str) -> str | None:
    """Why a Ray Client address (``ray://host:10001``) cannot be used, or None for another
    address: the jobs' output streams back through a streaming generator task, which Ray
    Client does not support (every job failed with a RESOURCE_ERROR; trial 57)."""
    if not address.startswith("ray://"):
        return None
    return (f"{address} is a Ray Client address, which resource 'ray' cannot use (the jobs' "
            "output streams back through a streaming generator task, and Ray Client does not "
            f"support those); run aup on a machine that reaches the cluster's head and "
            f"{_GCS_HINT}")


def check_address(address: str, timeout: float,
                  source: str = "resource_args.address") -> None:
    """Raise :class:`AupError` when a ``host:port`` address is not a Ray cluster's GCS: it
    refuses connections, or answers as another service (the dashboard's 8265, a web server).
    ``ray.init`` retried such an address for ever, deaf to Ctrl-C (trial 57); a GCS speaks
    gRPC, so it answers an HTTP/2 preface with a SETTINGS frame within ``timeout`` seconds.
    Not probed with ``RAY_USE_TLS`` set (the GCS then expects TLS first). ``source``: where
    the address came from (``resource_args.address`` or ``RAY_ADDRESS``), named in the fix."""
    problem = ray_client_problem(address)
    if problem:
        raise AupError(problem)
    if address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise AupError(f"{source} {address!r} is not 'host:port' (the Ray head's GCS "
                       "address, e.g. 127.0.0.1:6379) or 'auto'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            if os.environ.get("RAY_USE_TLS", "").lower() in ("1", "true"):
                return
            sock.settimeout(timeout)
            sock.sendall(_HTTP2_PREFACE)
            head = b""
            with contextlib.suppress(OSError):
                while len(head) < 9:
                    chunk = sock.recv(9 - len(head))
                    if not chunk:
                        break
                    head += chunk
    except OSError as err:
        raise AupError(f"the Ray cluster at {address} does not answer ({err.strerror or err}); "
                       f"start it with 'ray start --head' or fix {source}") from None
    if len(head) < 9 or head[3] != 4:
        raise AupError(f"{address} ({source}) answers, but not as a Ray cluster: it is "
                       f"another service (the Ray dashboard's port 8265 is not the cluster's "
                       f"address); {_GCS_HINT}")


def reap_group(pgid: int, grace: float) -> None:
    """Wait up to ``grace`` seconds for process group ``pgid`` to end, then SIGKILL it.

    The backstop for a stopped job on this machine: Ray may kill the worker (a forced cancel,
    the driver disconnecting) before the task's own clean-up killed the job's group.
    """
    end = time.monotonic() + grace
    while True:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        if time.monotonic() >= end:
            break
        time.sleep(0.05)
    kill_group(pgid, signal.SIGKILL)


class RayAttempt(ThreadedAttempt):
    """One attempt as a Ray streaming-generator task, followed by a driver thread."""

    thread_prefix = "aup-ray"
    manager: RayResourceManager

    def __init__(self, manager: RayResourceManager, spec: AttemptSpec):
        super().__init__(manager, spec)
        self.gen: Any = None
        #: The job's process group when it runs in this process's PID namespace, else None.
        self.local_pgid: int | None = None

    def _run(self) -> None:
        import ray

        spec, m = self.spec, self.manager
        try:
            sink = OutputSink(spec, m.events)
        except OSError as err:
            m._finish(self, judge(None, OutputParser(spec.n_labels, spec.label),
                                  start_error=f"cannot write {spec.output_path}: {err}"))
            return
        outcome = None
        code = None
        try:
            write_job_config(spec)
            job = {"argv": m.task_command(), "config_path": f"jobs/{spec.job_id}.json",
                   "config": spec.job_config, "prescript": spec.prescript,
                   "postscript": spec.postscript, "kill_grace": m.options.kill_grace,
                   "env": {"PYTHONUNBUFFERED": "1", "AUP_JOB_ID": str(spec.job_id),
                           "AUP_ATTEMPT": str(spec.attempt), **spec.env}}
            with self._lock:
                if self.stopped is None:
                    self.gen = m.remote_task(job)
            if self.gen is None:
                outcome = judge(None, sink.parser, stopped=self.stopped)
            else:
                for ref in self.gen:
                    kind, data = ray.get(ref)
                    if kind == "pgid":
                        if data["namespace"] and data["namespace"] == process_namespace():
                            self.local_pgid = int(data["pgid"])
                    elif kind == "out":
                        for piece in data.splitlines(keepends=True):
                            sink.write_chunk(piece)
                    elif kind == "exit":
                        code = int(data)
        except Exception as err:  # noqa: BLE001 - every Ray failure ends the attempt
            outcome = self._failure(err, sink.parser)
        finally:
            sink.close()
        if self.stopped is not None and self.local_pgid is not None:
            reap_group(self.local_pgid, m.options.kill_grace + 1)
        if outcome is None:
            outcome = judge(code, sink.parser, stopped=self.stopped)
        m._finish(self, outcome)

    def _failure(self, err: Exception, parser: OutputParser):
        import ray.exceptions as rex

        if self.stopped is not None or isinstance(err, rex.TaskCancelledError):
            return judge(None, parser, stopped=self.stopped or StopReason.EXPERIMENT_STOP)
        if isinstance(err, rex.RuntimeEnvSetupError):
            return resource_failure(parser, FailReason.RESOURCE_ERROR,
                                    f"Ray could not set up the runtime environment: "
                                    f"{str(err).strip().splitlines()[-1][:300]}")
        if isinstance(err, rex.WorkerCrashedError | rex.NodeDiedError | rex.ObjectLostError
                      | rex.OwnerDiedError):
            return resource_failure(parser, FailReason.LOST, f"Ray lost the task: {err!r}"[:400])
        if isinstance(err, rex.RayTaskError):
            text = str(err).strip().splitlines()
            return judge(None, parser, start_error=f"the Ray task failed: "
                         f"{text[-1][:300] if text else err!r}")
        return resource_failure(parser, FailReason.RESOURCE_ERROR, f"Ray error: {err!r}"[:400])

    def stop(self, reason: StopReason) -> None:
        """Cancel the task (its body kills the job's process group)."""
        import ray

        with self._lock:
            if self.stopped is not None:
                return
            self.stopped = reason
            gen = self.gen
        if gen is None:
            return
        try:
            ray.cancel(gen)
        except Exception as err:  # noqa: BLE001
            log.warning("%s: cannot cancel the Ray task: %r", self.spec.label, err)

        def force() -> None:
            time.sleep(self.manager.options.kill_grace + 5)
            if self.spec.key in self.manager._attempts:
                try:
                    ray.cancel(gen, force=True)
                except Exception:  # noqa: BLE001 - best effort
                    pass

        threading.Thread(target=force, daemon=True).start()


class RayResourceManager(ResourceManager):
    """``resource: ray`` (see the module docstring)."""

    kind: ClassVar[str] = "ray"
    Options = RayOptions
    #: The runtime environment too: one that cannot be set up fails every job, and the
    #: resume after fixing it must use the fix (trial 57).
    resume_args: ClassVar[tuple[str, ...]] = ("address", "runtime_env")

    def __init__(self, config, events, env_file: Any = None):
        super().__init__(config, events, env_file)
        self._attempts: RunningAttempts[RayAttempt] = RunningAttempts()
        self._owns = False
        self._remote: Any = None

    @classmethod
    def check_config(cls, config) -> list[Problem]:
        """``save_model`` needs the jobs to run in ``workingdir`` itself: with
        ``ship_workingdir`` the best job's model would be saved in Ray's temporary copy of the
        folder and be lost with the Ray session."""
        options = config.resource_options
        address = getattr(options, "address", None)
        if address and ray_client_problem(address):
            host = address.removeprefix("ray://").rpartition(":")[0] or "HEAD"
            return [Problem("resource_args.address", "a Ray Client address cannot be used: "
                            "the jobs' output streams back through a streaming generator "
                            "task, which Ray Client does not support", address,
                            f"run aup where it reaches the cluster's head and give the "
                            f"head's GCS address, e.g. \"{host}:6379\" (what 'ray start "
                            "--head' printed after --address=), or \"auto\" on a machine "
                            "of the cluster")]
        if config.resource_args.save_model and getattr(options, "ship_workingdir", False):
            return [Problem("resource_args.save_model", "with the ray resource and "
                            "ship_workingdir true, the model would be saved in Ray's temporary "
                            "copy of workingdir and lost with the Ray session", True,
                            'set resource_args "ship_workingdir": false (jobs then run in '
                            "workingdir itself, which every Ray node must see)")]
        return []

    @property
    def slots(self) -> list[Slot]:
        return [Slot(f"ray:{i}", "ray", f"ray:{i}") for i in range(self.config.n_parallel)]

    def prepare(self) -> None:
        try:
            import ray
        except ImportError:
            raise AupError(f"resource 'ray' needs Ray: {install_hint('ray')}") from None
        # Without an address: the cluster RAY_ADDRESS names (as Ray does), else a new local
        # Ray, also when a 'ray start' cluster runs on this machine (ray.init() would attach
        # to it, and then refuses num_cpus).
        address = self.options.address or os.environ.get("RAY_ADDRESS") or None
        if address:
            check_address(address, self.options.connect_timeout,
                          "resource_args.address" if self.options.address else
                          "the RAY_ADDRESS variable")
        env = dict(self.options.runtime_env)
        if self.options.ship_workingdir:
            env.setdefault("working_dir", str(self.config.workingdir_path))
            env.setdefault("excludes", ["jobs/", ".aup/", "__pycache__/"])
        if ray.is_initialized():
            # Connected by the caller: a working directory can only be shipped at connection
            # time (Ray's job-level runtime environment), so it must not be asked for here.
            if self.options.ship_workingdir:
                raise AupError("Ray is already initialized in this process; resource 'ray' "
                               "connects by itself to ship workingdir. Call ray.shutdown() "
                               'first, or set resource_args "ship_workingdir": false')
        else:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False, "runtime_env": env or None}
            if address:
                kwargs["address"] = address
            else:
                kwargs["address"] = "local"
                kwargs["num_cpus"] = max(1, int(self.config.n_parallel * self.options.num_cpus))
            try:
                with _signal_handlers_kept():
                    ray.init(**kwargs)
            except (TypeError, ValueError) as err:  # Ray's checks of the runtime environment
                raise AupError(f"Ray refused the runtime environment (resource_args.runtime_env,"
                               f" and the workingdir it ships unless ship_workingdir is false): "
                               f"{err}") from None
            except Exception as err:  # noqa: BLE001 - Ray raises many kinds here
                raise AupError(f"cannot connect to the Ray cluster "
                               f"{address or '(local)'}: {err}") from None
            self._owns = True
        from ray import cloudpickle

        from aup.resources import ray_task

        cloudpickle.register_pickle_by_value(ray_task)
        self._remote = ray.remote(ray_task.run_job)
        if self.options.check_resources:
            self._check_resources(ray)
        self._warm_up(ray, ray.remote(ray_task.warm_up))

    def _check_resources(self, ray: Any) -> None:
        """Raise :class:`AupError` when no node of the cluster can ever give one job its
        ``num_cpus``/``num_gpus`` (the jobs would wait for ever)."""
        need = {"CPU": self.options.num_cpus, "GPU": self.options.num_gpus}
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if any(all(res.get(k, 0.0) >= v for k, v in need.items() if v > 0) for res in nodes):
            return
        if self._owns:
            ray.shutdown()
            self._owns = False
        have = ", ".join(f"{{CPU: {r.get('CPU', 0):g}, GPU: {r.get('GPU', 0):g}}}" for r in nodes)
        raise AupError(f"no node of the Ray cluster has num_cpus={self.options.num_cpus:g} and "
                       f"num_gpus={self.options.num_gpus:g} for one job (nodes: {have or 'none'})"
                       "; lower resource_args num_cpus/num_gpus, or set \"check_resources\": "
                       "false for an autoscaling cluster that adds such nodes")

    def _warm_up(self, ray: Any, warm: Any) -> None:
        """Start one worker per slot now (a no-op task each); warn when the cluster cannot give
        a job's ``num_cpus``/``num_gpus`` within ``warm_up_timeout`` seconds."""
        refs = [warm.options(num_cpus=self.options.num_cpus, num_gpus=self.options.num_gpus,
                             max_retries=0).remote() for _ in range(self.config.n_parallel)]
        ready, waiting = ray.wait(refs, num_returns=len(refs),
                                  timeout=self.options.warm_up_timeout)
        for ref in waiting:
            ray.cancel(ref, force=True)
        if not ready:
            log.warning("ray: no task with num_cpus=%s, num_gpus=%s could run within %ss; jobs "
                        "wait until the cluster has room (cluster resources: %s)",
                        self.options.num_cpus, self.options.num_gpus,
                        self.options.warm_up_timeout, ray.cluster_resources())

    def task_command(self) -> list[str]:
        """The job's argv prefix on the worker (``{python}``: the worker's interpreter)."""
        argv = self.config.script_argv
        first = argv[0]
        if not self.options.ship_workingdir:
            return [*self.config.job_command()]
        path = self.config.script_path()
        import os

        if first.endswith(".py") and not os.access(path, os.X_OK):
            return ["{python}", first, *argv[1:]]
        return [first if "/" in first else "./" + first, *argv[1:]]

    def remote_task(self, job: dict[str, Any]) -> Any:
        """Submit one task; returns its ObjectRefGenerator."""
        opts: dict[str, Any] = {"num_cpus": self.options.num_cpus,
                                "num_gpus": self.options.num_gpus, "max_retries": 0,
                                "num_returns": "streaming"}
        if not self.options.ship_workingdir:
            job = {**job, "cwd": str(self.config.workingdir_path)}
        return self._remote.options(**opts).remote(job)

    def start(self, spec: AttemptSpec, slot: Slot) -> None:
        self._attempts.start(RayAttempt(self, spec))

    def _finish(self, att: RayAttempt, outcome) -> None:
        self.events.put(end_event(att.spec, outcome))
        self._attempts.ended(att)

    def stop(self, job_id: int, attempt: int, reason: StopReason) -> None:
        self._attempts.stop(job_id, attempt, reason)

    def close(self) -> None:
        self._attempts.stop_all()
        self._attempts.wait_empty(self.options.kill_grace + 3)
        if self._owns:
            import ray

            ray.shutdown()
            self._owns = False


@contextlib.contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """Restore the SIGTERM and SIGINT handlers after the block (in the main thread).

    ``ray.init`` installs its own SIGTERM handler (``sys.exit(15)``) over the one ``aup run``
    had installed to stop cleanly: a ``kill <pid>`` during a Ray run then exited 15 with the
    jobs running and no resume hint.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None and signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)
