"""``aup setup`` (also ``python -m aup.setup``): write ``.aup/env.ini`` and create the database.

Optional: without it experiments use ``.aup/sqlite3.db`` under the current directory. The
environment file records the database (SQLite file or any SQLAlchemy URL), the CPU count, the
GPU ids, the SSH nodes and AWS instances, and the user name (format: :mod:`aup.environment`).

Safety rules (2.0 deleted the folder with ``--overwrite`` and wiped ``TMP_FOLDER``):

* an existing env.ini is replaced only after a "yes" at the prompt or with ``--overwrite``;
* the recorded history is never deleted, except with ``--reset-history`` **and** a
  confirmation (typing ``delete`` at the prompt, or ``--yes`` without a terminal);
* every answer is checked before anything is written; a database that does not answer (or
  refuses the password) stops the command with exit code 2 and nothing written.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shlex
import sys
from pathlib import Path

from aup.environment import (
    KNOWN_KEYS,
    environment_file,
    mapping_json,
    parse_resource_list,
    read_section,
    render_environment,
    write_environment_file,
)
from aup.errors import StoreError, UsageError, install_hint
from aup.store.connect_errors import connect_reason

HELP = "write the environment file .aup/env.ini (database, resources, user) and create the database"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``aup setup`` to the CLI."""
    p = subparsers.add_parser("setup", help=HELP, description=HELP)
    fill_parser(p)
    p.set_defaults(func=run)
    return p


def fill_parser(p: argparse.ArgumentParser) -> None:
    """The options of ``aup setup`` (shared with ``python -m aup.setup``)."""
    p.add_argument("template", nargs="?",
                   help="an env.ini (or a folder holding one) to start from, e.g. 2.0's "
                   "env_local_template.ini; its Auptimizer_PATH says where to write")
    p.add_argument("--folder", help="environment folder to write env.ini into (default: the "
                   "template's Auptimizer_PATH, else .aup)")
    p.add_argument("--database", "--db", dest="database",
                   help="SQLAlchemy URL (e.g. postgresql+psycopg://user:pw@host/db) or a SQLite "
                   "file path (default: <folder>/sqlite3.db)")
    p.add_argument("--cpu", type=int, help="number of CPU slots (default: the machine's cores)")
    p.add_argument("--gpu", help="GPU ids: 'none', comma-separated ids, or a file with one per "
                   "line (a line '0,1' is one slot seeing two cards)")
    p.add_argument("--node", help="SSH nodes: 'none', comma-separated 'user@host[:port] "
                   "[keyfile]', or a file with one per line")
    p.add_argument("--aws", help="EC2 instances: 'none', comma-separated 'user@instance-id "
                   "[keyfile]', or a file with one per line")
    p.add_argument("--user", help="user name recorded with experiments (default: $USER)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing env.ini without asking (history is kept)")
    p.add_argument("--reset-history", action="store_true",
                   help="DELETE every recorded experiment in the database (asks to confirm)")
    p.add_argument("--yes", "-y", action="store_true",
                   help="confirm --reset-history without a prompt")
    p.add_argument("--no-input", action="store_true",
                   help="ask nothing (the default when stdin is not a terminal)")


def _read_template(path: str) -> tuple[dict[str, str], Path]:
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "env.ini"
    if not p.is_file():
        raise UsageError(f"template {path} not found (no such file, or no env.ini in that "
                         "folder)")
    return read_section(p, "template"), p


def _mapping_specs(text: str | None) -> list[str]:
    import json

    if not text:
        return []
    try:
        data = json.loads(text)
        return [str(v) for _, v in sorted(data.items(), key=lambda kv: int(kv[0]))]
    except (ValueError, AttributeError, TypeError):
        raise UsageError(f"cannot read resource mapping {text[:60]!r}: it must be a JSON object "
                         'like {"1": "0"}') from None


def _normalise_url(text: str, base: Path) -> str:
    text = text.strip()
    if text == ":memory:":  # SQLite's name for an in-memory database, not a file name
        return "sqlite:///:memory:"
    if "://" not in text:
        from aup.store.store import sqlite_url

        return sqlite_url((base / Path(text).expanduser()).resolve())
    return text


