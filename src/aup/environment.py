"""The environment file written by ``aup setup``: ``.aup/env.ini``.

Format (as in Auptimizer 2.0, section ``[Auptimizer]``)::

    [Auptimizer]
    Auptimizer_PATH = ./.aup
    SQL_ENGINE = sqlite
    SQLITE_FILE = ./.aup/sqlite3.db
    gpu_mapping = {"1": "0", "2": "1"}

Additions: ``database`` (any SQLAlchemy URL; wins over ``SQL_ENGINE``/``SQLITE_FILE``),
``cpu`` (CPU slot count), ``user``. Relative paths resolve against the folder that holds
env.ini's ``Auptimizer_PATH`` parent (2.0 used the current directory, which broke when run
elsewhere). The file is optional: without it experiments use the embedded default.
"""

from __future__ import annotations

import configparser
import json
from dataclasses import dataclass, field
from pathlib import Path

from aup.errors import UsageError

SECTION = "Auptimizer"


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
    if not text:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        raise UsageError(f"{path}: {key} is not a JSON object ({text[:60]!r}); fix: write it as "
                         '{"1": "0", "2": "1"} or run aup setup again') from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: {key} must be a JSON object of rid -> spec")
    return [str(v) for _, v in sorted(data.items(), key=lambda kv: int(kv[0]))]


def read_environment(path: str | Path) -> Environment:
    """Read an env.ini file.

    Raises:
        UsageError: the file is unreadable, lacks the [Auptimizer] section, or has bad values
            (the message names the key).
    """
    p = Path(path).expanduser()
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive, as in 2.0
    try:
        with open(p, encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, configparser.Error) as err:
        raise UsageError(f"cannot read environment file {p}: {err}") from None
    if SECTION not in parser:
        raise UsageError(f"{p} has no [{SECTION}] section; run 'aup setup' to write one")
    sec = parser[SECTION]
    root = p.resolve().parent.parent if p.resolve().parent.name == ".aup" else p.resolve().parent
    database = sec.get("database")
    if not database:
        engine = sec.get("SQL_ENGINE", "sqlite")
        if engine != "sqlite":
            raise UsageError(f"{p}: SQL_ENGINE {engine!r} is not supported; use sqlite, or give "
                             "a 'database' URL")
        file = sec.get("SQLITE_FILE")
        if file:
            fp = Path(file).expanduser()
            database = f"sqlite:///{(fp if fp.is_absolute() else root / fp).resolve()}"
    cpu = sec.get("cpu")
    try:
        cpu_n = int(cpu) if cpu else None
    except ValueError:
        raise UsageError(f"{p}: cpu must be an integer, got {cpu!r}") from None
    return Environment(p, database, cpu_n, _mapping(sec.get("gpu_mapping"), "gpu_mapping", p),
                       _mapping(sec.get("node_mapping"), "node_mapping", p),
                       _mapping(sec.get("aws_mapping"), "aws_mapping", p), sec.get("user"))


def load_environment(folder: str | Path | None = None) -> Environment | None:
    """The environment of ``folder`` (default ``./.aup``), or None when it has no env.ini."""
    base = Path(folder) if folder is not None else Path.cwd() / ".aup"
    path = base / "env.ini"
    return read_environment(path) if path.is_file() else None
