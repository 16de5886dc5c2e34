"""Mistakes about where the database and the job files go: each is refused with exit code 2 and
a message naming the fix, before anything is recorded (real CLI processes, real SQLite files).

The unwritable-folder cases run the CLI as the unprivileged user ``nobody`` (``setpriv``) when
the tests run as root, since root writes through any permission bits."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_experiment, write_script

X = [{"name": "x", "range": [0, 1], "type": "float"}]
SCORE = "import json, sys\nprint('#Auptimizer:', json.load(open(sys.argv[-1]))['x'])\n"


def _experiment(folder: Path, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_script(folder, "job.py", SCORE)
    return write_experiment(folder, script="job.py", n_samples=2, parameter_config=X, **extra)


def _refused(proc, *needles: str) -> str:
    err = proc.stderr
    assert proc.returncode == 2, proc.stdout + err
    assert "Traceback" not in err and "Fix:" in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://", "sqlite:///",
                                 "sqlite:///file:x?mode=memory&uri=true", ":memory:"])
def test_an_in_memory_database_is_refused(tmp_path: Path, url: str) -> None:
    # It used to run: every job was lost with the process, and the job files it left in
    # jobs/ made the next run with a real database refuse the folder.
    path = _experiment(tmp_path)
    _refused(run_cli("run", "--db", url, str(path), cwd=tmp_path), "is in memory")
    assert not (tmp_path / "jobs").exists()
    assert run_cli("run", "-q", str(path), cwd=tmp_path).returncode == 0


def test_an_empty_db_option_is_refused_not_ignored(tmp_path: Path) -> None:
    path = _experiment(tmp_path)
    _refused(run_cli("run", "--db", "", str(path), cwd=tmp_path), "--db is empty")
    assert not (tmp_path / ".aup").exists() and not (tmp_path / "jobs").exists()


def test_a_mistyped_db_folder_is_named_before_the_jobs_folder(tmp_path: Path) -> None:
    # With jobs/ from an earlier run, the typo used to show the jobs-folder conflict instead.
    path = _experiment(tmp_path)
    assert run_cli("run", "-q", str(path), cwd=tmp_path).returncode == 0
    typo = tmp_path / "no-such-folder" / "x.db"
    _refused(run_cli("run", "--db", f"sqlite:///{typo}", str(path), cwd=tmp_path),
             f"the folder {typo.parent} of the database x.db does not exist")
    assert not typo.parent.exists()


def test_the_jobs_folder_conflict_names_the_database_that_wrote_the_files(
        tmp_path: Path) -> None:
    # Run from the experiment's folder, then from its parent: the default database follows
    # the current folder, and the refusal now says which --db goes on with the first one.
    folder = tmp_path / "exp"
    path = _experiment(folder)
    assert run_cli("run", "-q", str(path), cwd=folder).returncode == 0
    first = f"sqlite:///{folder / '.aup' / 'sqlite3.db'}"
    err = _refused(run_cli("run", str(path), cwd=tmp_path), "holds the files of jobs",
                   f"add --db {first}", "follows the folder you run from")
    assert not (tmp_path / ".aup").exists(), err  # the refused run created no database
    # the named option works
    assert run_cli("run", "-q", "--db", first, str(path), cwd=tmp_path).returncode == 0


def test_the_python_api_conflict_names_its_own_keyword(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # aup.run_experiment's refusal named only the CLI's --db.
    import aup
    from aup.errors import UsageError

    folder = tmp_path / "exp"
    path = _experiment(folder)
    assert run_cli("run", "-q", str(path), cwd=folder).returncode == 0
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as refused:
        aup.run_experiment(path)
    assert "holds the files of jobs" in str(refused.value)
    assert f"--db sqlite:///{folder / '.aup' / 'sqlite3.db'} (db= in Python)" in str(
        refused.value)
    assert not (tmp_path / ".aup").exists()


def test_the_conflict_does_not_name_a_database_that_recorded_fewer_jobs(tmp_path: Path) -> None:
    # After 'aup setup --reset-history' the emptied .aup/sqlite3.db was named as the one
    # that "probably" wrote the files.
    path = _experiment(tmp_path)
    first = tmp_path / "first.db"
    assert run_cli("run", "-q", "--db", str(first), str(path), cwd=tmp_path).returncode == 0
    first.unlink()
    (tmp_path / ".aup").mkdir()
    con = sqlite3.connect(tmp_path / ".aup" / "sqlite3.db")
    con.execute("CREATE TABLE job (jid INTEGER PRIMARY KEY)")
    con.execute("INSERT INTO job VALUES (1)")  # fewer jobs than the folder's files (2)
    con.commit()
    con.close()
    err = _refused(run_cli("run", "--db", str(tmp_path / "b.db"), str(path), cwd=tmp_path),
                   "holds the files of jobs up to id 2")
    assert "probably" not in err, err


def test_the_conflict_names_a_database_known_only_from_its_lock_file(tmp_path: Path) -> None:
    path = _experiment(tmp_path)
    other = tmp_path / "other.db"
    assert run_cli("run", "-q", "--db", str(other), str(path), cwd=tmp_path).returncode == 0
    _refused(run_cli("run", "--db", str(tmp_path / "third.db"), str(path), cwd=tmp_path),
             f"add --db sqlite:///{other}")
    # the refusal removed no lock file: the next refusal still names the database
    _refused(run_cli("run", "--db", str(tmp_path / "third.db"), str(path), cwd=tmp_path),
             f"add --db sqlite:///{other}")


@pytest.mark.parametrize("table", ["users", "job"])
def test_another_programs_sqlite_file_is_refused_and_left_unchanged(tmp_path: Path,
                                                                     table: str) -> None:
    # Auptimizer's tables were added to it; with a clashing "job" table the run failed after
    # recording a RUNNING experiment, with the disk-full fix.
    path = _experiment(tmp_path)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute(f"CREATE TABLE {table} (id INTEGER, name TEXT)")
    con.commit()
    con.close()
    before = other.read_bytes()
    for args in (("run", "--db", str(other), str(path)), ("list", "--db", str(other))):
        _refused(run_cli(*args, cwd=tmp_path), "holds the tables of another program",
                 f"({table})")
    assert other.read_bytes() == before  # not even switched to WAL mode
    assert not (tmp_path / "jobs").exists()


def test_a_clashing_table_in_postgresql_is_refused(pg_url: str) -> None:
    from sqlalchemy import create_engine, text

    from aup.errors import StoreError
    from aup.store.store import Store

    engine = create_engine(pg_url)
    with engine.begin() as c:
        c.execute(text('CREATE TABLE "user" (id integer, email text)'))
    engine.dispose()
    with pytest.raises(StoreError, match=r"tables of another program .*\(user\)"):
        Store(pg_url)


def test_a_read_command_leaves_an_empty_file_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    _refused(run_cli("list", "--db", str(empty), cwd=tmp_path), "holds no Auptimizer")
    assert empty.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == [
        "empty.db"]


def test_a_folder_given_as_the_database_is_named_as_such(tmp_path: Path) -> None:
    path = _experiment(tmp_path)
    _refused(run_cli("run", "--db", str(tmp_path), str(path), cwd=tmp_path),
             f"the database {tmp_path} is a folder", f"sqlite:///{tmp_path / 'aup.db'} in --db")


def test_a_folder_in_place_of_the_default_database_file_is_named_as_such(
        tmp_path: Path) -> None:
    # Trial 40: the fix said "leave --db out for the default", which the user had done.
    path = _experiment(tmp_path)
    default = tmp_path / ".aup" / "sqlite3.db"
    default.mkdir(parents=True)
    err = _refused(run_cli("run", str(path), cwd=tmp_path),
                   f"the database {default} is a folder (the default database file's place)",
                   "Fix: move that folder away")
    assert "leave" not in err, err


def test_an_experiment_with_storage_is_found_through_the_hint(tmp_path: Path) -> None:
    folder = tmp_path / "exp"
    path = _experiment(folder, storage="runs.db")
    assert run_cli("run", "-q", str(path), cwd=tmp_path).returncode == 0
    err = _refused(run_cli("list", cwd=tmp_path), "no database at")
    assert '"storage"' in err, err


def test_a_file_in_place_of_the_jobs_folder_is_refused_before_recording(
        tmp_path: Path) -> None:
    # It used to record the experiment, then fail every job with START_FAILED.
    path = _experiment(tmp_path)
    (tmp_path / "jobs").write_text("not a folder")
    db = tmp_path / "kept.db"
    sqlite3.connect(db).close()  # an existing database: its (empty) file stays
    _refused(run_cli("run", "--db", str(db), str(path), cwd=tmp_path),
             f"cannot write the job files to the folder {tmp_path / 'jobs'}")
    # with the default database: no empty .aup/ left behind either
    _refused(run_cli("run", str(path), cwd=tmp_path), "cannot write the job files")
    assert not (tmp_path / ".aup").exists()
    tables = sqlite3.connect(db).execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'experiment'").fetchone()[0]
    if tables:
        assert sqlite3.connect(db).execute("SELECT count(*) FROM experiment").fetchone() == (0,)


def test_a_file_in_place_of_the_default_database_folder_is_a_clear_error(
        tmp_path: Path) -> None:
    path = _experiment(tmp_path)
    (tmp_path / ".aup").write_text("not a folder")
    _refused(run_cli("run", str(path), cwd=tmp_path),
             f"cannot create the database folder {tmp_path / '.aup'}", "--db sqlite:///")


@pytest.fixture
def shared_dir():
    """A folder the user ``nobody`` can reach (pytest's own tmp folders are root's only)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="aup-ro-"))
    path.chmod(0o755)
    yield path
    for sub in [path, *path.rglob("*")]:
        if sub.is_dir():
            sub.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


