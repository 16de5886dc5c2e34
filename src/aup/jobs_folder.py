"""One database per ``jobs/`` folder: the check made before a run, and the claim a run holds.

Job files are named by job id (``<id>.json``, ``<id>.<attempt>.out``) and ids count per
database, so two databases writing one ``jobs/`` folder overwrite each other's files, and a job
of one could read the configuration written for a job of the other. Two rules keep them apart:

* **Files left by another database** (an earlier run with another ``--db``, a deleted
  ``.aup/``...): a file whose id is above the largest id this database recorded cannot be one of
  its own (:func:`check_jobs_dir`).
* **A run of another database going on now**: every running experiment holds a shared
  ``flock`` on ``jobs/.aup-db-<hash>.lock`` (``<hash>``: the database's identity) for its whole
  life; a run of another database that finds one of those locks held is refused
  (:func:`claim_jobs_dir`). Checking and taking the lock happen under an exclusive lock on
  ``jobs/.aup-claim.lock``, so two runs started at the same moment cannot both pass the check
  before either has written a file. The locks end with the process (also when it is killed),
  so a crash never leaves a folder claimed.

Experiments of the same database share a folder freely (their job ids differ).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from aup.errors import UsageError

if TYPE_CHECKING:
    from aup.store.store import Store

#: Prefix and suffix of the per-database lock files in ``jobs/``.
_LOCK_PREFIX, _LOCK_SUFFIX = ".aup-db-", ".lock"
#: The lock held (exclusively, briefly) while a run checks the folder and takes its own lock.
_CLAIM_LOCK = ".aup-claim.lock"


def database_identity(url: str) -> str:
    """What names a database across processes: the resolved file of a SQLite URL, otherwise
    the URL without its password.

    Args:
        url: a SQLAlchemy URL.
    """
    from aup.store.store import safe_url, sqlite_file, sqlite_url

    path = sqlite_file(url)
    if path is not None:
        return sqlite_url(path.expanduser().resolve())
    return safe_url(url)


def _likely_owners(jobs_dir: Path, own: str, last_id: int) -> list[str]:
    """Databases that probably wrote the job files in ``jobs_dir`` (ids up to ``last_id``),
    other than ``own``: those named in the folder's lock files, then a ``.aup/sqlite3.db``
    next to the folder. SQLite files that no longer exist, or that recorded fewer jobs (an
    emptied history), are left out."""
    from aup.store.store import sqlite_file, sqlite_url

    found: list[str] = []
    try:
        for entry in os.scandir(jobs_dir):
            if entry.name.startswith(_LOCK_PREFIX) and entry.name.endswith(_LOCK_SUFFIX):
                try:
                    # surrogateescape: the bytes claim_jobs_dir wrote (os.fsencode)
                    with open(entry.path, encoding="utf-8", errors="surrogateescape") as f:
                        found.append(f.read(4096).strip())
                except OSError:
                    continue
    except OSError:
        pass
    beside = jobs_dir.parent / ".aup" / "sqlite3.db"
    if beside.is_file():
        found.append(sqlite_url(beside.resolve()))
    owners: list[str] = []
    for url in found:
        path = sqlite_file(url)
        if url and url != own and url not in owners and (
                path is None or (path.is_file() and _recorded_up_to(path) >= last_id)):
            owners.append(url)
    return owners


def _recorded_up_to(path: Path) -> int:
    """The largest job id the SQLite database ``path`` recorded (0 for none, or when it cannot
    be read), read on a read-only connection."""
    import sqlite3

    from aup.store.store import read_only_sqlite

    try:
        with read_only_sqlite(path) as con:
            return int(con.execute("SELECT max(jid) FROM job").fetchone()[0] or 0)
    except (sqlite3.Error, OSError, ValueError, TypeError):
        return 0


def check_jobs_dir(jobs_dir: Path, store: Store | str) -> None:
    """Refuse a ``jobs/`` folder that holds the files of jobs another database recorded.

    A file whose id is above the largest id this database recorded cannot be one of its own (a
    job is recorded before its files are written; the folder is listed before the database is
    asked, so a job another process of the same database starts meanwhile is no false alarm).

    Args:
        jobs_dir: the folder of the experiment's job files.
        store: the database, or the URL of one that does not exist yet (it recorded nothing:
            checked before it is created).

    Raises:
        UsageError: such files exist (nothing has been written).
    """
    try:
        names = [e.name for e in os.scandir(jobs_dir)]
    except OSError:  # no folder yet (or unreadable: the job launch reports that)
        return
    ids = [int(n.split(".", 1)[0]) for n in names
           if n.split(".", 1)[0].isdigit() and (n.endswith(".json") or n.endswith(".out"))]
    if not ids:
        return
    from aup.store.store import pasteable_db, safe_url, shown_url

    url = store if isinstance(store, str) else store.url
    last = 0 if isinstance(store, str) else store.last_job_id()
    if max(ids) > last:
        owners = [safe_url(o) for o in _likely_owners(jobs_dir, database_identity(url),
                                                      max(ids))]
        likely = ""
        if owners:
            likely = (f" (probably {owners[0]}: add --db {pasteable_db(owners[0])}"
                      " (db= in Python)"
                      + "".join(f", or else --db {pasteable_db(o)}" for o in owners[1:3])
                      + ("; the default database is .aup/sqlite3.db under the current folder, "
                         "so it follows the folder you run from)"
                         if any(o.startswith("sqlite") for o in owners) else ")"))
        raise UsageError(
            f"the folder {jobs_dir} holds the files of jobs up to id {max(ids)}, but the "
            f"database {shown_url(url)} recorded jobs only up to id {last}: they belong to "
            "another database (another --db, storage or AUP_DB, another current folder, a "
            "deleted .aup/, or a database emptied by aup setup --reset-history), and this "
            f"experiment's jobs would overwrite them. Fix: use the database that recorded them"
            f"{likely}, or move that jobs folder away (or run from another workingdir)")


class JobsFolderClaim:
    """A running experiment's hold on its ``jobs/`` folder (see the module text).

    Release it with :meth:`release` (or ``with``) when the experiment's run ends; the
    operating system releases it when the process ends.
    """

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def release(self) -> None:
        """Give the folder up (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JobsFolderClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_jobs_dir(jobs_dir: Path, store: Store) -> JobsFolderClaim:
    """Check ``jobs_dir`` (:func:`check_jobs_dir`) and claim it for ``store``'s database, in one
    step that no run of another database can interleave with.

    Creates ``jobs_dir`` when missing. A folder on a file system without ``flock`` gets only
    the file check.

    Args:
        jobs_dir: the folder of the experiment's job files.
        store: the experiment's database.

    Returns:
        The claim, to release when the run ends.

    Raises:
        UsageError: a run of another database uses the folder now, or its files are there; or
            the folder cannot be created or written (read-only, a file in its place).
    """
    identity = database_identity(store.url)
    try:
        jobs_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(jobs_dir, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        claim_fd = os.open(jobs_dir / _CLAIM_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        # every job writes its configuration there: refused now, before anything is recorded
        raise UsageError(
            f"cannot write the job files to the folder {jobs_dir}: "
            f"{err.strerror or err}. Fix: make it a folder you can write to (a file of that "
            "name must go), or set workingdir in experiment.json to a writable folder") from None
    try:
        fcntl.flock(claim_fd, fcntl.LOCK_EX)
        own = jobs_dir / _lock_name(identity)
        stale = _refuse_live_runs(jobs_dir, own, identity)
        # checked before the stale locks go: a refusal names the databases they name
        check_jobs_dir(jobs_dir, store)
        for path in stale:
            path.unlink(missing_ok=True)
        fd = os.open(own, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if os.fstat(fd).st_size == 0:
                # fsencode: a path that is not valid UTF-8 is written as its own bytes
                os.write(fd, os.fsencode(f"{identity}\n"))
        except BaseException:
            os.close(fd)
            raise
        return JobsFolderClaim(fd)
    except OSError as err:
        if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            raise
        check_jobs_dir(jobs_dir, store)  # no flock here (some network file systems)
        return JobsFolderClaim(None)
    finally:
        os.close(claim_fd)


def _lock_name(identity: str) -> str:
    # fsencode, not encode(): a SQLite path may hold the surrogate escapes of a folder name
    # that is not valid UTF-8 (os.fsdecode's), which UTF-8 refuses
    digest = hashlib.sha256(os.fsencode(identity)).hexdigest()[:16]
    return f"{_LOCK_PREFIX}{digest}{_LOCK_SUFFIX}"


def _refuse_live_runs(jobs_dir: Path, own: Path, identity: str) -> list[Path]:
    """Raise if a lock of another database in ``jobs_dir`` is held.

    Called under the claim lock: lock files are only opened under it, so the caller removing
    a stale one cannot strand a run that is about to lock it.

    Returns:
        The stale lock files (no run holds them).
    """
    stale: list[Path] = []
    for entry in os.scandir(jobs_dir):
        if (not entry.name.startswith(_LOCK_PREFIX) or not entry.name.endswith(_LOCK_SUFFIX)
                or entry.name == own.name):
            continue
        try:
            fd = os.open(entry.path, os.O_RDWR)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.read(fd, 4096).decode(errors="replace").strip() or "another database"
                raise UsageError(
                    f"the folder {jobs_dir} is in use by a running experiment of the database "
                    f"{other}; this run (database {identity}) would overwrite its job "
                    "files, which are named by job id. Fix: wait for that run to end, use the "
                    "same database (--db), or run from another workingdir") from None
            stale.append(Path(entry.path))
        finally:
            os.close(fd)
    return stale
