"""aup setup and env.ini: written safely, read back, used by aup run; bad input writes nothing."""

from __future__ import annotations

import json
import os
import sys

import pexpect
import pytest
from conftest import QUADRATIC, run_cli, write_experiment, write_script

from aup.environment import check_resource_spec, read_environment
from aup.errors import UsageError
from aup.store.connect_errors import connect_reason


def _quad(tmp_path, **extra):
    write_script(tmp_path, "quad.py", QUADRATIC)
    return write_experiment(tmp_path, script="quad.py", n_samples=2, target="min",
                            parameter_config=[{"name": "x", "type": "float", "range": [-1, 1]}],
                            **extra)


def test_setup_writes_env_ini_that_reads_back_and_runs(tmp_path):
    gpu_file = tmp_path / "gpus.txt"
    gpu_file.write_text("0,1\n2\n")
    r = run_cli("setup", "--cpu", "3", "--gpu", str(gpu_file), "--node",
                "me@box:2222 ~/.ssh/key,you@other", "--user", "alice", "--database",
                "data/aup.db", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    env = read_environment(tmp_path / ".aup" / "env.ini")
    assert env.database == f"sqlite:///{tmp_path / 'data' / 'aup.db'}"
    assert (env.cpu, env.gpus, env.user) == (3, ["0,1", "2"], "alice")
    assert env.nodes == ["me@box:2222 ~/.ssh/key", "you@other"]
    text = (tmp_path / ".aup" / "env.ini").read_text()
    assert 'gpu_mapping = {"1": "0,1", "2": "2"}' in text  # 2.0's rids: gpu, then node
    assert 'node_mapping = {"3": "me@box:2222 ~/.ssh/key", "4": "you@other"}' in text
    assert (tmp_path / "data" / "aup.db").is_file()  # the database is created
    exp = _quad(tmp_path)
    r = run_cli("run", exp.name, "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "data/aup.db" in r.stdout
    assert not (tmp_path / ".aup" / "sqlite3.db").exists()
    rows = json.loads(run_cli("list", "--json", cwd=tmp_path).stdout)
    assert len(rows) == 1 and rows[0]["uid"] is not None
    # without the proposer's internal state (625 numbers of a random generator per row)
    assert "proposer_state" not in rows[0] and rows[0]["n_early_stopped"] == 0


def test_existing_env_ini_and_history_are_kept(tmp_path):
    assert run_cli("setup", "--cpu", "2", cwd=tmp_path).returncode == 0
    env_ini = tmp_path / ".aup" / "env.ini"
    before = env_ini.read_text()
    r = run_cli("setup", "--cpu", "5", cwd=tmp_path)
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert env_ini.read_text() == before
    exp = _quad(tmp_path)
    assert run_cli("run", exp.name, "-q", cwd=tmp_path).returncode == 0
    r = run_cli("setup", "--cpu", "5", "--overwrite", cwd=tmp_path)
    assert r.returncode == 0 and "1 experiments" in r.stdout
    assert read_environment(env_ini).cpu == 5
    r = run_cli("setup", "--overwrite", "--reset-history", cwd=tmp_path)
    assert r.returncode == 2 and "--yes" in r.stderr
    assert len(json.loads(run_cli("list", "--json", cwd=tmp_path).stdout)) == 1
    r = run_cli("setup", "--overwrite", "--reset-history", "--yes", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(run_cli("list", "--json", cwd=tmp_path).stdout) == []


def test_reset_history_is_refused_under_a_live_run_and_names_whose_history(tmp_path):
    """Trial 58: on a shared database, one user's --reset-history --yes deleted another user's
    RUNNING experiment, whose run then crashed with a ForeignKeyViolation traceback."""
    from lifecycle_helpers import finish, start_cli, wait_for

    # the jobs wait for the test (with a fixed sleep, a loaded CI machine listed twice while
    # all 8 jobs finished, and the reset had nothing running to refuse)
    release = tmp_path / "release"
    write_script(tmp_path, "slow.py", (
        "import os, time\n"
        f"while not os.path.exists({str(release)!r}):\n"
        "    time.sleep(0.05)\n"
        "print('#Auptimizer: 1')\n"))
    exp = write_experiment(tmp_path, script="slow.py", n_samples=8,
                           parameter_config=[{"name": "x", "type": "float", "range": [0, 1]}])
    proc = start_cli("run", "--user", "alice", exp.name, cwd=tmp_path)

    def listed():
        r = run_cli("list", "--json", cwd=tmp_path)
        return r.returncode == 0 and json.loads(r.stdout)

    try:
        wait_for(lambda: (listed() or [{}])[0].get("status") == "RUNNING", what="a running run")
        # whose it is: shown by aup list (trial 58: the user was recorded but shown nowhere)
        assert listed()[0]["user"] == "alice"
        table = run_cli("list", cwd=tmp_path, env={"COLUMNS": "300"}).stdout
        assert "user" in table.splitlines()[1] and " alice " in table, table
        r = run_cli("setup", "--overwrite", "--reset-history", "--yes", cwd=tmp_path)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "--reset-history refused: 1 experiment(s) of this database are running: 1 " \
               "(experiment)" in " ".join(r.stderr.split()), r.stderr
    finally:
        release.touch()  # the run goes on to its end
    rc, out, err = finish(proc, tmp_path)
    assert rc == 0, out + err  # the run was left alone and finished
    r = run_cli("setup", "--overwrite", "--reset-history", cwd=tmp_path)
    assert r.returncode == 2 and "(of the users alice)" in r.stderr, r.stderr
    r = run_cli("setup", "--overwrite", "--reset-history", "--yes", cwd=tmp_path)
    assert r.returncode == 0 and "deleted 1 experiments (of the users alice)" in r.stdout


def test_auptimizer_2_template_is_accepted_and_tmp_folder_untouched(tmp_path):
    (tmp_path / "aup_tmp").mkdir()
    (tmp_path / "aup_tmp" / "keep.txt").write_text("x")
    (tmp_path / "env_local_template.ini").write_text(
        "[Auptimizer]\nAuptimizer_PATH = ./.aup\nTMP_FOLDER = ./aup_tmp\nSQL_ENGINE = sqlite\n")
    r = run_cli("setup", "env_local_template.ini", "--gpu", "none", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    env = read_environment(tmp_path / ".aup" / "env.ini")
    assert env.database == f"sqlite:///{tmp_path / '.aup' / 'sqlite3.db'}"
    assert (tmp_path / "aup_tmp" / "keep.txt").is_file()  # 2.0 deleted TMP_FOLDER


def test_lowercase_2_0_keys_are_read_and_a_repeated_key_is_refused(tmp_path):
    """2.0 read env.ini with ConfigParser, whose keys are case-insensitive: 'sql_engine' and
    'sqlite_file' were silently ignored (the default database was used instead)."""
    (tmp_path / ".aup").mkdir()
    ini = tmp_path / ".aup" / "env.ini"
    ini.write_text("[Auptimizer]\nsql_engine = sqlite\nsqlite_file = runs.db\ncpu = 3\n")
    env = read_environment(ini)
    assert env.database == f"sqlite:///{tmp_path / 'runs.db'}" and env.cpu == 3
    exp = _quad(tmp_path)
    assert run_cli("run", exp.name, "-q", cwd=tmp_path).returncode == 0
    assert (tmp_path / "runs.db").is_file() and not (tmp_path / ".aup" / "sqlite3.db").exists()
    # aup setup starting from such a file writes each key once, in 2.0's spelling
    r = run_cli("setup", "--no-input", "--overwrite", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = ini.read_text()
    assert "SQLITE_FILE = " in text and "sqlite_file" not in text and "runs.db" in text
    ini.write_text("[Auptimizer]\nSQL_ENGINE = sqlite\nsql_engine = sqlite\n")
    with pytest.raises(UsageError, match="'sql_engine' repeats 'SQL_ENGINE'"):
        read_environment(ini)


def test_setup_names_how_to_use_an_env_ini_aup_does_not_read_here(tmp_path):
    """2.0's env_user_template.ini puts the environment in ~/.aup, where 2.0 looked when the
    current folder had none; aup does not, so setup says how to use it."""
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "env_user_template.ini").write_text(
        "[Auptimizer]\nAuptimizer_PATH = ~/.aup\nTMP_FOLDER = /tmp/aup\nSQL_ENGINE = sqlite\n")
    r = run_cli("setup", "env_user_template.ini", "--no-input", cwd=tmp_path,
                env={"HOME": str(home)})
    assert r.returncode == 0, r.stderr
    written = home / ".aup" / "env.ini"
    assert written.is_file()
    assert f"read {tmp_path / '.aup' / 'env.ini'}, not {written}" in r.stdout
    assert f"export AUP_ENV={written}" in r.stdout
    # the local template writes where aup reads: no note
    (tmp_path / "env_local_template.ini").write_text(
        "[Auptimizer]\nAuptimizer_PATH = ./.aup\nSQL_ENGINE = sqlite\n")
    r = run_cli("setup", "env_local_template.ini", "--no-input", cwd=tmp_path)
    assert r.returncode == 0 and "note:" not in r.stdout, r.stdout + r.stderr


def test_a_run_that_starts_a_new_history_names_the_home_env_ini_it_does_not_read(tmp_path):
    """Trial 56: a 2.0 user's ~/.aup/env.ini (2.0 read it when ./.aup had none) was skipped
    without a word: the first run here started a new database, splitting the history."""
    home = tmp_path / "home"
    (home / ".aup").mkdir(parents=True)
    env_ini = home / ".aup" / "env.ini"
    env_ini.write_text(f"[Auptimizer]\nAuptimizer_PATH = {home / '.aup'}\nSQL_ENGINE = sqlite\n"
                       f"SQLITE_FILE = {home / '.aup' / 'sqlite3.db'}\n")
    write_script(tmp_path, "job.py", QUADRATIC)
    exp = write_experiment(tmp_path, script="job.py", n_samples=1,
                           parameter_config=[{"name": "x", "type": "float", "range": [0, 1]}])
    r = run_cli(str(exp), cwd=tmp_path, env={"HOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert f"{env_ini} exists but is not read" in r.stderr, r.stderr
    assert f"set AUP_ENV={env_ini}" in r.stderr
    # said when the history splits, not at every run
    r = run_cli(str(exp), cwd=tmp_path, env={"HOME": str(home)})
    assert r.returncode == 0 and "is not read" not in r.stderr, r.stderr
    # and the fix it names works: the run records in the home database (from the start, as
    # the message advises: the jobs folder of this folder's new history is moved away first)
    import shutil

    shutil.rmtree(tmp_path / "jobs")
    r = run_cli(str(exp), cwd=tmp_path, env={"HOME": str(home), "AUP_ENV": str(env_ini)})
    assert r.returncode == 0 and "is not read" not in r.stderr, r.stderr
    assert (home / ".aup" / "sqlite3.db").is_file()


@pytest.mark.parametrize("args, message", [
    (["--gpu", "0,zero"], "GPU id 'zero'"),
    (["--gpu", "0,,1"], "has an empty entry between commas"),  # 2 slots silently (trial 45)
    (["--node", "hostonly"], "user@host"),
    (["--cpu", "-1"], "--cpu must be >= 0"),
    (["--database", "nope://x"], "cannot use database"),
    (["--node", "u@h:99999"], "the port '99999' is not a number in 1..65535"),
    (["--node", "u@h:0"], "the port '0' is not a number in 1..65535"),
    (["--aws", "ubuntu@myhost"], "'myhost' is not an EC2 instance id"),
    (["--aws", "ubuntu@i-0123456789abcdef0:70000"], "not a number in 1..65535"),
    (["--aws", "i-123"], "fix: e.g. ubuntu@i-0123456789abcdef0"),
])
def test_bad_values_write_nothing(tmp_path, args, message):
    r = run_cli("setup", *args, cwd=tmp_path)
    assert r.returncode == 2, r.stdout
    assert message in r.stderr and "Traceback" not in r.stderr
    if "--aws" in args:
        assert "me@10.0.0.5" not in r.stderr  # the example is an instance, not a host
    assert not (tmp_path / ".aup").exists()


def test_aws_instances_and_node_ports_that_are_valid_are_accepted():
    for item in ("ubuntu@i-0123456789abcdef0 ~/.ssh/aws.pem", "ec2-user@i-01234567:2222"):
        check_resource_spec(item, "aws")
    for item in ("me@box:65535", "me@box:1 key", "me@box"):
        check_resource_spec(item, "node")


@pytest.mark.parametrize("database, needle", [
    ("sqlite://", "in-memory database keeps nothing"),
    (":memory:", "in-memory database keeps nothing"),
    ("sub", "sub is a folder. Fix: give a file in it"),
    ("other.db", "holds the tables of another program (users)"),
    ("notdb.txt", "notdb.txt: file is not a database"),  # a traceback, exit 1 (trial 45)
])
def test_sqlite_databases_refused_by_run_are_refused_by_setup(tmp_path, database, needle):
    # setup wrote them to env.ini (":memory:" as a file of that name); every later command
    # then failed, or wrote into another program's database.
    import sqlite3

    (tmp_path / "sub").mkdir()
    (tmp_path / "notdb.txt").write_text("hello\n")
    con = sqlite3.connect(tmp_path / "other.db")
    con.execute("CREATE TABLE users (id INTEGER)")
    con.commit()
    con.close()
    before = (tmp_path / "other.db").read_bytes()
    r = run_cli("setup", "--no-input", "--database", database, cwd=tmp_path)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notdb.txt", "other.db", "sub"]
    assert (tmp_path / "other.db").read_bytes() == before


@pytest.mark.parametrize("folder, reason", [("notdb.txt", "a file is in its place"),
                                            ("notdb.txt/sub", "Not a directory")])
def test_a_folder_setup_cannot_create_is_refused(tmp_path, folder, reason):
    # Trial 45: a traceback (FileExistsError, NotADirectoryError) and exit 1.
    (tmp_path / "notdb.txt").write_text("hello\n")
    r = run_cli("setup", "--no-input", "--folder", folder, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"cannot create the folder {tmp_path / folder} for the database: {reason}" \
        in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notdb.txt"]


@pytest.mark.postgres
def test_postgresql_database_errors_write_nothing(tmp_path, postgres_server):
    bad_pw = postgres_server.url("postgres", password="not-it")
    r = run_cli("setup", "--database", bad_pw, cwd=tmp_path)
    assert r.returncode == 2 and "password authentication failed" in r.stderr
    assert "not-it" not in r.stderr + r.stdout
    # the server answered: the message says the login was refused (docs/setup.md's wording)
    assert "cannot open database postgresql+psycopg://aup:***@" in r.stderr, r.stderr
    assert "the server refused the login" in r.stderr and "does not answer" not in r.stderr
    assert "check the user name and password" in r.stderr
    closed = bad_pw.replace(f":{postgres_server.port}/", ":1/")
    r = run_cli("setup", "--database", closed, cwd=tmp_path)
    assert r.returncode == 2 and "does not answer" in r.stderr
    assert "cannot open database" in r.stderr and "refused the login" not in r.stderr
    assert "not-it" not in r.stderr + r.stdout
    assert not (tmp_path / ".aup").exists()


@pytest.mark.parametrize("driver_line, meaning", [
    ('connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
     'password authentication failed for user "aup"', "the server refused the login"),
    ("fe_sendauth: no password supplied", "the server refused the login"),
    ('connection failed: connection to server at "127.0.0.1", port 1 failed: Connection '
     "refused", "the database does not answer"),
    ("connection failed: timeout expired", "the database does not answer"),
    ('connection failed: FATAL:  database "nope" does not exist',
     "the server refused the connection"),
])
def test_connection_failures_say_what_happened(driver_line, meaning):
    reason = connect_reason(driver_line)
    assert reason.startswith(f"{meaning}: {driver_line}")
    if "login" in meaning:
        assert "does not answer" not in reason and "Fix: check the user name and password" in reason
    if "does not exist" in driver_line:
        assert "Fix: check the database name in the URL" in reason


@pytest.mark.postgres
def test_setup_with_postgresql_then_run(tmp_path, pg_url):
    r = run_cli("setup", "--database", pg_url, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    env_ini = tmp_path / ".aup" / "env.ini"
    assert env_ini.stat().st_mode & 0o777 == 0o600  # it holds the password
    assert read_environment(env_ini).database == pg_url
    exp = _quad(tmp_path)
    r = run_cli("run", exp.name, "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "postgresql+psycopg" in r.stdout and "***" in r.stdout
    from aup.store.store import Store

    st = Store(pg_url)
    assert [j["status"] for j in st.jobs(1)] == ["FINISHED", "FINISHED"]
    st.close()


@pytest.mark.parametrize("body, key", [
    ("SQL_ENGINE = sqlite\n", "SQLITE_FILE"),
    ("SQL_ENGINE = mysql\n", "database"),
    ("SQLITE_FILE = x.db\ncpu = four\n", "cpu"),
    ("SQLITE_FILE = x.db\ngpu_mapping = [0, 1]\n", "gpu_mapping"),
    ("database = just-a-path\n", "database"),
])
def test_env_ini_with_missing_or_bad_keys_is_a_clear_error(tmp_path, body, key):
    (tmp_path / ".aup").mkdir()
    (tmp_path / ".aup" / "env.ini").write_text("[Auptimizer]\n" + body)
    with pytest.raises(UsageError, match=key):
        read_environment(tmp_path / ".aup" / "env.ini")
    exp = _quad(tmp_path)
    r = run_cli("run", exp.name, cwd=tmp_path)
    assert r.returncode == 2 and key in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "jobs").exists()


def test_the_fix_for_a_broken_env_ini_works_when_followed(tmp_path):
    """'run aup setup' was the fix for an env.ini without [Auptimizer], but aup setup read that
    file for its defaults and failed the same way, even with --overwrite (trial 33)."""
    (tmp_path / ".aup").mkdir()
    (tmp_path / ".aup" / "env.ini").write_text("[Other]\nx = 1\n")
    r = run_cli("list", cwd=tmp_path)
    assert r.returncode == 2 and "fix: run 'aup setup --overwrite'" in r.stderr, r.stderr
    r = run_cli("setup", "--no-input", "--overwrite", cwd=tmp_path)
    assert r.returncode == 0 and "its values are not used" in r.stderr, r.stderr
    assert run_cli("list", cwd=tmp_path).returncode == 0


def test_env_ini_without_section_and_aup_env_variable(tmp_path):
    (tmp_path / "other.ini").write_text("[Other]\nx = 1\n")
    r = run_cli("list", cwd=tmp_path, env={"AUP_ENV": str(tmp_path / "other.ini")})
    assert r.returncode == 2 and "[Auptimizer]" in r.stderr
    r = run_cli("list", cwd=tmp_path, env={"AUP_ENV": str(tmp_path / "missing.ini")})
    assert r.returncode == 2 and "AUP_ENV" in r.stderr


def _spawn(tmp_path, *args):
    env = dict(os.environ)
    env.pop("AUP_DB", None)
    return pexpect.spawn(sys.executable, ["-m", *args], cwd=str(tmp_path), env=env,
                         encoding="utf-8", timeout=30)


def test_interactive_setup_reasks_wrong_answers(tmp_path):
    child = _spawn(tmp_path, "aup.setup")
    child.expect(r"database .*\]: ")
    child.sendline("nope://what")
    child.expect("no driver for this URL")
    child.expect(r"database .*\]: ")
    child.sendline("")
    child.expect(r"number of CPU slots \[\d+\]: ")
    child.sendline("many")
    child.expect("a whole number is needed")
    child.expect(r"number of CPU slots \[\d+\]: ")
    child.sendline("2")
    child.expect(r"GPU ids .*\[none\]: ")
    child.sendline("0,a")
    child.expect("GPU id 'a'")
    child.expect(r"GPU ids .*\[none\]: ")
    child.sendline("0,1")
    child.expect(r"SSH nodes .*\[none\]: ")
    child.sendline("nobody")
    child.expect("user@host")
    child.sendline("")
    child.expect(r"AWS instances .*\[none\]: ")
    child.sendline("")
    child.expect(r"user name \[.*\]: ")
    child.sendline("carol")
    child.expect("wrote .*env.ini")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    env = read_environment(tmp_path / ".aup" / "env.ini")
    assert (env.cpu, env.gpus, env.nodes, env.user) == (2, ["0", "1"], [], "carol")

    # again: the existing values are the defaults, and replacing needs a yes
    child = _spawn(tmp_path, "aup", "setup")
    for _ in range(2):
        child.expect(r"\]: ")
        child.sendline("")
    child.expect(r"GPU ids .*\[0,1\]: ")
    child.sendline("")
    for _ in range(3):
        child.expect(r"\]: ")
        child.sendline("")
    child.expect(r"Replace it .*\(y/n\) \[n\]: ")
    child.sendline("")
    child.expect("nothing was written")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2
    assert read_environment(tmp_path / ".aup" / "env.ini").user == "carol"


def test_a_refused_answer_is_echoed_without_its_password():
    # The setup dialogue echoed a refused database URL in full, password included.
    from aup.commands.prompt import masked

    assert masked("postgresql+psycopg://aup:s3cr:et@db:5432/aup") == \
        "postgresql+psycopg://aup:***@db:5432/aup"
    assert masked("sqlite:///tmp/x.db") == "sqlite:///tmp/x.db"
    assert masked("0, 1") == "0, 1"