def _as_nobody() -> list[str]:
    """The command prefix that runs the CLI as ``nobody`` when the tests run as root (or
    skip where that user cannot run it)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root's rights")
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    import subprocess

    probe = subprocess.run([*prefix, sys.executable, "-c", "import aup.cli"], cwd="/",
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"the user nobody cannot import aup here: {probe.stderr[-300:]}")
    return prefix


def _run_as_nobody(args: list[str], cwd: Path):
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "AUP_DB"}
    env["HOME"] = str(cwd)
    return subprocess.run([*_as_nobody(), sys.executable, "-m", "aup", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def test_a_read_only_current_folder_gets_the_db_fix(shared_dir: Path) -> None:
    # A read-only current folder gave a PermissionError traceback from mkdir .aup.
    folder = shared_dir / "ro"
    path = _experiment(folder)
    folder.chmod(0o555)
    if not _as_nobody() and os.access(folder, os.W_OK):
        pytest.skip("this user can write to a read-only folder")
    _refused(_run_as_nobody(["run", str(path)], folder),
             "cannot create the database folder", "Permission denied", "--db sqlite:///")


def test_a_read_only_jobs_folder_is_refused_before_recording(shared_dir: Path) -> None:
    folder = shared_dir / "ro"
    path = _experiment(folder)
    (folder / "path").mkdir()
    (folder / "path").chmod(0o777)  # the database can go there
    folder.chmod(0o555)
    if not _as_nobody() and os.access(folder, os.W_OK):
        pytest.skip("this user can write to a read-only folder")
    db = folder / "path" / "db.sqlite"
    _refused(_run_as_nobody(["run", "--db", str(db), str(path)], folder),
             f"cannot write the job files to the folder {folder / 'jobs'}",
             "Permission denied")
    assert not db.exists()  # the database the refused run created is gone again


def test_the_views_read_a_database_they_cannot_write(shared_dir: Path) -> None:
    # list/show/best/export needed write access to the database's folder (WAL mode's -shm
    # file): an archived database on a read-only disk, or another user's, could not be read.
    folder = shared_dir / "archive"
    path = _experiment(folder)
    assert run_cli("run", "-q", str(path), cwd=folder).returncode == 0
    db = folder / ".aup" / "sqlite3.db"
    before = db.read_bytes()
    db.chmod(0o444)
    db.parent.chmod(0o555)
    if not _as_nobody() and os.access(db.parent, os.W_OK):
        pytest.skip("this user can write to a read-only folder")
    import json

    shown = _run_as_nobody(["show", "1", "--json"], folder)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    jobs = json.loads(shown.stdout)
    assert [j["status"] for j in jobs] == ["FINISHED", "FINISHED"]
    assert all(abs(j["score"] - j["job_config"]["x"]) < 1e-12 for j in jobs)
    listed = _run_as_nobody(["list", "--json"], folder)
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["status"] == "FINISHED"
    best = _run_as_nobody(["best", "1"], folder)
    assert best.returncode == 0 and f"{max(j['score'] for j in jobs)!r}" in best.stdout
    csv = _run_as_nobody(["export", "1", "--format", "csv"], folder)
    assert csv.returncode == 0 and len(csv.stdout.strip().splitlines()) == 3, csv.stderr
    # Commands that write still say what to do; the file is unchanged, nothing was added.
    _refused(_run_as_nobody(["resume", "1"], folder), "attempt to write a readonly database",
             "make the database file and its folder writable")
    assert db.read_bytes() == before
    assert sorted(p.name for p in db.parent.iterdir()) == ["sqlite3.db"]


def test_a_read_only_view_warns_about_changes_left_in_the_wal_file(shared_dir: Path) -> None:
    folder = shared_dir / "copy"
    path = _experiment(folder)
    assert run_cli("run", "-q", str(path), cwd=folder).returncode == 0
    db = folder / ".aup" / "sqlite3.db"
    # A writer that has not copied its last change into the file (as after a crash): the
    # -wal file holds it; the copy below has no -shm index.
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("UPDATE experiment SET name = 'renamed'")
    con.commit()
    archive = shared_dir / "ro-archive"
    (archive / ".aup").mkdir(parents=True)
    shutil.copy(db, archive / ".aup" / "sqlite3.db")
    shutil.copy(db.with_name("sqlite3.db-wal"), archive / ".aup" / "sqlite3.db-wal")
    con.close()
    (archive / ".aup").chmod(0o555)
    if not _as_nobody() and os.access(archive / ".aup", os.W_OK):
        pytest.skip("this user can write to a read-only folder")
    r = _run_as_nobody(["list", "--json"], archive)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "-wal file holds changes" in r.stderr and "not shown" in r.stderr
    import json

    rows = json.loads(r.stdout)  # the file as it is on disk, without the change
    assert len(rows) == 1 and rows[0]["name"] not in ("", "renamed")


@pytest.mark.parametrize("revision", ["0000", "9999"])
def test_a_read_only_database_of_another_schema_is_refused_clearly(shared_dir: Path,
                                                                  revision: str) -> None:
    # An older schema is upgraded before reading, which a read-only database cannot be; one
    # from a newer version cannot be read at all.
    folder = shared_dir / "old"
    path = _experiment(folder)
    assert run_cli("run", "-q", str(path), cwd=folder).returncode == 0
    db = folder / ".aup" / "sqlite3.db"
    con = sqlite3.connect(db)
    con.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    if revision == "0000":  # what 0002 adds is missing: it must be upgraded to be read
        con.execute("DROP TABLE told_result")
    con.commit()
    con.close()
    before = db.read_bytes()
    db.parent.chmod(0o555)
    if not _as_nobody() and os.access(db.parent, os.W_OK):
        pytest.skip("this user can write to a read-only folder")
    fix = "copy it to a folder you can write to" if revision == "0000" else "newer version"
    _refused(_run_as_nobody(["list"], folder), fix)
    assert db.read_bytes() == before


def test_hints_for_a_path_with_spaces_and_accents_paste_as_printed(tmp_path: Path) -> None:
    """Trial 36: the database of a folder named 'my dir é' was printed percent-encoded
    ('my dir %C3%A9'), and the printed 'aup resume --db ...' then found no database."""
    import shlex

    folder = tmp_path / "my dir é" / "sub"
    exp = _experiment(folder, storage="rü ns.db")
    write_script(folder, "job.py", "import sys\nsys.exit(3)\n")  # fails: a resume hint
    res = run_cli(str(exp), cwd=tmp_path, env={"COLUMNS": "400"})
    assert res.returncode == 1, res.stdout + res.stderr
    started = next(x for x in res.stdout.splitlines() if "started:" in x)
    assert f"database sqlite:///{folder / 'rü ns.db'}" in started, started
    hint = next(x for x in res.stdout.splitlines() if x.startswith("resume with: "))
    argv = shlex.split(hint.removeprefix("resume with: ").split(" (after")[0])
    assert argv[:2] == ["aup", "resume"] and "--db" in argv, hint
    write_script(folder, "job.py", SCORE)  # the cause fixed: the pasted hint resumes it
    again = run_cli(*argv[1:], cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "experiment 1" in again.stdout and "FINISHED" in again.stdout, again.stdout


def test_load_experiment_reads_a_database_it_may_not_write(shared_dir: Path) -> None:
    """Trial 38: the CLI views read a colleague's read-only database, but
    aup.load_experiment (docs: it only reads) failed with 'attempt to write a readonly
    database'. A pathlib.Path as db= gave an AttributeError."""
    import subprocess

    folder = shared_dir / "colleague"
    path = _experiment(folder)
    assert run_cli("run", "-q", str(path), cwd=folder).returncode == 0
    for p in (folder / ".aup", *(folder / ".aup").iterdir()):
        p.chmod(0o555 if p.is_dir() else 0o444)
    if not _as_nobody() and os.access(folder / ".aup", os.W_OK):
        pytest.skip("this user can write to a read-only folder")
    code = ("import pathlib, aup; r = aup.load_experiment(1, db=pathlib.Path("
            f"{str(folder / '.aup' / 'sqlite3.db')!r})); print(len(r.jobs()), r.best()['jid'])")
    env = {k: v for k, v in os.environ.items() if k != "AUP_DB"}
    r = subprocess.run([*_as_nobody(), sys.executable, "-c", code], cwd=folder, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    n, best = r.stdout.split()
    assert n == "2" and int(best) in (1, 2), r.stdout


def test_a_database_that_cannot_be_written_at_the_start_of_a_run_names_the_fix(
        tmp_path: Path) -> None:
    # Trial 40: a database file that opens but refuses writes (immutable here) said only
    # "cannot be used (attempt to write a readonly database)", with no Fix.
    path = _experiment(tmp_path)
    assert run_cli("run", "-q", str(path), cwd=tmp_path).returncode == 0
    db = tmp_path / ".aup" / "sqlite3.db"
    if shutil.which("chattr") is None or os.geteuid() != 0:
        pytest.skip("needs chattr and root to make the file immutable")
    if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem has no immutable flag")
    try:
        before = db.read_bytes()
        err = _refused(run_cli("run", "-q", str(path), cwd=tmp_path),
                       "attempt to write a readonly database")
        assert "Fix: run the command again once the database can be written again" in err, err
        assert db.read_bytes() == before
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)


