"""The example of docs/lifecycle.md runs as documented."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO, run_cli
from lifecycle_helpers import experiment, jobs


def test_lifecycle_doc_example_runs(tmp_path: Path):
    text = (REPO / "docs" / "lifecycle.md").read_text(encoding="utf-8")
    files = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", text, re.S)
    assert {name for name, _ in files} == {"train.py", "experiment.json"}
    for name, body in files:
        (tmp_path / name).write_text(body, encoding="utf-8")
    res = run_cli("experiment.json", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert experiment(tmp_path)["status"] == "FINISHED"
    assert len(jobs(tmp_path)) == 8
    assert "best model saved" in res.stdout
    assert list((tmp_path / "aup_models" / "models_1").glob("model.txt"))


def test_every_failure_reason_is_in_the_docs_table():
    # RESOURCE_ERROR (SSH, Ray) was recorded and filterable on the dashboard but undocumented.
    from aup.job import FailReason

    text = (REPO / "docs" / "lifecycle.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", text, re.M))
    assert {r.value for r in FailReason} <= documented
