"""Browser tests: Debian's Chromium (headless, driven by Playwright) against the dashboard served
on a free loopback port, over databases filled by real experiment runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAILS_AT_LARGEST_BUDGET, write_script
from dashboard_support import (
    SLOW_SCRIPT,
    db_url,
    expected_grid,
    experiment_status,
    serve,
    shared_grid_db,
    write_json,
)


@pytest.fixture(scope="module")
def grid_db(tmp_path_factory):
    return shared_grid_db(tmp_path_factory)

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage"]  # containers often have a tiny /dev/shm


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing (scripts/test.sh installs chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A page that records console errors and uncaught exceptions."""
    ctx = browser.new_context()
    pg = ctx.new_page()
    pg.set_default_timeout(15000)
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors
    yield pg
    ctx.close()


def test_experiment_list_shows_status_and_best(grid_db, page):
    with serve(db_url(grid_db)) as base:
        page.goto(base + "/")
        page.wait_for_selector("#experiments tbody tr[data-eid='1']")
        row = page.locator("#experiments tbody tr[data-eid='1']")
        assert "FINISHED" in row.inner_text()
        assert row.locator(".best-score").inner_text() == "0"
        assert page.locator("#experiments tbody tr[data-eid='2'] .best-score").inner_text() == "16.5"
        assert "12/12" in row.inner_text()  # 10 finished + 2 failed of 12
        # whose experiment it is (trial 58: recorded, shown nowhere)
        import json
        import urllib.request

        with urllib.request.urlopen(base + "/api/experiments") as resp:
            items = {i["eid"]: i for i in json.load(resp)["items"]}
        assert items[1]["user"] and row.locator(".user").inner_text() == items[1]["user"]
        assert page.errors == []


def test_experiment_page_tables_and_charts(grid_db, page):
    exp = expected_grid()
    finished = [e for e in exp if not e["failed"]]
    with serve(db_url(grid_db)) as base:
        page.goto(base + "/experiments/1")
        page.wait_for_selector("#best-score")
        assert page.locator("#best-score").inner_text() == "job 1: score 0" or \
            page.locator("#best-score").inner_text().endswith("score 0")
        params = page.locator(".best-param").all_inner_texts()
        assert params == ["x = 2", "k = a"]
        page.wait_for_selector("#jobs tbody tr")
        assert page.locator("#jobs tbody tr").count() == 12
        # charts: best-so-far line and per-job scores are the experiment's values
        page.wait_for_function("document.getElementById('history-chart').data !== undefined")
        ys = page.evaluate("document.getElementById('history-chart').data[0].y")
        assert ys == [e["score"] for e in finished]
        best = page.evaluate("document.getElementById('history-chart').data[1].y")
        running, expect_best = None, []
        for e in finished:
            running = e["score"] if running is None else min(running, e["score"])
            expect_best.append(running)
        assert best == expect_best
        dims = page.evaluate("document.getElementById('parallel-chart').data[0].dimensions"
                             ".map(d => d.label)")
        assert dims == ["x", "k", "score"]
        # the best jobs bright for both targets (trial 55: dark purple for target min, the
        # opposite of the PNG of 'aup plot'); experiment 1 minimizes: Viridis reversed
        assert page.evaluate("document.getElementById('parallel-chart').data[0].line"
                             ".reversescale") is True
        curves = page.evaluate("document.getElementById('curves-chart').data.length")
        assert curves == len(finished)
        # server-side sorting by score (descending): worst finished job first
        page.click("#jobs th[data-key='score']")
        page.wait_for_selector("#jobs th.sorted-asc")
        page.click("#jobs th[data-key='score']")
        page.wait_for_selector("#jobs th.sorted-desc")
        first = page.locator("#jobs tbody tr").first.locator(".score").inner_text()
        assert first == "16.5"
        # filtering: only the failed jobs
        page.select_option("#job-status", "FAILED")
        page.wait_for_function("document.querySelectorAll('#jobs tbody tr').length === 2")
        assert page.locator("#page-info").inner_text() == "1-2 of 2"
        # job detail: failure reason and log tail
        page.locator("#jobs tbody tr").first.click()
        page.wait_for_selector("#job-failure")
        assert "NONZERO_EXIT" in page.locator("#job-failure").inner_text()
        page.wait_for_function("document.getElementById('job-log').textContent.includes('boom')")
        # a finished job shows its multiple-result value (still sorted by score, descending:
        # the second row is x=6, k=a, whose secondary value is 2*x = 12)
        page.select_option("#job-status", "FINISHED")
        page.wait_for_function("document.querySelectorAll('#jobs tbody tr').length === 10")
        page.locator("#jobs tbody tr[data-jid]").nth(1).click()
        page.wait_for_function("document.querySelector('#job-extras td') !== null")
        assert page.locator("#job-extras tbody tr").first.inner_text().split() == ["twice", "12"]
        assert page.errors == []


