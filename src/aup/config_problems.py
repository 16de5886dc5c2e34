"""Turning pydantic validation errors of experiment.json into :class:`~aup.errors.Problem` lines.

Every problem gets a key path, the bad value and a "Fix:" hint: a hint written for the key when
there is one, else one derived from the kind of error (``use an integer``, ``use one of "tpe",
"rand" or "anneal"``, ``use a value >= 2``...). A number or boolean written in quotes (``"3"``,
``"true"``) gets a hint showing it without quotes, since the configuration is validated
strictly (a JSON string is never turned into a number or a boolean); :func:`finalize` gives
that hint also to problems built outside this module from pydantic's messages (the
``resource_args.early_stop`` block). A problem left without a hint points to the document that
describes its key (docs/experiment.md unless told otherwise).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from aup.errors import MISSING, Problem, shown_json

#: Hint used when nothing more specific is known.
GENERIC_HINT = "see docs/experiment.md for the allowed values of this key"

#: Hints per key name, used whatever the error is (unless the value only needs its quotes
#: removed).
FIELD_HINTS = {
    "script": 'name the training script to run, e.g. "script": "train.py"',
    "parameter_config": 'give a list of {"name", "range", "type"} objects',
    "type": 'use one of "float", "int", "choice"',
    "range": "give [low, high] for float/int or a non-empty list of values for choice",
    "n_parallel": "use an integer from 1 to 10000 (the jobs that run at once)",
    "n_samples": "use an integer from 1 to 1000000000",
    "random_seed": "use an integer >= 0",
    "target": 'use "min" or "max"',
    "job_retries": "use an integer >= 0",
    "ignore_fail": "use true or false",
    "job_timeout": "give a number of seconds > 0, or leave the key out",
    "kill_grace": "give a number of seconds >= 0",
    "interval": "use a step > 0",
    "n": "use an integer number of grid points >= 2",
    "name": "use a short name of printable characters",
    "env": 'map variable names to strings, e.g. {"OMP_NUM_THREADS": "1"}',
    "multi_res_labels": 'list the names of the extra results, e.g. ["accuracy", "time"]',
}

_TRUE_WORDS = {"true", "yes", "on", "1", "y", "t"}
_FALSE_WORDS = {"false", "no", "off", "0", "n", "f"}


def _number_text(value: Any, integer: bool) -> str | None:
    """The number a quoted string holds, written as JSON, or None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        number = int(text) if integer else float(text)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None  # "nan" and "inf" are strings Python parses, but not JSON numbers
    return str(number) if integer else text


def _type_hint(etype: str, ctx: dict[str, Any], value: Any) -> str:
    """A hint derived from the pydantic error type alone ("" when the type says nothing)."""
    if etype in ("int_type", "int_parsing", "int_from_float"):
        return "use an integer (a JSON number without quotes), e.g. 3"
    if etype in ("float_type", "float_parsing", "finite_number"):
        return "use a number (without quotes), e.g. 0.5"
    if etype in ("bool_type", "bool_parsing"):
        return "use true or false (JSON booleans, without quotes)"
    if etype == "string_type":
        return 'use a string in double quotes, e.g. "text"'
    if etype in ("list_type", "tuple_type", "iterable_type"):
        return "use a list in [ ... ]"
    if etype in ("dict_type", "model_type", "model_attributes_type", "dataclass_type"):
        return "use a JSON object { ... }"
    if etype in ("literal_error", "enum") and "expected" in ctx:
        return f"use one of {str(ctx['expected']).replace(chr(39), chr(34))}"  # JSON quotes
    bounds = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
              "less_than": ("<", "lt"), "less_than_equal": ("<=", "le")}
    if etype in bounds and bounds[etype][1] in ctx:
        op, key = bounds[etype]
        return f"use a value {op} {ctx[key]}"
    if etype == "too_short":
        n = ctx.get("min_length", 1)
        return f"give at least {n} item{'s' if n != 1 else ''}"
    if etype == "too_long":
        return f"give at most {ctx.get('max_length')} items"
    if etype == "string_too_short":
        return "use a non-empty string"
    if etype == "extra_forbidden":
        return "remove this key or fix its spelling"
    if etype == "missing":
        return "add this key"
    return ""  # finalize() points to the document that describes the key


def _quote_hint(etype: str, value: Any) -> str:
    """For a number or boolean written as a string: the same value without quotes; for a whole
    number written ``3.0`` where an integer is expected: ``3``."""
    if etype in ("int_type", "int_parsing", "int_from_float") and isinstance(value, float) \
            and value.is_integer():
        return f"write a whole number without a decimal point: {int(value)}"
    if etype in ("int_type", "int_parsing"):
        text = _number_text(value, integer=True)
        if text is not None:
            return f"write the number without quotes: {text}"
    if etype in ("float_type", "float_parsing"):
        text = _number_text(value, integer=False)
        if text is not None:
            return f"write the number without quotes: {text}"
    if etype in ("bool_type", "bool_parsing") and isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return "write true (a JSON boolean, without quotes)"
        if word in _FALSE_WORDS:
            return "write false (a JSON boolean, without quotes)"
    return ""


#: The start of pydantic's messages for a wrong type, and the error type it stands for: a
#: problem reported with such a message by code that kept only the message (the
#: ``resource_args.early_stop`` checks) still gets the hint to remove the quotes.
_TYPE_MESSAGES = (("Input should be a valid integer", "int_type"),
                  ("Input should be a valid number", "float_type"),
                  ("Input should be a valid boolean", "bool_type"))


