"""Shared test helpers: write experiments and scripts, run the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pg_fixture import pg_url, postgres_server  # noqa: F401 - shared PostgreSQL fixtures

REPO = Path(__file__).resolve().parents[1]


def write_script(folder: Path, name: str, body: str, executable: bool = False) -> Path:
    """Write a job script (dedented) into ``folder``."""
    path = folder / name
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    if executable:
        path.chmod(0o755)
    return path


def write_experiment(folder: Path, name: str = "experiment.json", **config: Any) -> Path:
    """Write an experiment.json into ``folder`` with the given keys."""
    path = folder / name
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")
    return path


def run_cli(*args: str, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None,
            **kwargs: Any) -> subprocess.CompletedProcess:
    """Run ``python -m aup ARGS`` in ``cwd`` and return the completed process (text mode)."""
    full_env = dict(os.environ)
    full_env.pop("AUP_DB", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "aup", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


#: A hyperband job (``max_iter`` 3) that fails at the largest budget and reports ``x`` below it.
FAILS_AT_LARGEST_BUDGET = """
import json, sys
cfg = json.load(open(sys.argv[-1]))
if cfg['n_iterations'] >= 3:
    sys.exit(4)
print('#Auptimizer:', cfg['x'])
"""

QUADRATIC = """
import json, sys
cfg = json.load(open(sys.argv[-1]))
x = cfg["x"]
print("#Auptimizer:", (x - 0.3) ** 2)
"""


@pytest.fixture
def quadratic_experiment(tmp_path: Path):
    """Factory: an experiment over one float ``x`` in [-1, 1] minimizing (x-0.3)^2."""

    def make(**overrides: Any) -> Path:
        write_script(tmp_path, "quad.py", QUADRATIC)
        cfg = {"script": "quad.py", "proposer": "random", "n_samples": 5, "target": "min",
               "parameter_config": [{"name": "x", "range": [-1, 1], "type": "float"}]}
        cfg.update(overrides)
        return write_experiment(tmp_path, **cfg)

    return make


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of the shipped examples (their jobs/ folders are written next to the experiment
    files, and the repository stays clean); the tests run them from another folder."""
    copy = tmp_path / "examples"
    shutil.copytree(REPO / "examples", copy,
                    ignore=shutil.ignore_patterns("jobs", ".aup", "aup_models", "__pycache__"))
    return copy
