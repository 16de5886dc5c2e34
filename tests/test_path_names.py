"""Folder and database names that are not plain: URL characters and bytes that are not UTF-8.

A user trial found that a path was put into the SQLite URL as it was, so that ``?`` ended the
path (a database ``/tmp/x/q`` next to the folder ``q?dir``), ``%20`` became a space (and the
file check then said the database "was deleted") and ``%41`` an ``A`` ("unable to open database
file"); and that a current folder whose name is not valid UTF-8 crashed ``aup run``
(``UnicodeEncodeError`` in the jobs folder lock, then in the database writes).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from conftest import QUADRATIC, run_cli, write_experiment, write_script

from aup.api import resolve_db_url
from aup.store.store import sqlite_file, sqlite_url
from aup.store.text import readable_text, stored_path

#: A folder name with every character that has a meaning in a URL.
ODD_FOLDER = "q?dir #1 acc%41"


def _experiment(folder: Path, **extra) -> Path:
    write_script(folder, "quad.py", QUADRATIC)
    return write_experiment(folder, "e.json", script="quad.py", proposer="random", n_samples=2,
                            target="min", **extra,
                            parameter_config=[{"name": "x", "range": [-1, 1],
                                               "type": "float"}])


def _recorded(folder: Path, *db: str) -> tuple[list[dict], list[dict]]:
    """What ``aup list`` and ``aup show 1`` read (as JSON) in ``folder``."""
    listed = run_cli("list", "--json", *db, cwd=folder, errors="surrogateescape")
    assert listed.returncode == 0, listed.stderr
    shown = run_cli("show", "1", "--json", *db, cwd=folder, errors="surrogateescape")
    assert shown.returncode == 0, shown.stderr
    return json.loads(listed.stdout), json.loads(shown.stdout)


@pytest.mark.parametrize("name", [ODD_FOLDER, "runs%20x.db", "a?b", "c#d", "%", "e f%3F.db",
                                  "caf\u00e9.db"])
def test_a_bare_path_names_exactly_that_file(tmp_path: Path, monkeypatch, name: str):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUP_DB", raising=False)
    url = resolve_db_url(name)
    assert sqlite_file(url) == tmp_path.resolve() / name
    from sqlalchemy.engine import make_url

    assert make_url(url).database == str(tmp_path.resolve() / name)  # what SQLite opens
    assert sqlite_file(sqlite_url("/x/" + name, query="timeout=5")) == Path("/x/" + name)


def test_an_explicit_url_keeps_its_meaning(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # SQLAlchemy decodes %20 in a URL: the file is 'runs x.db', made absolute here
    url = resolve_db_url("sqlite:///runs%20x.db?timeout=5")
    assert sqlite_file(url) == tmp_path.resolve() / "runs x.db"
    assert url.endswith("?timeout=5")


def test_a_folder_with_url_characters_keeps_its_database(tmp_path: Path):
    folder = tmp_path / ODD_FOLDER
    folder.mkdir()
    _experiment(folder)
    res = run_cli("run", "e.json", cwd=folder)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (folder / ".aup" / "sqlite3.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [ODD_FOLDER]  # no stray database
    listed, shown = _recorded(folder)
    assert [(e["eid"], e["status"]) for e in listed] == [(1, "FINISHED")]
    assert [j["status"] for j in shown] == ["FINISHED", "FINISHED"]
    # the start line names the file as it is
    assert f"(file {folder / '.aup' / 'sqlite3.db'})" in res.stdout, res.stdout
    # read-only opening (file: URIs, for a database this user may not write) finds it too
    from sqlalchemy import text

    from aup.store.store import _read_only_engine, read_only_sqlite

    with read_only_sqlite(folder / ".aup" / "sqlite3.db") as con:
        assert con.execute("SELECT count(*) FROM job").fetchone()[0] == 2
    engine = _read_only_engine(folder / ".aup" / "sqlite3.db")
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM experiment")).scalar() == 1
    engine.dispose()


def test_a_db_path_with_a_percent_escape_is_that_file(tmp_path: Path):
    _experiment(tmp_path)
    res = run_cli("run", "--db", "runs%20x.db", "e.json", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "was deleted" not in res.stderr
    assert (tmp_path / "runs%20x.db").is_file() and not (tmp_path / "runs x.db").exists()
    listed, shown = _recorded(tmp_path, "--db", "runs%20x.db")
    assert [(e["eid"], e["status"]) for e in listed] == [(1, "FINISHED")]
    assert len(shown) == 2
    # AUP_DB is read the same way
    assert run_cli("list", cwd=tmp_path, env={"AUP_DB": "runs%20x.db"}).returncode == 0


def test_storage_with_url_characters_is_that_file(tmp_path: Path):
    _experiment(tmp_path, storage="my runs#1 ?.db")
    res = run_cli("run", "e.json", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "my runs#1 ?.db").is_file() and not (tmp_path / "my runs#1 ").exists()
    listed, _ = _recorded(tmp_path, "--db", "my runs#1 ?.db")
    assert [e["status"] for e in listed] == ["FINISHED"]


def test_readable_text_of_a_name_that_is_not_utf8():
    assert readable_text("plain") == "plain" and readable_text("café") == "café"
    assert readable_text(os.fsdecode(b"/tmp/caf\xe9")) == "/tmp/caf\\xe9"
    assert readable_text("lone \ud800") == "lone \\ud800"


@pytest.fixture
def latin1_folder(tmp_path: Path) -> Path:
    """A folder whose name is the Latin-1 bytes of 'café' (not valid UTF-8)."""
    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))
    try:
        folder.mkdir()
    except (OSError, UnicodeError) as err:
        pytest.skip(f"the file system refuses a name that is not UTF-8: {err}")
    return folder


def test_a_folder_name_that_is_not_utf8_runs(latin1_folder: Path):
    folder = latin1_folder
    _experiment(folder)
    # a strict standard output (a UTF-8 locale other than C) must print the path too
    res = run_cli("run", "e.json", cwd=folder, env={"PYTHONIOENCODING": "utf-8:strict"},
                  errors="surrogateescape")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stdout + res.stderr
    assert f"database sqlite:///{folder / '.aup' / 'sqlite3.db'}" in res.stdout, res.stdout
    db = folder / ".aup" / "sqlite3.db"
    assert db.is_file()
    listed, shown = _recorded(folder)
    assert [(e["eid"], e["status"]) for e in listed] == [(1, "FINISHED")]
    assert [j["status"] for j in shown] == ["FINISHED", "FINISHED"]
    # stored as readable text, and found again from it
    with sqlite3.connect(db) as con:
        (workingdir,) = con.execute("SELECT workingdir FROM experiment").fetchone()
    assert workingdir.endswith("caf\\xe9")
    assert stored_path(workingdir) == folder.resolve()
    # a stopped experiment resumes from that folder (its file found from the stored path)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE experiment SET status = 'STOPPED'")
    con.close()
    res = run_cli("resume", "1", cwd=folder, errors="surrogateescape")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stdout + res.stderr


def test_the_dashboard_reads_job_output_in_a_folder_that_is_not_utf8(latin1_folder: Path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from aup.dashboard.app import create_app
    from aup.store.store import open_store

    _experiment(latin1_folder)
    assert run_cli("run", "e.json", cwd=latin1_folder, errors="surrogateescape").returncode == 0
    store = open_store(sqlite_url(latin1_folder / ".aup" / "sqlite3.db"), create=False,
                       read_only=True)
    try:
        with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
            r = client.get("/api/experiments/1/jobs/1/log")
            assert r.status_code == 200, r.text
            assert r.json()["source"] == "file" and "#Auptimizer:" in r.json()["text"]
            assert client.get("/api/experiments/1").status_code == 200
    finally:
        store.close()


def test_an_experiment_file_name_that_is_not_utf8(tmp_path: Path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from aup.dashboard.app import create_app
    from aup.store.store import open_store

    write_script(tmp_path, "quad.py", QUADRATIC)
    name = os.fsdecode(b"caf\xe9.json")
    try:
        (tmp_path / name).write_text(json.dumps({
            "script": "quad.py", "proposer": "random", "n_samples": 2, "target": "min",
            "parameter_config": [{"name": "x", "range": [-1, 1], "type": "float"}]}))
    except (OSError, UnicodeError) as err:
        pytest.skip(f"the file system refuses a name that is not UTF-8: {err}")
    res = run_cli("run", name, cwd=tmp_path, errors="surrogateescape")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stdout + res.stderr
    listed, _ = _recorded(tmp_path)
    assert [e["name"] for e in listed] == ["caf\\xe9"]  # the readable replacement
    store = open_store(sqlite_url(tmp_path / ".aup" / "sqlite3.db"), create=False,
                       read_only=True)
    try:
        with TestClient(create_app(store), base_url="http://127.0.0.1") as client:
            r = client.get("/api/experiments/1")
            assert r.status_code == 200 and r.json()["config"]["name"] == "caf\\xe9", r.text
    finally:
        store.close()