@pytest.mark.parametrize("storage, needle", [
    ("sqlite://", "is in memory"),
    ("sqlite:///nodir/x.db", "of the database x.db does not exist"),
    ("sqlite:///sub", "is a folder"),
    ("sqlite:///notes.txt", "notes.txt: file is not a database"),
    ("sqlite:///other.db", "holds the tables of another program"),
    ("http://example.com", "cannot use database URL http://example.com"),
    ("fresh.db", "holds the files of jobs up to id"),
])
def test_check_refuses_the_databases_a_run_refuses(tmp_path: Path, storage: str,
                                                   needle: str) -> None:
    # Trial 45: 'aup run --check' said "configuration is valid", then 'aup run' refused the
    # storage URL with exit 2. Nothing is created by the check.
    path = _experiment(tmp_path, storage=storage)
    (tmp_path / "sub").mkdir()
    (tmp_path / "notes.txt").write_text("not a database\n")
    con = sqlite3.connect(tmp_path / "other.db")
    con.execute("CREATE TABLE users (id INTEGER)")
    con.commit()
    con.close()
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "7.json").write_text("{}")  # another database's job files
    before = sorted(p.name for p in tmp_path.iterdir())
    _refused(run_cli("run", "--check", str(path), cwd=tmp_path), needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert "Traceback" not in run_cli("run", str(path), cwd=tmp_path).stderr


def test_a_database_left_without_tables_by_a_killed_run_is_explained_and_reused(tmp_path):
    # trial 51: 'aup run' killed while it created .aup/sqlite3.db left a SQLite file without
    # tables; 'aup list' then told the user to give "the database 'aup run' wrote" (that
    # one). The message now names this case, and the next 'aup run' sets the file up.
    exp = _experiment(tmp_path)
    (tmp_path / ".aup").mkdir()
    con = sqlite3.connect(tmp_path / ".aup" / "sqlite3.db")
    con.execute("PRAGMA journal_mode=WAL")  # a header, and no table, as the kill left it
    con.close()
    _refused(run_cli("list", cwd=tmp_path), "holds no Auptimizer experiments",
             "the next 'aup run' sets it up")
    res = run_cli("run", str(exp), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "FINISHED" in run_cli("list", cwd=tmp_path).stdout
