"""Intermediate and multiple results through the real CLI: stored live, under their labels,
and robust to huge, non-UTF-8 and non-finite output."""

from __future__ import annotations

import math
from pathlib import Path

from conftest import run_cli
from lifecycle_helpers import attempts, finish, jobs, query, setup, start_cli, wait_for

LIVE = """
import os, sys, time
print("#Auptimizer: 0.9", flush=True)
print("#Auptimizer: 0.7", flush=True)
while not os.path.exists("go"):
    time.sleep(0.02)
print("#Auptimizer: 0.5", flush=True)
"""


def test_intermediate_results_are_stored_live(tmp_path: Path):
    exp = setup(tmp_path, LIVE, n_parallel=1,
                parameter_config=[{"name": "x", "type": "choice", "range": [1]}],
                resource_args={"track_intermediate_results": True})
    proc = start_cli(str(exp), cwd=tmp_path)
    try:
        # another process reads the database while the job still runs
        rows = wait_for(lambda: len(r := query(tmp_path, "SELECT * FROM intermediate_result "
                                                         "ORDER BY num")) == 2 and r,
                        what="2 intermediate results")
        assert [r["score"] for r in rows] == [0.9, 0.7]
        assert [r["num"] for r in rows] == [0, 1]
        assert all(r["receive_time"] > 0 for r in rows)
        assert jobs(tmp_path)[0]["status"] == "RUNNING"
    finally:
        (tmp_path / "go").touch()
    rc, out, err = finish(proc, tmp_path)
    assert rc == 0, out + err
    (job,) = jobs(tmp_path)
    assert job["status"] == "FINISHED" and job["score"] == 0.5
    rows = query(tmp_path, "SELECT score FROM intermediate_result ORDER BY num")
    assert [r["score"] for r in rows] == [0.9, 0.7, 0.5]


MULTI = """
M = "#Auptimizer:"
print(M + "0.9,10,100")
print(M + "garbage,1,2")     # logged and skipped
print(M + "0.8,11")          # wrong count: logged and skipped
print(M + "0.7,12,120")
"""