def test_a_score_filter_the_browser_cannot_read_is_reported(grid_db, page):
    # trial 61: "1e-" read as an empty field, and every job was shown as if filtered
    with serve(db_url(grid_db)) as base:
        page.goto(base + "/experiments/1")
        page.wait_for_selector("#jobs tbody tr")
        page.locator("#min-score").press_sequentially("1e-")
        page.click("#apply")
        page.wait_for_function("document.getElementById('error').textContent !== ''")
        assert page.locator("#error").inner_text().startswith("score from: not a number")
        page.fill("#min-score", "16")
        page.click("#apply")
        page.wait_for_function("document.getElementById('error').textContent === ''")
        page.wait_for_function("[...document.querySelectorAll('#jobs tbody td.score')]"
                               ".every((td) => Number(td.textContent) >= 16)")


def test_an_unknown_experiment_page_shows_only_the_message(grid_db, page):
    # trial 61: "no experiment 999" above empty charts and an empty job table
    with serve(db_url(grid_db)) as base:
        for path, message in (("/experiments/999", "no experiment 999"),
                              ("/experiments/abc", "bad experiment id")):
            page.goto(base + path)
            page.wait_for_function("document.getElementById('error').textContent !== ''")
            assert page.locator("#error").inner_text().startswith(message)
            assert page.locator("#jobs").is_hidden() and page.locator("#history-chart").is_hidden()


def test_compare_page(grid_db, page):
    with serve(db_url(grid_db)) as base:
        page.goto(base + "/")
        page.wait_for_selector("#experiments tbody tr[data-eid='2']")
        page.check("#experiments tbody tr[data-eid='1'] input")
        page.check("#experiments tbody tr[data-eid='2'] input")
        page.click("#compare")
        page.wait_for_selector("#compare-table tbody tr[data-eid='2']")
        names = page.evaluate("document.getElementById('compare-chart').data.map(t => t.name)")
        assert sorted(names) == ["1: grid", "2: grid_max"]
        # a 244-character name squeezed the plot to a sliver (trial 61): legends are cut
        assert page.evaluate("aup.short('n'.repeat(244), 40)") == "n" * 39 + "\u2026"
        assert page.evaluate("aup.short('grid', 40)") == "grid"
        finals = page.evaluate("document.getElementById('compare-chart').data"
                               ".map(t => t.y[t.y.length - 1])")
        assert sorted(finals) == [0, 16.5]
        assert page.errors == []
        # More experiments than /api/compare takes: the list's button says so and is
        # disabled (trial 61: 22 ticked gave FastAPI's raw 422 JSON on the compare page).
        page.goto(base + "/")
        page.wait_for_selector("#experiments tbody tr[data-eid='2']")
        page.evaluate("state.maxCompared = 1")
        page.check("#experiments tbody tr[data-eid='1'] input")
        assert page.locator("#compare").inner_text() == "compare 1 selected"
        page.check("#experiments tbody tr[data-eid='2'] input")
        assert page.locator("#compare").is_disabled()
        assert page.locator("#compare").inner_text() == "compare: at most 1 (2 selected)"
        # a compare address with too many ids gets a readable line, not JSON
        page.goto(base + "/compare?" + "&".join(f"eid={i}" for i in range(1, 22)))
        page.wait_for_function("document.getElementById('error').textContent !== ''")
        text = page.locator("#error").inner_text()
        assert text.startswith("eid: List should have at most 20 items"), text
        assert "{" not in text, text


