"""The CLI's progress bar and summary, rendered on a fake terminal."""

from __future__ import annotations

import io
import queue
from pathlib import Path

from rich.console import Console

from aup.cli import ProgressObserver
from aup.config import load_config
from aup.experiment import Experiment
from aup.store.store import Store
from tests.conftest import QUADRATIC, write_experiment, write_script


def _run_with_bar(cfg, tmp_path: Path):
    """Run ``cfg`` with the progress bar drawn on a fake terminal; returns (observer, store,
    experiment, result, the terminal's text)."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    observer = ProgressObserver(console, enabled=True)
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    exp = Experiment.create(cfg, store, observer=observer)
    result = exp.run()
    observer.close()
    return observer, store, exp, result, out.getvalue()


def test_progress_bar_shows_done_total_failed_and_best(tmp_path: Path) -> None:
    write_script(tmp_path, "quad.py", QUADRATIC)
    cfg = load_config(write_experiment(
        tmp_path, script="quad.py", n_samples=4, target="min", random_seed=1,
        parameter_config=[{"name": "x", "range": [-1, 1], "type": "float"}]))
    observer, store, exp, result, text = _run_with_bar(cfg, tmp_path)
    assert isinstance(exp.events, queue.Queue)
    assert "4/4" in text and "failed 0" in text
    best = min(j["score"] for j in store.jobs(exp.eid))
    assert f"best {best:.6g}" in text
    assert result.best["score"] == best


def test_progress_best_follows_the_largest_budget(tmp_path: Path) -> None:
    # Found by a fresh-user trial: with hyperband the bar showed a score of a small budget as
    # the best, while the summary (largest budget only) named another job.
    write_script(tmp_path, "train.py", (
        "import json, sys\n"
        "cfg = json.load(open(sys.argv[-1]))\n"
        "small = float(cfg['n_iterations']) < 9\n"
        "print('#Auptimizer:', cfg['x'] - (10 if small else 0))\n"))
    cfg = load_config(write_experiment(
        tmp_path, script="train.py", proposer="hyperband", max_iter=9, eta=3, target="min",
        parameter_config=[{"name": "x", "range": [-1, 1], "type": "float"}]))
    observer, store, exp, result, text = _run_with_bar(cfg, tmp_path)
    best = result.best["score"]
    assert result.best["budget"] == 9 and best > -2
    assert min(j["score"] for j in store.jobs(exp.eid)) < -9  # a smaller budget scored lower
    last = text.rsplit("best ", 1)[1].split()[0]
    assert last == f"{best:.6g}"
    assert observer.best == best