def _quote_hint_of(problem: Problem) -> str:
    """The remove-the-quotes hint for a problem whose message is pydantic's type message."""
    for start, etype in _TYPE_MESSAGES:
        if problem.message.startswith(start):
            return _quote_hint(etype, problem.value)
    return ""


def _doc_for(path: str, docs: dict[str, str]) -> str | None:
    """The document of the longest key path in ``docs`` that ``path`` starts with
    (``resource_args.nodes[0]`` -> ``docs["resource_args.nodes"]``)."""
    names = [part.split("[", 1)[0] for part in path.split(".")]
    for n in range(len(names), 0, -1):
        doc = docs.get(".".join(names[:n]))
        if doc:
            return doc
    return None


def loc_to_path(loc: Iterable[Any]) -> str:
    """``("parameter_config", 1, "range")`` -> ``parameter_config[1].range``; a key that is no
    identifier is quoted (``runtime_args.env["A=B"]``), and pydantic's ``[key]`` marker (the
    key itself is wrong, not its value) is dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        elif not str(part).isidentifier():
            out += f"[{shown_json(str(part))}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def problems_from_validation(err: ValidationError) -> list[Problem]:
    """One :class:`Problem` per pydantic error, with a hint when the key or the error type
    suggests one (:func:`finalize` gives the others one).

    Args:
        err: the error raised by ``model_validate``.

    Returns:
        The problems, paths relative to the validated object.
    """
    problems = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        field = next((p for p in reversed(loc) if isinstance(p, str)), "")
        etype, ctx = e["type"], e.get("ctx") or {}
        if etype == "missing":
            msg, value = "required key is missing", MISSING
        else:
            msg, value = e["msg"], e.get("input", MISSING)
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            if etype in ("literal_error", "enum"):
                msg = "not an allowed value"
        hint = _quote_hint(etype, value)
        if not hint and etype == "value_error" and "; use " in msg:
            msg, _, rest = msg.partition("; use ")
            hint = "use " + rest
        if not hint and etype in ("literal_error", "enum"):
            hint = _type_hint(etype, ctx, value)
            if field == "type" and isinstance(value, str) and "log" in value.lower():
                # Optuna's/hyperopt's "loguniform", "qloguniform", "log_uniform"...
                hint += ' (a log scale is "type": "float" or "int" with "log": true)'
        hint = hint or FIELD_HINTS.get(field, "") or _type_hint(etype, ctx, value)
        problems.append(Problem(loc_to_path(loc), msg, value, hint))
    return problems


def finalize(problems: Iterable[Problem], docs: dict[str, str] | None = None) -> list[Problem]:
    """Drop repeated problems (same path and message, e.g. ``n_samples`` checked by the
    experiment and by the proposer's options) and give every problem a hint.

    A number or boolean in quotes gets the hint to remove them, whichever model checked it. A
    problem without a hint gets "see DOC for the allowed values of this key", DOC being the
    document that describes the key.

    Args:
        problems: the problems found.
        docs: for keys not documented in docs/experiment.md (a proposer's options, a resource's
            own ``resource_args``), the document that describes them, by key path (``max_iter``,
            ``resource_args.gpus``); a path inside such a key (``resource_args.nodes[0]``) uses
            the same document.
    """
    out: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for p in problems:
        key = (p.path, p.message)
        if key in seen:
            continue
        seen.add(key)
        hint = _quote_hint_of(p) or p.hint
        if not hint:
            doc = _doc_for(p.path, docs or {})
            hint = f"see {doc} for the allowed values of this key" if doc else GENERIC_HINT
        if hint != p.hint:
            p = Problem(p.path, p.message, p.value, hint)
        out.append(p)
    return out


#: Parameter keys of other tools (Optuna, hyperopt, Ray Tune, NNI) and what to write here.
FOREIGN_PARAM_KEYS = {
    **dict.fromkeys(("low", "high", "lower", "upper", "min", "max"),
                    'write the bounds as "range": [low, high]'),
    **dict.fromkeys(("choices", "values", "options", "categories"),
                    'write the values as "range": [...] with "type": "choice"'),
    **dict.fromkeys(("scale", "log_scale", "distribution", "prior"),
                    'a log scale is "log": true on a float or int parameter'),
    **dict.fromkeys(("step", "q"), 'values are not quantized except on a grid: "n" grid '
                                   'points or "interval" (proposer "sequence")'),
}


def unknown_key_warning(path: str, key: str, known: Iterable[str], where: str = "",
                        foreign: dict[str, str] | None = None) -> str:
    """``unknown key 'job_failure.job_retry' is ignored (did you mean 'job_retries'?)``.

    Args:
        path: the key's full path.
        key: the key itself (compared with ``known`` for a suggestion).
        known: the keys allowed at that place.
        where: text appended after "is ignored", e.g. " by resource 'cpu'".
        foreign: other tools' names for a key here, with what to write instead (checked
            before the spelling suggestion: Optuna's ``low`` is not a misspelt ``log``).
    """
    text = f"unknown key '{path}' is ignored{where}"
    if foreign and key in foreign:
        return f"{text} ({foreign[key]})"
    close = closest_key(key, known)
    return text + (f" (did you mean '{close}'?)" if close else "")


def closest_key(key: str, known: Iterable[str]) -> str | None:
    """The known key ``key`` is probably a misspelling of (``warm_up`` -> ``warmup``), or
    None: the closest by :func:`difflib.get_close_matches`, else a known key the unknown one
    starts with (``log_scale`` -> ``log``)."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1)
    if not close:
        close = sorted((k for k in known if len(k) >= 3 and key.lower().startswith(k)),
                       key=len, reverse=True)[:1]
    return close[0] if close else None