def check_database(url: str) -> str:
    """Check that the database at ``url`` can be used; returns ``url``.

    SQLite: a file (not in memory, not a folder, not another program's database) whose folder
    exists or can be created. Servers: a connection is made (5 s timeout, unless
    the URL sets ``connect_timeout``).

    Raises:
        ConnectFailed: no connection (the server does not answer, or refuses the login), with
            the reason and the fix; the password is never part of it.
        ValueError: the URL or its driver cannot be used, with the reason (used for re-asking
            at the prompt).
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    try:
        u = make_url(url)
    except ArgumentError:
        raise ValueError("not a SQLAlchemy URL (e.g. sqlite:///path/db.sqlite or "
                         "postgresql+psycopg://user:pw@host:5432/db)") from None
    if u.get_backend_name() == "sqlite":
        from aup.api import in_memory_url
        from aup.errors import StoreError
        from aup.store.store import check_sqlite_folder, refuse_foreign_sqlite

        db = u.database or ""
        if in_memory_url(url):
            raise ValueError("an in-memory database keeps nothing once the command ends; give a "
                             "file (e.g. .aup/sqlite3.db)")
        try:
            check_sqlite_folder(Path(db), create_ok=True)
            refuse_foreign_sqlite(Path(db))
        except StoreError as err:
            raise ValueError(str(err)) from None
        if db:
            folder = Path(db).parent
            probe = folder
            while not probe.exists():
                probe = probe.parent
            if not os.access(probe, os.W_OK):
                raise ValueError(f"cannot create {folder}: {probe} is not writable")
        return url
    connect_args = ({"connect_timeout": 5} if u.get_backend_name() == "postgresql"
                    and "connect_timeout" not in u.query else {})
    try:
        engine = create_engine(u, connect_args=connect_args)
    except (NoSuchModuleError, ImportError) as err:
        raise ValueError(f"no driver for this URL ({err}); for PostgreSQL use "
                         f"postgresql+psycopg:// and {install_hint('postgres')}") from None
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as err:
        orig = getattr(err, "orig", None) or err
        first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        raise ConnectFailed(connect_reason(first)) from None
    finally:
        engine.dispose()
    return url


class ConnectFailed(ValueError):
    """The database server was reached for but no connection was made (``cannot open``, as
    opposed to a URL or driver that cannot be used at all)."""


def _safe(url: str) -> str:
    """``url`` for messages: no password, and a SQLite file named as it is
    (:func:`aup.store.store.shown_url`)."""
    from aup.store.store import shown_url

    return shown_url(url)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``aup setup``. Returns the exit code."""
    from aup.commands.prompt import Prompter, allow_replace, int_check

    interactive = not args.no_input and sys.stdin.isatty()
    values: dict[str, str] = {}
    template_path: Path | None = None
    if args.template == "." and not Path("env.ini").is_file():
        args.template = None  # 2.0's 'python -m aup.setup .' meant: no template, ask
    if args.template:
        values, template_path = _read_template(args.template)
    folder_text = args.folder or values.get("Auptimizer_PATH") or ".aup"
    base = template_path.parent if template_path and not args.folder else Path.cwd()
    folder = (base / Path(folder_text).expanduser()).resolve()
    env_path = folder / "env.ini"
    if env_path.is_file() and not args.template:
        # start from the existing file: its values are the defaults
        try:
            values, _ = _read_template(str(env_path))
        except UsageError as err:  # unreadable or no [Auptimizer]: replaced, not read
            print(f"note: {err}; its values are not used", file=sys.stderr)
    prompter = Prompter()

    # -- values from flags, the template or defaults ------------------------------------------
    db_default = args.database or values.get("database") or values.get("SQLITE_FILE")
    if db_default and "://" not in db_default and db_default.strip() != ":memory:":
        db_default = str((project_root_for(env_path) / Path(db_default).expanduser()).resolve())
    db_default = db_default or str(folder / "sqlite3.db")
    cpu_default = args.cpu if args.cpu is not None else (
        int(values["cpu"]) if values.get("cpu", "").strip().isdigit() else (os.cpu_count() or 1))
    gpu_default = args.gpu if args.gpu is not None else ",".join(
        _mapping_specs(values.get("gpu_mapping"))) or "none"
    node_default = args.node if args.node is not None else ",".join(
        _mapping_specs(values.get("node_mapping"))) or "none"
    aws_default = args.aws if args.aws is not None else ",".join(
        _mapping_specs(values.get("aws_mapping"))) or "none"
    user_default = (args.user or values.get("user") or os.environ.get("USER")
                    or _login() or "default")

    def res_check(kind: str):
        def check(text: str) -> list[str]:
            try:
                return parse_resource_list(text, kind)
            except UsageError as err:
                raise ValueError(str(err)) from None
        return check

    def user_check(text: str) -> str:
        if any(ch.isspace() for ch in text):
            raise ValueError("a user name has no spaces")
        return text

    if interactive:
        prompter.say(f"Auptimizer set-up: writes {env_path} (ENTER keeps [the default]).")
        url = prompter.ask("database (SQLite file path or SQLAlchemy URL)", db_default,
                           lambda t: check_database(_normalise_url(t, Path.cwd())))
        cpu = prompter.ask("number of CPU slots", cpu_default, int_check(0))
        gpus = prompter.ask("GPU ids (comma-separated, a file, or none)", gpu_default,
                            res_check("gpu"))
        nodes = prompter.ask("SSH nodes user@host[:port] [keyfile] (comma-separated, a file, "
                             "or none)", node_default, res_check("node"))
        aws = prompter.ask("AWS instances user@instance-id [keyfile] (comma-separated, a file, "
                           "or none)", aws_default, res_check("aws"))
        user = prompter.ask("user name", user_default, user_check)
    else:
        url = _normalise_url(db_default, Path.cwd())
        try:
            check_database(url)
        except ValueError as err:
            verb = "open" if isinstance(err, ConnectFailed) else "use"
            raise StoreError(f"cannot {verb} database {_safe(url)}: {err}") from None
        if cpu_default < 0:
            raise UsageError(f"--cpu must be >= 0, got {cpu_default}")
        cpu = cpu_default
        gpus = parse_resource_list(gpu_default, "gpu")
        nodes = parse_resource_list(node_default, "node")
        aws = parse_resource_list(aws_default, "aws")
        if any(ch.isspace() for ch in user_default):
            raise UsageError(f"--user {user_default!r}: a user name has no spaces")
        user = user_default

    # -- confirmations ---------------------------------------------------------------------------
    if env_path.is_file() and not args.overwrite and not allow_replace(
            prompter, env_path, interactive=interactive,
            question=f"{env_path} exists. Replace it (history is kept)?",
            fix="add --overwrite to replace it (the recorded history is kept)"):
        return 2

    from aup.store.admin import count_history, delete_history, history_owners, live_experiments
    from aup.store.store import Store

    if args.reset_history:
        store = Store(url)
        n_exp, n_job = count_history(store)
        live = live_experiments(store)
        if live:  # never under a live run, --yes or not (trial 58: it crashed and was lost)
            store.close()
            raise UsageError(f"--reset-history refused: {len(live)} experiment(s) of this "
                             f"database are running: {'; '.join(live)}. Nothing was done. Fix: "
                             "stop them first (aup stop ID), or wait until they end")
        owners = history_owners(store)
        whose = f" (of the users {', '.join(owners)})" if owners else ""
        if n_exp or n_job:
            if interactive and not args.yes:
                answer = prompter.ask(f"--reset-history DELETES {n_exp} experiments{whose} and "
                                      f"{n_job} jobs in {_safe(url)}. Type 'delete' to confirm",
                                      "keep")
                if answer != "delete":
                    store.close()
                    prompter.say("history kept; nothing was written")
                    return 2
            elif not args.yes:
                store.close()
                raise UsageError(f"--reset-history would delete {n_exp} experiments{whose} and "
                                 f"{n_job} jobs; nothing was done. Fix: add --yes to confirm")
            delete_history(store)
            print(f"deleted {n_exp} experiments{whose} and {n_job} jobs")
        store.close()

    # -- create the database, then write env.ini ---------------------------------------------------
    from aup.store.store import sqlite_file

    db_file = sqlite_file(url)
    if db_file is not None:  # setup is asked to create the database there: its folder too
        try:
            db_file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            what = ("a file is in its place" if isinstance(err, FileExistsError)
                    else err.strerror or str(err))
            raise UsageError(f"cannot create the folder {db_file.parent} for the database: "
                             f"{what}; nothing was written. Fix: give a folder that can be "
                             "created (--folder or --db)") from None
    store = Store(url)  # creates or upgrades the schema; StoreError -> exit 2, nothing written
    try:
        store.user_id(user)
        n_exp, n_job = count_history(store)
    finally:
        store.close()
    out = {k: v for k, v in values.items() if k not in KNOWN_KEYS}
    out["Auptimizer_PATH"] = str(folder)
    if url.startswith("sqlite:///") and "?" not in url and db_file is not None:
        out["SQL_ENGINE"] = "sqlite"
        out["SQLITE_FILE"] = str(db_file)  # the file itself, not its URL-encoded form
    else:
        out["SQL_ENGINE"] = url.split(":", 1)[0].split("+", 1)[0]
        out["database"] = url
    rid = 1
    for key, items in (("gpu_mapping", gpus), ("node_mapping", nodes), ("aws_mapping", aws)):
        if items:
            out[key] = mapping_json(items, rid)
            rid += len(items)
    out["cpu"] = str(cpu)
    out["user"] = user
    from sqlalchemy.engine import make_url

    private = make_url(url).password is not None
    write_environment_file(env_path, render_environment(out), private)
    print(f"wrote {env_path}{' (mode 600: it holds a password)' if private else ''}")
    print(f"database {_safe(url)}: {n_exp} experiments, {n_job} jobs recorded")
    print(f"resources: {cpu} CPU slots, {len(gpus)} GPU slots, {len(nodes)} SSH nodes, "
          f"{len(aws)} AWS instances; user {user}")
    read_here = environment_file()
    if env_path.resolve() != read_here.resolve():
        # e.g. 2.0's env_user_template.ini (Auptimizer_PATH = ~/.aup): 2.0 fell back to
        # ~/.aup/env.ini on its own, aup does not
        also = (f", or run aup from {env_path.parent.parent}"
                if env_path.parent.name == ".aup" else "")
        print(f"note: aup commands run here read {read_here}, not {env_path}. To use it: "
              f"export AUP_ENV={shlex.quote(str(env_path))} (from any folder){also}")
    return 0


def project_root_for(env_path: Path) -> Path:
    """Folder relative paths of ``env_path`` resolve against (see :mod:`aup.environment`)."""
    from aup.environment import project_root

    return project_root(env_path)


def _login() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database entry
        return None
