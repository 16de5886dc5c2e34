"""pytest plugin: a real Ray head (``ray start --head --block``) on 127.0.0.1 with 2 CPUs.

The head runs in the foreground of its own process group (started by us, so stopping it kills
only what we started), with its own temporary folder; it is stopped after the session.  Each
experiment connects to it by itself (the working directory is shipped at connection time).

Use with ``pytest_plugins = ["fixtures_ray"]`` in a test module.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory) -> str:
    """The address (``127.0.0.1:port``) of a 2-CPU Ray head, connected from this process."""
    try:
        import ray
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("ray is not installed under CI (pip install -e '.[test]')")
        pytest.skip("ray is not installed")
    ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    # A short folder: Ray's socket paths must stay under 107 bytes.
    temp = Path("/tmp") / f"aupray{os.getpid()}"
    log = tmp_path_factory.mktemp("ray") / "head.log"
    # Loopback only: no token authentication (Ray >= 2.5x), so that a token file another Ray
    # on this machine rewrites cannot lock the tests out. The experiments inherit this.
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [ray_bin, "start", "--head", "--block", "--num-cpus", "2", "--num-gpus", "0",
             "--port", str(port), "--node-ip-address", "127.0.0.1", "--include-dashboard",
             "false", "--disable-usage-stats", "--temp-dir", str(temp)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        end = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {proc.returncode}: "
                                   f"{log.read_text()[-3000:]}")
            if time.monotonic() > end:
                raise RuntimeError(f"the Ray head did not start: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for sig, wait in ((signal.SIGINT, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the head left in its group
        except ProcessLookupError:
            pass
        shutil.rmtree(temp, ignore_errors=True)
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved
