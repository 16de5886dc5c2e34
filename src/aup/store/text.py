"""Text that a database can hold, for paths whose names are not valid UTF-8.

Python gives such a name (a folder ``caf\\xe9`` made in Latin-1) as a ``str`` with surrogate
escapes (``os.fsdecode``), which neither SQLite nor PostgreSQL can store (``UnicodeEncodeError``:
surrogates not allowed). :func:`readable_text` is what the store writes instead: each byte that
is not UTF-8 as ``\\xNN`` (``caf\\xe9``), readable in every view. :func:`stored_path` finds the
file such a stored path names again.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: ``\xNN`` as :func:`readable_text` writes a byte that is not UTF-8 (always 0x80 or above).
_ESCAPED_BYTE = re.compile(rb"\\x([89a-f][0-9a-f])")


def readable_text(value: str) -> str:
    """``value`` as text any database can store: unchanged when it is valid Unicode (nearly
    always); otherwise its surrogate escapes written as the bytes they stand for, ``\\xNN``
    (``'caf\\udce9'`` becomes ``'caf\\\\xe9'``), and any other lone surrogate as ``\\udNNN``.

    Args:
        value: the text to store.
    """
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no file name decodes to
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def stored_path(text: str) -> Path:
    """The path a stored ``text`` names: ``text`` itself when that exists or it holds no
    ``\\xNN`` written by :func:`readable_text`; otherwise the path whose name has those bytes
    when that one exists (a folder whose name is not valid UTF-8), else ``text`` itself.

    Args:
        text: a path as the database holds it.
    """
    path = Path(text)
    if "\\x" not in text or path.exists():
        return path
    raw = _ESCAPED_BYTE.sub(lambda m: bytes([int(m.group(1), 16)]),
                            text.encode("utf-8", "surrogateescape"))
    restored = Path(os.fsdecode(raw))
    return restored if restored.exists() else path
