"""Diagnosis of an experiment file that is not valid JSON: what the mistake is, where, and the
fix (comments, trailing commas, an empty file, single quotes, Python literals). JSON stays
strict: this only explains what :func:`json.loads` refused."""

from __future__ import annotations

import json
import re


def _line_col(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of ``text[pos]`` (as :class:`json.JSONDecodeError` counts)."""
    return text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)


def _comments_and_trailing_commas(text: str) -> tuple[list[int], list[tuple[int, str]]]:
    """Where ``text`` has comments (``//``, ``/* */``, ``#``) and trailing commas (a ``,``
    followed only by white space or comments up to ``]`` or ``}``) outside strings: the
    offsets of the comments, and of the commas with the bracket after each."""
    comments: list[int] = []
    commas: list[tuple[int, str]] = []
    last_comma: int | None = None
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':  # a string: skip it (an escaped quote does not end it)
            i += 1
            while i < n and text[i] not in '"\n':
                i += 2 if text[i] == "\\" else 1
            i += 1
            last_comma = None
            continue
        if ch == "#" or text.startswith("//", i):
            comments.append(i)
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if text.startswith("/*", i):
            comments.append(i)
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if ch == ",":
            last_comma = i
        elif ch in "]}":
            if last_comma is not None:
                commas.append((last_comma, ch))
            last_comma = None
        elif not ch.isspace():
            last_comma = None
        i += 1
    return comments, commas


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


#: Python's spellings of JSON's literals (a config pasted from Python code).
_PYTHON_LITERALS = {"True": "true", "False": "false", "None": "null"}


def json_syntax_problem(text: str, err: json.JSONDecodeError) -> tuple[str, str]:
    """What is wrong with the JSON ``text`` that :func:`json.loads` refused with ``err``, and
    the fix: ``(message, fix)``. The usual mistakes are named (comments, trailing commas, an
    empty file, single quotes, Python's True/False/None), with the line and column of the
    culprit itself, not where the parser gave up (after a trailing comma, the bracket); any
    other error keeps the parser's words. JSON stays strict: this only explains."""
    if not text.strip():
        return ("the file is empty" if not text else "the file has only white space",
                'write the experiment as a JSON object, e.g. {"script": '
                '"train.py", "parameter_config": [{"name": "x", "type": "float", "range": '
                '[0, 1]}]} (aup init writes one)')
    rest = text[err.pos:]
    line, col = err.lineno, err.colno
    if rest.startswith(("//", "/*", "#")):
        comments, _ = _comments_and_trailing_commas(text)
        lines = sorted({_line_col(text, c)[0] for c in comments} | {line})
        where = (f"line {lines[0]}" if len(lines) == 1
                 else f"lines {_and([str(n) for n in lines])}")
        return (f"comments (// or /* */ or #) are not allowed in JSON (one starts at line "
                f"{line} column {col})",
                f"remove the comment{'s' if len(lines) > 1 else ''} at {where}")
    if rest[:1] in ("]", "}") and text[:err.pos].rstrip().endswith(","):
        _, commas = _comments_and_trailing_commas(text)
        culprit = (len(text[:err.pos].rstrip()) - 1, rest[0])
        found = sorted(set(commas) | {culprit})
        where = [f"before '{b}' at line {_line_col(text, c)[0]} column {_line_col(text, c)[1]}"
                 for c, b in found]
        many = len(found) > 1
        return (f"trailing comma{'s' if many else ''} {_and(where)} (JSON allows no comma "
                "after the last item of a list or object)", f"remove {'them' if many else 'it'}")
    if rest.startswith("'"):
        return (f"single quotes at line {line} column {col}: JSON strings and keys are in "
                "double quotes", "write \"...\" instead of '...'")
    word = re.match(r"[A-Za-z_]\w*", rest)
    if word and word.group() in _PYTHON_LITERALS:
        return (f"{word.group()} at line {line} column {col} is Python, not JSON",
                f"write {_PYTHON_LITERALS[word.group()]}")
    return f"{err.msg} at line {line} column {col}", f"fix the JSON syntax at line {line}"
