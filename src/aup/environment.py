"""The environment file written by ``aup setup``: ``.aup/env.ini``.

Format (Auptimizer 2.0's, one section ``[Auptimizer]``, keys in any case as 2.0 read them)::

    [Auptimizer]
    Auptimizer_PATH = /home/me/project/.aup
    SQL_ENGINE = sqlite
    SQLITE_FILE = /home/me/project/.aup/sqlite3.db
    gpu_mapping = {"1": "0", "2": "1"}
    node_mapping = {"3": "me@gpu-box:2222 ~/.ssh/id_ed25519"}
    aws_mapping = {}
    cpu = 4
    user = me

Additions over 2.0: ``database`` (any SQLAlchemy URL, e.g. ``postgresql+psycopg://...``; it wins
over ``SQL_ENGINE``/``SQLITE_FILE``), ``cpu`` (CPU slot count, 2.0 kept it only in the
database) and ``user``. 2.0's ``TMP_FOLDER`` is read and ignored (nothing used it).

Relative paths resolve against the project folder: the parent of the folder holding env.ini
when that folder is called ``.aup``, else the folder holding env.ini (2.0 used the current
directory, which broke when a command ran elsewhere).

The file is optional: without it experiments use the embedded default database
``.aup/sqlite3.db``. ``$AUP_ENV`` may name another env.ini (2.0's fallback to ``~/.aup`` is
not automatic: set ``AUP_ENV=~/.aup/env.ini`` for that).
"""

from __future__ import annotations

import configparser
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from aup.errors import UsageError

SECTION = "Auptimizer"
#: Keys read from the section; others are kept when rewriting but otherwise ignored.
KNOWN_KEYS = ("Auptimizer_PATH", "TMP_FOLDER", "SQL_ENGINE", "SQLITE_FILE", "database",
              "gpu_mapping", "node_mapping", "aws_mapping", "cpu", "user")


@dataclass
class Environment:
    """Settings read from env.ini.

    Attributes:
        path: the env.ini file.
        database: SQLAlchemy URL of the database, or None for the default.
        cpu: number of CPU slots, or None.
        gpus: GPU ids (strings, e.g. "0" or "0,1"), in slot order.
        nodes: SSH node specs (``user@host[:port] [keyfile]``).
        aws: EC2 specs (``user@instance-id [keyfile]``).
        user: user name to record.
    """

    path: Path
    database: str | None = None
    cpu: int | None = None
    gpus: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    aws: list[str] = field(default_factory=list)
    user: str | None = None


def _mapping(text: str | None, key: str, path: Path) -> list[str]:
    if not text or not text.strip():
        return []
    try:
        data = json.loads(text)
    except ValueError:
        raise UsageError(f"{path}: {key} is not a JSON object ({text[:60]!r}); fix: write it as "
                         '{"1": "0", "2": "1"} or run aup setup again') from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: {key} must be a JSON object of rid -> spec, got {text[:60]!r}")
    try:
        items = sorted(data.items(), key=lambda kv: int(kv[0]))
    except ValueError:
        raise UsageError(f"{path}: {key} keys must be resource ids (integers), got "
                         f"{sorted(data)!r}") from None
    return [str(v) for _, v in items]


def project_root(env_ini: Path) -> Path:
    """The folder relative paths in ``env_ini`` resolve against."""
    folder = env_ini.resolve().parent
    return folder.parent if folder.name == ".aup" else folder


def read_section(p: Path, what: str = "environment file") -> dict[str, str]:
    """The ``[Auptimizer]`` section of the ini file ``p``. Keys are case-insensitive, as in 2.0
    (Python's ConfigParser): a known key written in any case (``sql_engine``) is returned in
    its :data:`KNOWN_KEYS` spelling (``SQL_ENGINE``); other keys keep theirs.

    Raises:
        UsageError: the file is unreadable, lacks the section, or repeats a key.
    """
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep the spelling of unknown keys for a rewrite
    try:
        # surrogateescape: a path that is not valid UTF-8 (a folder named in Latin-1) comes
        # back as the bytes write_environment_file wrote
        with open(p, encoding="utf-8", errors="surrogateescape") as f:
            parser.read_file(f)
    except (OSError, configparser.Error) as err:
        raise UsageError(f"cannot read {what} {p}: {err}") from None
    if SECTION not in parser:
        raise UsageError(f"{p} has no [{SECTION}] section; fix: run 'aup setup --overwrite' "
                         "to write one")
    canonical = {k.lower(): k for k in KNOWN_KEYS}
    values: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for key, value in parser[SECTION].items():
        name = canonical.get(key.lower(), key)
        if name.lower() in spelled:
            raise UsageError(f"{p}: the key {key!r} repeats {spelled[name.lower()]!r} (keys are "
                             "case-insensitive); fix: keep one of them")
        spelled[name.lower()] = key
        values[name] = value
    return values