def test_multiple_results_under_labels(tmp_path: Path):
    exp = setup(tmp_path, MULTI, n_parallel=1,
                parameter_config=[{"name": "x", "type": "choice", "range": [1]}],
                resource_args={"multi_res_labels": ["flops", "params"],
                               "track_intermediate_results": True})
    res = run_cli(str(exp), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    (job,) = jobs(tmp_path)
    assert job["status"] == "FINISHED" and job["score"] == 0.7  # the primary value
    rows = query(tmp_path, "SELECT * FROM multiple_result ORDER BY mrid")
    assert [(r["label_order"], r["value"]) for r in rows] == [(1, 10), (2, 100), (1, 12),
                                                              (2, 120)]
    assert [r["is_last_result"] for r in rows] == [0, 0, 1, 1]
    inter = query(tmp_path, "SELECT irid, score FROM intermediate_result ORDER BY num")
    assert [r["score"] for r in inter] == [0.9, 0.7]
    assert rows[2]["irid"] == inter[1]["irid"]  # linked to its intermediate row
    # 'aup best' shows them (trial 55: only export, to_dataframe and the dashboard did)
    best = run_cli("best", "1", cwd=tmp_path)
    assert "its other results (multi_res_labels):\n  flops = 12.0\n  params = 120.0" \
        in best.stdout, best.stdout
    import json

    assert json.loads(run_cli("best", "1", "--json", cwd=tmp_path).stdout)["results"] == {
        "flops": 12, "params": 120}


def test_multiple_results_without_tracking(tmp_path: Path):
    exp = setup(tmp_path, 'print("#Auptimizer:1.5,2.5")\n', n_parallel=1,
                parameter_config=[{"name": "x", "type": "choice", "range": [1]}],
                resource_args={"multi_res_labels": ["acc"]})
    assert run_cli(str(exp), cwd=tmp_path).returncode == 0
    rows = query(tmp_path, "SELECT * FROM multiple_result")
    assert [(r["value"], r["is_last_result"], r["irid"]) for r in rows] == [(2.5, 1, None)]
    assert query(tmp_path, "SELECT * FROM intermediate_result") == []


def test_extra_values_without_labels_are_ignored(tmp_path: Path):
    exp = setup(tmp_path, 'print("#Auptimizer:1.5,2.5,3.5")\n', n_parallel=1,
                parameter_config=[{"name": "x", "type": "choice", "range": [1]}])
    assert run_cli(str(exp), cwd=tmp_path).returncode == 0
    assert jobs(tmp_path)[0]["score"] == 1.5
    assert query(tmp_path, "SELECT * FROM multiple_result") == []


def test_a_decimal_comma_is_warned_about_once(tmp_path: Path):
    """Trial 55: '#Auptimizer:0,210' (a decimal comma) was silently the score 0, which won the
    experiment; '1,234.5' was 1. The values are still read as 2.0 read them, but said once."""
    script = ('import json, sys\nx = json.load(open(sys.argv[-1]))["x"]\n'
              'print("#Auptimizer:" + {0: "0,210", 1: "1,234.5", 2: "0.5"}[x])\n')
    exp = setup(tmp_path, script, n_parallel=1, proposer="sequence",
                parameter_config=[{"name": "x", "type": "int", "range": [0, 2]}])
    res = run_cli(str(exp), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert [j["score"] for j in jobs(tmp_path)] == [0.0, 1.0, 0.5]
    err = res.stderr
    assert err.count("values on a result line") == 1, err
    assert "job 1 printed 2 values on a result line (0, 210)" in err, err
    assert "only the first, 0, is its score" in err and "decimal comma" in err, err


HUGE = """
import sys
out = sys.stdout.buffer
out.write(b"\\xff\\xfe not utf-8 \\xc3\\x28\\n")
block = b"x" * (1 << 20)
for _ in range(24):              # 24 MiB on one line without a newline...
    out.write(block)
out.write(b"#Auptimizer: 0.125\\n")  # ...that ends with the marker
for i in range(20000):           # and many short lines
    out.write(b"line %d \\x80\\n" % i)
out.write(b"#Auptimizer: 0.25\\n")
out.flush()
"""


def test_huge_and_non_utf8_output(tmp_path: Path):
    exp = setup(tmp_path, HUGE, n_parallel=1,
                parameter_config=[{"name": "x", "type": "choice", "range": [1]}],
                resource_args={"track_intermediate_results": True})
    res = run_cli(str(exp), cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    (job,) = jobs(tmp_path)
    assert job["status"] == "FINISHED" and job["score"] == 0.25
    scores = [r["score"] for r in query(tmp_path, "SELECT score FROM intermediate_result "
                                                  "ORDER BY num")]
    assert scores == [0.125, 0.25]
    (att,) = attempts(tmp_path, job["jid"])
    assert len(att["output_tail"]) <= 4096
    out = Path(att["output_path"])
    assert out.stat().st_size > 24 << 20  # the whole output is on disk...
    assert "\ufffd" in out.read_bytes()[:100].decode("utf-8")  # ...as valid UTF-8


NONFINITE = """
M = "#Auptimizer:"
print(M, "0.5")
print(M, "nan")    # an intermediate NaN is stored as NULL
print(M, "-inf")
print(M, "0.25")
"""


def test_non_finite_intermediate_values(tmp_path: Path):
    exp = setup(tmp_path, NONFINITE, n_parallel=1,
                parameter_config=[{"name": "x", "type": "choice", "range": [1]}],
                resource_args={"track_intermediate_results": True})
    assert run_cli(str(exp), cwd=tmp_path).returncode == 0
    scores = [r["score"] for r in query(tmp_path, "SELECT score FROM intermediate_result "
                                                  "ORDER BY num")]
    assert scores[0] == 0.5 and scores[1] is None and scores[2] is None and scores[3] == 0.25
    assert jobs(tmp_path)[0]["score"] == 0.25
    assert not any(isinstance(s, float) and math.isnan(s) for s in scores)


RETRIED = """
import os, sys
a = int(os.environ["AUP_ATTEMPT"])
for v in (10 + a, 20 + a):
    print("#Auptimizer:", v, flush=True)
if a == 0:
    sys.exit(1)
"""


def test_a_retried_job_keeps_the_results_of_its_last_attempt(tmp_path: Path):
    exp = setup(tmp_path, RETRIED, n_parallel=1,
                parameter_config=[{"name": "x", "type": "choice", "range": [1]}],
                job_failure={"job_retries": 1},
                resource_args={"track_intermediate_results": True})
    assert run_cli(str(exp), cwd=tmp_path).returncode == 0
    (job,) = jobs(tmp_path)
    assert job["score"] == 21 and job["n_attempts"] == 2
    rows = query(tmp_path, "SELECT num, score FROM intermediate_result ORDER BY num")
    assert [(r["num"], r["score"]) for r in rows] == [(0, 11), (1, 21)]


CHATTY = """
import sys
for i in range(5000):
    sys.stdout.write(f"#Auptimizer:{i},{2 * i}\\n")
"""


def test_a_chatty_job_keeps_every_result_in_order(tmp_path: Path):
    # thousands of lines arrive together: written in batches, nothing lost or reordered
    exp = setup(tmp_path, CHATTY, n_parallel=1,
                parameter_config=[{"name": "x", "type": "choice", "range": [1]}],
                resource_args={"track_intermediate_results": True, "multi_res_labels": ["d"]})
    res = run_cli(str(exp), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert jobs(tmp_path)[0]["score"] == 4999
    rows = query(tmp_path, "SELECT i.num, i.score, m.value, m.is_last_result FROM "
                           "intermediate_result i JOIN multiple_result m ON m.irid = i.irid "
                           "ORDER BY i.irid")
    assert [(r["num"], r["score"], r["value"]) for r in rows] == [
        (i, i, 2 * i) for i in range(5000)]
    assert [r["num"] for r in rows if r["is_last_result"]] == [4999]