def test_stop_button_stops_running_experiment(tmp_path, page):
    write_script(tmp_path, "slow.py", SLOW_SCRIPT)
    write_json(tmp_path / "slow.json", name="slow", script="slow.py", proposer="random",
               n_samples=200, parameter_config=[{"name": "x", "range": [0, 1], "type": "float"}])
    env = dict(os.environ)
    env.pop("AUP_DB", None)
    proc = subprocess.Popen([sys.executable, "-m", "aup", "run", "slow.json", "-q"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while experiment_status(tmp_path, 1) != "RUNNING":
            assert proc.poll() is None and time.monotonic() < deadline, "did not start"
            time.sleep(0.2)
        with serve(db_url(tmp_path)) as base:
            page.on("dialog", lambda d: d.accept())
            page.goto(base + "/experiments/1")
            page.wait_for_selector("#stop:not([hidden])")
            # live refresh: the job table grows while the experiment runs
            page.wait_for_selector("#jobs tbody tr")
            first = page.locator("#jobs tbody tr").count()
            page.wait_for_function(
                f"document.querySelectorAll('#jobs tbody tr').length > {first}", timeout=30000)
            page.click("#stop")
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 130, out
            assert experiment_status(tmp_path, 1) == "STOPPED"
            page.wait_for_function(
                "document.getElementById('exp-status').textContent === 'STOPPED'")
            assert page.locator("#stop").is_hidden()
            # The page follows a resume without a reload (it stopped polling at STOPPED).
            proc = subprocess.Popen([sys.executable, "-m", "aup", "resume", "1"],
                                    cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            page.wait_for_function(
                "document.getElementById('exp-status').textContent === 'RUNNING'",
                timeout=30000)
            page.wait_for_selector("#stop:not([hidden])")
            assert subprocess.run([sys.executable, "-m", "aup", "stop", "1"], cwd=tmp_path,
                                  env=env, capture_output=True).returncode == 0
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 130, out
            page.wait_for_function(
                "document.getElementById('exp-status').textContent === 'STOPPED'")
            assert page.errors == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_best_score_below_the_largest_budget_is_marked(tmp_path, page):
    """Every job at hyperband's largest budget failed: `aup list` marked the best score
    "(budget 1 < 3)", the dashboard showed it bare (trial 61)."""
    write_script(tmp_path, "t.py", FAILS_AT_LARGEST_BUDGET)
    write_json(tmp_path / "hb.json", name="hb", script="t.py", proposer="hyperband",
               max_iter=3, eta=3, target="min", job_failure={"ignore_fail": True},
               parameter_config=[{"name": "x", "type": "float", "range": [0, 1]}])
    env = dict(os.environ)
    env.pop("AUP_DB", None)
    run = subprocess.run([sys.executable, "-m", "aup", "run", "hb.json", "-q"], cwd=tmp_path,
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    with serve(db_url(tmp_path)) as base:
        page.goto(base + "/")
        cell = page.locator("#experiments tbody tr[data-eid='1'] .best-score")
        cell.wait_for()
        assert cell.inner_text().endswith(" (budget 1 < 3)"), cell.inner_text()
        page.goto(base + "/experiments/1")
        page.wait_for_selector("#best-score")
        assert page.locator("#best-score").inner_text().endswith("(budget 1 < 3)")
        # the score points one trace per budget (trial 61: budgets 1 and 3 drawn alike)
        page.wait_for_function("document.getElementById('history-chart').data !== undefined")
        names = page.evaluate("document.getElementById('history-chart').data.map(t => t.name)")
        assert names == ["score at budget 1", "best so far"], names  # budget 3: all failed
        counts = page.evaluate("document.getElementById('history-chart').data"
                               ".map(t => t.x.length)")
        assert counts[0] == 3, counts
        # each job's budget in the table (trial 61: only in a clicked job's detail)
        page.wait_for_selector("#jobs tbody tr td.budget")
        assert "budget" in page.locator("#jobs thead tr").inner_text()
        assert set(page.locator("#jobs tbody td.budget").all_inner_texts()) == {"1", "3"}
        page.click("#jobs thead th[data-key='budget']")
        page.wait_for_selector("#jobs thead th.sorted-asc[data-key='budget']")
        page.click("#jobs thead th[data-key='budget']")  # largest budget first
        page.wait_for_selector("#jobs thead th.sorted-desc[data-key='budget']")
        page.wait_for_function("document.querySelector('#jobs tbody td.budget')"
                               ".textContent === '3'")
        assert page.locator("#jobs tbody td.budget").first.get_attribute("title").startswith(
            "bracket ")
        assert page.errors == []
    with serve(db_url(tmp_path)) as base:  # an experiment without budgets has no such column
        write_json(tmp_path / "plain.json", name="plain", script="t2.py", n_samples=1,
                   parameter_config=[{"name": "x", "type": "float", "range": [0, 1]}])
        write_script(tmp_path, "t2.py", "print('#Auptimizer: 1')\n")
        assert subprocess.run([sys.executable, "-m", "aup", "run", "plain.json", "-q"],
                              cwd=tmp_path, env=env).returncode == 0
        page.goto(base + "/experiments/2")
        page.wait_for_selector("#jobs tbody tr")
        assert "budget" not in page.locator("#jobs thead tr").inner_text()
        assert page.locator("#jobs tbody td.budget").count() == 0