def read_environment(path: str | Path) -> Environment:
    """Read an env.ini file.

    Raises:
        UsageError: the file is unreadable, lacks the [Auptimizer] section, or has missing or
            bad values (the message names the key and the fix).
    """
    p = Path(path).expanduser()
    sec = read_section(p)
    root = project_root(p)
    database = (sec.get("database") or "").strip() or None
    if database is None:
        engine = (sec.get("SQL_ENGINE") or "").strip()
        file = (sec.get("SQLITE_FILE") or "").strip()
        if engine and engine != "sqlite":
            raise UsageError(f"{p}: SQL_ENGINE = {engine!r} needs a 'database' key with its URL "
                             "(e.g. database = postgresql+psycopg://user:pw@host/db); fix: add "
                             "it, or run 'aup setup --database URL'")
        if engine == "sqlite" and not file:
            raise UsageError(f"{p}: SQL_ENGINE = sqlite but the key SQLITE_FILE is missing; fix: "
                             "add SQLITE_FILE = <path of the database file>, or run 'aup setup "
                             "--overwrite'")
        if file:
            from aup.store.store import sqlite_url

            fp = Path(file).expanduser()
            database = sqlite_url((fp if fp.is_absolute() else root / fp).resolve())
    elif "://" not in database:
        raise UsageError(f"{p}: database = {database!r} is not a URL; fix: write e.g. "
                         "sqlite:///path/to/sqlite3.db or postgresql+psycopg://user:pw@host/db")
    cpu = (sec.get("cpu") or "").strip()
    try:
        cpu_n = int(cpu) if cpu else None
        if cpu_n is not None and cpu_n < 0:
            raise ValueError
    except ValueError:
        raise UsageError(f"{p}: cpu must be a whole number >= 0, got {cpu!r}") from None
    user = (sec.get("user") or "").strip() or None
    return Environment(p, database, cpu_n, _mapping(sec.get("gpu_mapping"), "gpu_mapping", p),
                       _mapping(sec.get("node_mapping"), "node_mapping", p),
                       _mapping(sec.get("aws_mapping"), "aws_mapping", p), user)


def environment_file(folder: str | Path | None = None) -> Path:
    """Where the env.ini of ``folder`` is: ``folder/env.ini``; by default ``$AUP_ENV``, else
    ``./.aup/env.ini``."""
    if folder is not None:
        return Path(folder).expanduser() / "env.ini"
    env = os.environ.get("AUP_ENV")
    if env:
        p = Path(env).expanduser()
        return p / "env.ini" if p.is_dir() else p
    return Path.cwd() / ".aup" / "env.ini"


def unread_home_environment() -> Path | None:
    """``~/.aup/env.ini`` when it exists but is not read: no ``$AUP_ENV`` and no
    ``./.aup/env.ini`` (Auptimizer 2.0 fell back to it then; this version does not), else
    None."""
    if os.environ.get("AUP_ENV") or (Path.cwd() / ".aup" / "env.ini").is_file():
        return None
    try:
        home = Path("~/.aup/env.ini").expanduser()
    except RuntimeError:  # no home directory
        return None
    return home if home.is_file() and home.resolve() != environment_file().resolve() else None


def load_environment(folder: str | Path | None = None) -> Environment | None:
    """The environment of ``folder`` (default: ``$AUP_ENV`` or ``./.aup``), or None when there
    is no env.ini.

    Raises:
        UsageError: ``$AUP_ENV`` names a missing file, or the file is invalid.
    """
    path = environment_file(folder)
    if path.is_file():
        return read_environment(path)
    if folder is None and os.environ.get("AUP_ENV"):
        raise UsageError(f"AUP_ENV={os.environ['AUP_ENV']} but there is no env.ini at {path}; "
                         "fix: run 'aup setup' there or unset AUP_ENV")
    return None


def parse_resource_list(value: str | None, kind: str) -> list[str]:
    """Resource specs as 2.0's ``--gpu/--node/--aws`` took them.

    Args:
        value: ``none``/empty (no resources), a file with one spec per line, or a
            comma-separated list (for GPUs each item is one slot; a file line ``0,1`` is one
            slot that sees two cards).
        kind: ``gpu``, ``node`` or ``aws`` (for messages and checks).

    Raises:
        UsageError: a spec is malformed (a node without ``user@host``, a GPU id that is not a
            whole number).
    """
    if value is None:
        return []
    text = value.strip()
    if not text or text.lower() == "none":
        return []
    p = Path(text).expanduser()
    if p.is_file():
        items = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
        items = [i for i in items if i and not i.startswith("#")]
    else:
        items = [i.strip() for i in text.split(",")]
        if "" in items:  # "0,,1": a missing id (the same entry in experiment.json is refused)
            raise UsageError(f"the {kind} list {text!r} has an empty entry between commas. "
                             f"Fix: list each {kind} once, e.g. "
                             f"{'0,1' if kind == 'gpu' else _SPEC_FORMS[kind][1]}")
    for item in items:
        check_resource_spec(item, kind)
    return items


#: The form of a ``node``/``aws`` entry and an example, for messages.
_SPEC_FORMS = {"node": ("user@host[:port] [keyfile]", "me@10.0.0.5:22 ~/.ssh/id_ed25519"),
               "aws": ("user@instance-id[:port] [keyfile]",
                       "ubuntu@i-0123456789abcdef0 ~/.ssh/aws.pem")}


def check_resource_spec(item: str, kind: str) -> None:
    """Raise :class:`UsageError` when ``item`` is not a valid ``kind`` spec.

    ``gpu``: whole numbers (comma-separated: one slot seeing several cards). ``node``:
    ``user@host[:port] [keyfile]`` with a port in 1..65535. ``aws``: the same with an EC2
    instance id (``i-`` and 8 to 17 hex digits) as the host.
    """
    if kind == "gpu":
        if not all(x.strip().isdigit() for x in item.split(",")):
            raise UsageError(f"GPU id {item!r} is not a whole number (or a comma-separated list "
                             "of them, one slot seeing several cards); fix: e.g. 0,1,2 or a "
                             "file with one id per line")
        return
    form, example = _SPEC_FORMS.get(kind, _SPEC_FORMS["node"])
    words = item.split()
    host = words[0] if words else ""
    if "@" not in host or not host.split("@", 1)[0] or not host.split("@", 1)[1] or len(words) > 2:
        raise UsageError(f"{kind} spec {item!r} is not '{form}'; fix: e.g. {example}")
    name, colon, port = host.split("@", 1)[1].partition(":")
    if colon and not (port.isdigit() and 0 < int(port) < 65536):
        raise UsageError(f"{kind} spec {item!r}: the port {port!r} is not a number in 1..65535; "
                         f"fix: e.g. {example}")
    if kind == "aws":
        from aup.resources.aws import INSTANCE_ID

        if not INSTANCE_ID.match(name):
            raise UsageError(f"aws spec {item!r}: {name!r} is not an EC2 instance id (i- "
                             f"followed by 8 to 17 hex digits); fix: e.g. {example}")


def render_environment(values: dict[str, str]) -> str:
    """The text of an env.ini with ``values`` in the ``[Auptimizer]`` section (known keys first,
    in :data:`KNOWN_KEYS` order)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    ordered = {k: values[k] for k in KNOWN_KEYS if k in values}
    ordered.update({k: v for k, v in values.items() if k not in ordered})
    parser[SECTION] = ordered
    import io

    buf = io.StringIO()
    buf.write("# Written by 'aup setup'. Format: docs/setup.md\n")
    parser.write(buf)
    return buf.getvalue()


def mapping_json(specs: list[str], first_rid: int) -> str:
    """2.0's ``*_mapping`` value: ``{"<rid>": "<spec>"}`` with rids from ``first_rid``."""
    return json.dumps({str(first_rid + i): s for i, s in enumerate(specs)})


def write_environment_file(path: Path, text: str, private: bool) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file renamed into place); mode 0600
    when ``private`` (the file holds a database password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    # surrogateescape: a path that is not valid UTF-8 is written as its own bytes
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(text)
    os.replace(tmp, path)
