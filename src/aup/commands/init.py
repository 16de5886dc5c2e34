"""``aup init`` (also ``python -m aup.init``): write an experiment.json that runs as-is.

Interactive (a terminal): asks for the name, resource (and the GPU ids for ``gpu``), working
directory, script, ``n_parallel``, target, proposer, **the proposer's own options** (read from
its pydantic ``Options`` class in :mod:`aup.proposers.registry`, so a new proposer needs no
change here) and the parameters (name, type, range, log scale; grid points for ``sequence``).
Every answer is checked on the spot and asked again with the reason. The finished file is
validated with :func:`aup.config.parse_config` and then checked like ``aup run --check`` does
(:func:`check_as_run`: the resource's connection-free checks, the proposer built) before it is
written (2.0's init wrote files without ``name``, which its runner required).

Non-interactive (flags, for scripts)::

    aup init --no-input -e exp.json --script train.py --target min --proposer random \\
        --param x:float:-5,5 --param lr:float:1e-4,1e-1:log --param act:choice:relu,tanh \\
        --option n_samples=20
    aup init --no-input -e grid.json --script train.py --proposer sequence --resource gpu \\
        --gpus 0,1 --param x:float:0,1:n=11 --param k:int:0,10:interval=2

``--from FILE`` (or answering "yes" when the experiment file exists) starts from an existing
file's values. An existing file is replaced only after a "yes" or with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aup.commands.prompt import Prompter, allow_replace, int_check
from aup.errors import ConfigError, UsageError, shown_json

HELP = "create an experiment.json interactively (or from flags with --no-input)"
#: Keys the dialogue asks for itself; the proposer's Options fields are asked after them.
_OWN_KEYS = ("name", "script", "resource", "workingdir", "n_parallel", "target", "proposer",
             "parameter_config")
#: Common options a proposer takes (from ProposerOptions) but never uses: not asked.
_UNUSED_OPTIONS = {"sequence": ("random_seed",)}  # a grid draws no random numbers
#: The grid a new float or int parameter of ``sequence`` gets unless one is given, in the
#: dialogue and with ``--param`` alike: 5 points from low to high, every integer.
GRID_DEFAULT = {"float": "n=5", "int": "interval=1"}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``aup init`` to the CLI."""
    p = subparsers.add_parser("init", help=HELP, description=HELP)
    p.add_argument("--exp", "-e", default="experiment.json",
                   help="experiment file to write (default experiment.json)")
    p.add_argument("--from", dest="source", help="start from the values of this experiment file")
    p.add_argument("--overwrite", "-o", action="store_true",
                   help="replace an existing file without asking")
    p.add_argument("--no-input", action="store_true",
                   help="ask nothing: build the file from the flags (default when stdin is not a "
                   "terminal)")
    p.add_argument("--name", help="experiment name (default: the file name)")
    p.add_argument("--script", help="training script (relative to workingdir)")
    p.add_argument("--resource", help="where jobs run (default cpu)")
    p.add_argument("--gpus", metavar="IDS",
                   help="with --resource gpu: GPU ids, one job slot each, e.g. 0,1 (written as "
                   'resource_args "gpus"; default: gpu_mapping of .aup/env.ini)')
    p.add_argument("--workingdir", help="job folder (default ./)")
    p.add_argument("--n-parallel", type=int, help="jobs at once (default 1)")
    p.add_argument("--target", choices=["min", "max"], help="minimize or maximize the score")
    p.add_argument("--proposer", help="search algorithm (default random)")
    p.add_argument("--param", action="append", default=[],
                   metavar="NAME:TYPE:RANGE[:log][:n=POINTS|:interval=STEP]",
                   help="a parameter, e.g. x:float:0,1  lr:float:1e-4,1e-1:log  "
                   "act:choice:relu,tanh; the grid of the sequence proposer: x:float:0,1:n=11 "
                   "or k:int:0,10:interval=2 (default n=5 for a float, interval=1 for an int) "
                   "(repeatable)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a top-level key (proposer option such as n_samples=20, or any other "
                   "experiment key; VALUE is JSON or text)")
    p.set_defaults(func=run)
    return p


# -- parsing helpers ------------------------------------------------------------------------------
def parse_list(text: str) -> list[Any]:
    """A list typed as ``[1, 2]``, ``1, 2``, ``'a', 'b'`` or ``relu, tanh`` (2.0's forms)."""
    t = text.strip()
    if not _balanced(t):
        raise ValueError(f"unbalanced brackets in {t!r}; fix: close every [ and {{ you open, "
                         "e.g. [1, 2]")
    if t.startswith("[") and t.endswith("]") and _balanced(t[1:-1]):
        t = t[1:-1]
    if not t.strip():
        return []
    out = []
    for item in _split_top(t):
        item = item.strip()
        try:
            out.append(json.loads(item))
        except ValueError:
            if len(item) >= 2 and item[0] == item[-1] == "'":
                item = item[1:-1]
            out.append(item)
    return out


def _scan(text: str) -> Iterator[tuple[str, int, bool]]:
    """Each character of ``text`` with the ``[``/``{`` depth after it and whether it lies
    inside quotes (the quote characters themselves count as outside)."""
    depth, quote = 0, ""
    for ch in text:
        quoted = bool(quote) and ch != quote
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        yield ch, depth, quoted


def _balanced(text: str) -> bool:
    """Whether every ``[``/``{`` outside quotes is closed by a later ``]``/``}``."""
    depth = 0
    for _, depth, _ in _scan(text):
        if depth < 0:
            return False
    return depth == 0


def _split_top(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and quotes."""
    parts, cur = [], ""
    for ch, depth, quoted in _scan(text):
        if ch == "," and depth == 0 and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def check_range(kind: str, values: list[Any], log: bool = False) -> list[Any]:
    """Check a parameter range; returns it (ints as ints).

    Raises:
        ValueError: with the reason.
    """
    if kind == "choice":
        if not values:
            raise ValueError("list at least one value, e.g. relu, tanh")
        return values
    if len(values) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                   for v in values):
        raise ValueError("give two numbers low, high (e.g. 0, 1)")
    low, high = values
    if low > high:
        raise ValueError(f"the low bound is above the high one (did you mean {high}, {low})")
    if kind == "int":
        if not all(float(v).is_integer() for v in values):
            raise ValueError("int bounds must be whole numbers")
        values = [int(low), int(high)]
    if log and low <= 0:
        raise ValueError("a log scale needs a low bound > 0")
    return values


#: Parameter names ``aup init`` accepts (interactive and ``--param``): a letter of any script or
#: ``_``, then letters, digits, ``_``, ``.`` and ``-``.
PARAM_NAME = re.compile(r"[^\W\d][\w.-]*")


def check_param_name(name: str, taken: set[str]) -> str:
    """Check a new parameter name against the job protocol and the names already given.

    The same rule serves the dialogue and ``--param``: :data:`PARAM_NAME`, not reserved by the
    job protocol, not given twice.

    Raises:
        ValueError: with the reason.
    """
    from aup.config import RESERVED_JOB_KEYS

    if not PARAM_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a parameter name: use letters (of any script), "
                         "digits, _, . and - (starting with a letter or _)")
    if name in RESERVED_JOB_KEYS:
        raise ValueError(f"{name!r} is reserved for the job protocol")
    if name in taken:
        raise ValueError(f"{name!r} is already a parameter")
    return name


def parse_param_flag(text: str, taken: set[str] | None = None) -> dict[str, Any]:
    """``NAME:TYPE:RANGE[:log][:n=POINTS|:interval=STEP]`` -> a parameter_config entry.

    A float or int range holds no ``:``, so every part after it is a flag: ``log``, or the grid
    of the ``sequence`` proposer, ``n=POINTS`` or ``interval=STEP`` (the dialogue's grid
    question); a choice's values may contain ``:`` (only a last ``:log`` is split off).
    ``taken``: names of the parameters given before.

    Raises:
        UsageError: malformed flag.
    """
    parts = text.split(":")
    if len(parts) < 3 or parts[1] not in ("float", "int", "choice"):
        raise UsageError(f"--param {text!r}: write NAME:TYPE:RANGE[:log] with TYPE float, int or "
                         "choice, e.g. x:float:0,1")
    name, kind = parts[0], parts[1]
    if kind == "choice":
        if len(parts) > 3 and re.fullmatch(r"\s*(n|interval)\s*=\s*[\d.eE+-]+\s*", parts[-1]):
            raise UsageError(f"--param {text!r}: {parts[-1].strip()} is a grid flag for float "
                             "and int parameters; a choice's grid is every value. Fix: drop "
                             f"':{parts[-1].strip()}' (or quote a value that holds ':', e.g. "
                             f"{name}:choice:a,'b:c')")
        log = parts[-1] == "log" and len(parts) > 3
        rng, flags = ":".join(parts[2:-1] if log else parts[2:]), []
    else:
        log, rng, flags = False, parts[2], parts[3:]
    grid: dict[str, Any] = {}
    for flag in flags:
        if flag == "log":
            if log:
                raise UsageError(f"--param {text!r}: log is given twice")
            log = True
        elif re.match(r"\s*(n|interval)\s*=", flag):
            if grid:
                raise UsageError(f"--param {text!r}: give one grid flag, n=POINTS or "
                                 "interval=STEP")
            try:
                grid = _grid_check(flag, kind)
            except ValueError as err:
                raise UsageError(f"--param {text!r}: {err}") from None
        else:
            raise UsageError(f"--param {text!r}: unknown flag {flag!r} after the range (the "
                             "flags are log, n=POINTS and interval=STEP). Fix: write "
                             f"{name}:{kind}:LOW,HIGH[:log][:n=POINTS], e.g. "
                             f"{name}:{kind}:1,100:log or {name}:{kind}:0,1:n=5")
    try:
        check_param_name(name, taken or set())
        values = check_range(kind, parse_list(rng), log)
    except ValueError as err:
        raise UsageError(f"--param {text!r}: {err}") from None
    entry: dict[str, Any] = {"name": name, "type": kind, "range": values}
    if log:
        entry["log"] = True
    entry.update(grid)
    return entry


def parse_gpus(text: str) -> list[int | str]:
    """GPU ids typed as ``0,1`` (one job slot per id) or ``"0,1", 2`` (a quoted entry is one
    slot that sees several cards) -> ``resource_args.gpus``, checked by the ``gpu`` resource's
    own options model.

    Raises:
        ValueError: with the reason.
    """
    from pydantic import ValidationError

    from aup.resources.gpu import GPUOptions

    ids = parse_list(text)
    for gid in ids:
        if isinstance(gid, str) and any(ch.isspace() for ch in gid.strip()):
            raise ValueError("separate GPU ids with commas (e.g. 0,1), not spaces")
    try:
        GPUOptions.model_validate({"gpus": ids})
    except ValidationError as err:
        raise ValueError("; ".join(str(e["msg"]).removeprefix("Value error, ")
                                   for e in err.errors())) from None
    return [gid.strip() if isinstance(gid, str) else gid for gid in ids]


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


# -- proposer options from the pydantic model ----------------------------------------------------
def _describe(field) -> str:
    bits = []
    ann = field.annotation
    args = typing.get_args(ann)
    if typing.get_origin(ann) is typing.Literal:
        bits.append("/".join(map(str, args)))
    else:
        names = [getattr(a, "__name__", str(a)) for a in (args or (ann,)) if a is not type(None)]
        bits.append(" or ".join(names))
        if type(None) in args:
            bits.append("or none")
    for m in field.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            v = getattr(m, attr, None)
            if v is not None:
                bits.append(f"{sym} {v:g}" if isinstance(v, float) else f"{sym} {v}")
    return " ".join(bits)


def _is_model(ann: Any) -> bool:
    from pydantic import BaseModel

    cands = typing.get_args(ann) or (ann,)
    return any(isinstance(a, type) and issubclass(a, BaseModel) for a in cands)


def proposer_questions(proposer_cls) -> list[tuple[str, Any]]:
    """The Options fields ``aup init`` asks about: ``(name, field)``, the proposer's own first
    (in declaration order), then the common ones (``n_samples``, ``random_seed``).

    Skipped: nested models and ``points_to_evaluate`` (edit the file for those), ``n_samples``
    when the proposer sets its own number of jobs (it overrides ``total``), options the
    proposer never uses
    (:data:`_UNUSED_OPTIONS`: ``random_seed`` of ``sequence``) and fields of the experiment
    itself.
    """
    from aup.proposers.base import Proposer, ProposerOptions

    own_total = proposer_cls.total is not Proposer.total
    fields = proposer_cls.Options.model_fields
    common = [n for n in fields if n in ProposerOptions.model_fields]
    ordered = [n for n in fields if n not in common] + common  # the proposer's own keys first
    unused = _UNUSED_OPTIONS.get(getattr(proposer_cls, "name", ""), ())
    out = []
    for name in ordered:
        field = fields[name]
        if name in _OWN_KEYS or name in unused or _is_model(field.annotation):
            continue
        if name == "n_samples" and own_total:
            continue
        if name.endswith("_dir") or name == "points_to_evaluate":  # configurations: edit the file
            continue
        out.append((name, field))
    return out


def _option_check(options_cls, name: str):
    from pydantic import ValidationError

    def check(text: str) -> Any:
        value = None if text.lower() in ("none", "null") else _json_or_text(text)
        try:
            model = options_cls.model_validate({name: value})
        except ValidationError as err:
            msgs = [e["msg"] for e in err.errors() if e["loc"] and e["loc"][0] == name]
            raise ValueError("; ".join(msgs) or str(err)) from None
        out = getattr(model, name)
        return out.value if hasattr(out, "value") and not isinstance(out, int | float) else out

    return check


# -- the dialogue ---------------------------------------------------------------------------------
def _load(path: Path) -> dict[str, Any]:
    from aup.json_syntax import json_syntax_problem

    try:
        text = path.read_text(encoding="utf-8-sig")
        data = json.loads(text)
    except json.JSONDecodeError as err:
        what, fix = json_syntax_problem(text, err)
        raise UsageError(f"{path} is not valid JSON: {what}; nothing was written. Fix: "
                         f"{fix}") from None
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read {path}: {err}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a JSON object")
    return data


def _default_str(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    return shown_json(value)


class _Dialogue:
    def __init__(self, prompter: Prompter, exp_path: Path, start: dict[str, Any],
                 env: Any = None):
        self.p = prompter
        self.exp_path = exp_path
        self.base = exp_path.resolve().parent
        self.start = start
        self.env = env

    def run(self) -> dict[str, Any]:
        from aup.proposers import registry as preg
        from aup.resources import registry as rreg

        s, ask = self.start, self.p.ask
        data: dict[str, Any] = {}
        data["name"] = ask("experiment name", s.get("name") or self.exp_path.stem,
                           _nonempty)
        data["resource"] = self.p.choose("resource (where jobs run)", rreg.names(),
                                         s.get("resource", "cpu"))
        resource_args = self._resource_args(data["resource"], s.get("resource_args"))
        local = getattr(rreg.get(data["resource"]), "local_files", True)
        wd_question = "working directory of the jobs" + ("" if local else " (on the remote side)")
        data["workingdir"] = ask(wd_question, s.get("workingdir", "./"),
                                 self._dir_check if local else _nonempty)
        wd = (self.base / Path(data["workingdir"]).expanduser()) if local else None
        data["script"] = ask("training script (relative to the working directory; arguments "
                             "allowed)", s.get("script"),
                             (lambda t: _script_check(t, wd)) if local else _nonempty)
        data["n_parallel"] = ask("jobs at once (n_parallel)", s.get("n_parallel", 1),
                                 int_check(1))
        data["target"] = self.p.choose("target: minimize or maximize the score", ["min", "max"],
                                       s.get("target", "max"))
        data["proposer"] = self.p.choose("proposer (search algorithm)", preg.names(),
                                         str(s.get("proposer", "random")).lower())
        pcls = preg.get(data["proposer"])
        questions = proposer_questions(pcls)
        if questions:
            self.p.say(f"options of the {data['proposer']} proposer:")
        for name, field in questions:
            default = s.get(name, field.get_default(call_default_factory=True))
            if hasattr(default, "value") and not isinstance(default, int | float):
                default = default.value
            data[name] = ask(f"  {name} ({_describe(field)})", _default_str(default),
                             _option_check(pcls.Options, name))
        data["parameter_config"] = self._parameters(s.get("parameter_config"), is_grid(data))
        if resource_args:
            data["resource_args"] = resource_args
        # keys of the starting file the dialogue did not ask about are kept
        stale = {n for n, _ in proposer_questions_all(preg)} if s else set()
        stale.add("resource_args")  # merged above
        for k, v in s.items():
            if k not in data and k not in stale:
                data[k] = v
        return data

    def _resource_args(self, resource: str, existing: Any) -> dict[str, Any]:
        """``resource_args`` of the starting file, with the GPU ids asked for ``gpu`` (and
        dropped for any other resource, which would not use them)."""
        ra = dict(existing) if isinstance(existing, dict) else {}
        ids = ra.pop("gpus", None)
        if resource != "gpu":
            return ra
        env_ids = list(getattr(self.env, "gpus", None) or [])
        if isinstance(ids, list) and ids:
            default: str | None = ", ".join(json.dumps(i) for i in ids)
        else:
            default = "none" if env_ids else None
        question = "GPU ids, one job slot each (comma-separated, e.g. 0,1"
        question += f"; none: gpu_mapping of env.ini, {', '.join(env_ids)})" if env_ids else ")"

        def check(text: str) -> list[Any] | None:
            if text.lower() != "none":
                return parse_gpus(text)
            if not env_ids:
                raise ValueError('env.ini lists no GPU ids (gpu_mapping): give them here, e.g. '
                                 '0,1, or run "aup setup --gpu 0,1" first')
            return None

        chosen = self.p.ask(question, default, check)
        if chosen:
            ra["gpus"] = chosen
        return ra

    def _dir_check(self, text: str) -> str:
        if not (self.base / Path(text).expanduser()).is_dir():
            raise ValueError(f"no folder {self.base / text}")
        return text

    def _parameters(self, existing: Any, grid: bool) -> list[dict[str, Any]]:
        params: list[dict[str, Any]] = []
        if isinstance(existing, list) and existing:
            names = ", ".join(str(p.get("name")) for p in existing if isinstance(p, dict))
            n = len(existing)
            if self.p.confirm(f"keep the {n} parameter{'' if n == 1 else 's'} of the file "
                              f"({names})?", True):
                params = without_grid([dict(p) for p in existing if isinstance(p, dict)],
                                      grid)
                for entry in params if grid else ():  # a grid for those the file gave none
                    kind = entry.get("type")
                    if kind in GRID_DEFAULT and "n" not in entry and "interval" not in entry:
                        entry.update(self.p.ask(
                            f"  grid of {entry.get('name')}: n=POINTS or interval=STEP",
                            GRID_DEFAULT[kind], lambda t, k=kind: _grid_check(t, k)))
        self.p.say("parameters (ENTER on an empty name when done):")
        while True:
            taken = {p.get("name") for p in params}
            name = self.p.ask("  parameter name" + (" (ENTER when done)" if params else ""),
                              "" if params else None,
                              lambda t, tk=taken: t if t == "" else check_param_name(t, tk))
            if name == "":
                return params
            kind = self.p.choose(f"  type of {name}", ["float", "int", "choice"], "float")
            if kind == "choice":
                values = self.p.ask(f"  values of {name} (comma-separated)", None,
                                    lambda t: check_range("choice", parse_list(t)))
                params.append({"name": name, "type": "choice", "range": values})
                continue
            values = self.p.ask(f"  range of {name}: low, high", None,
                                lambda t, k=kind: check_range(k, parse_list(t)))
            entry: dict[str, Any] = {"name": name, "type": kind, "range": values}
            if values[0] > 0 and self.p.confirm(f"  log scale for {name}?", False):
                entry["log"] = True
            if grid:
                entry.update(self.p.ask(f"  grid of {name}: n=POINTS or interval=STEP",
                                        GRID_DEFAULT[kind],
                                        lambda t, k=kind: _grid_check(t, k)))
            params.append(entry)


def without_grid(params: list[dict[str, Any]], grid: bool) -> list[dict[str, Any]]:
    """``params`` as they are for a grid; without their grid keys (``n``, ``interval``) for
    another proposer, which would ignore them with a warning for each."""
    if grid:
        return params
    return [{k: v for k, v in p.items() if k not in ("n", "interval")} for p in params]


def is_grid(data: dict[str, Any]) -> bool:
    """Whether the experiment walks a grid (``sequence``, or a proposer with
    ``engine: sequence``), so that its float and int parameters take ``n`` or ``interval``."""
    return (str(data.get("proposer", "random")).lower() == "sequence"
            or data.get("engine") == "sequence")


def proposer_questions_all(preg) -> list[tuple[str, Any]]:
    """Every option name of every registered proposer (to drop stale keys on a proposer change)."""
    out = []
    for n in preg.names():
        out.extend(proposer_questions(preg.get(n)))
    return out


def _nonempty(text: str) -> str:
    if not text.strip():
        raise ValueError("it cannot be empty")
    return text.strip()


def _script_check(text: str, wd: Path | None) -> str:
    """The ``script`` answer: a command split into words like a shell command line; with a
    local ``wd``, its first word must be a file there. The name of a file that has a space,
    given alone (``my train.py``), is quoted for the experiment file."""
    from aup.config import quote_spaced_script

    if wd is not None and _is_spaced_file(text, wd):
        return shlex.quote(text)
    try:
        words = shlex.split(text)
    except ValueError as err:
        raise ValueError(f"cannot split the command: {err}") from None
    if not words:
        raise ValueError("name the script")
    if wd is not None and not (wd / Path(words[0]).expanduser()).is_file():
        quoted = quote_spaced_script(text, words[0], wd)
        if quoted is not None:  # "my train.py --fast": the name's space splits it
            raise ValueError(f"no file {wd / words[0]}: the command is split into words like "
                             f"a shell command, so quote the file name, which has a space: "
                             f"{quoted}")
        raise ValueError(f"no file {wd / words[0]}")
    return text


def _is_spaced_file(text: str, wd: Path) -> bool:
    """True when ``text`` as a whole names a file in ``wd`` that a shell-like split would cut
    into words (a name with a space or a quote), so it needs quoting as a ``script``; False
    when its first word names a file too (then the value runs as it is)."""
    try:
        if "\x00" in text or not (wd / Path(text).expanduser()).is_file():
            return False
        words = shlex.split(text)
        return words != [text] and not (words and (wd / Path(words[0]).expanduser()).is_file())
    except ValueError:
        return True  # an apostrophe in the name: it cannot even be split
    except (RuntimeError, OSError):  # ~nobody/...: no such home folder
        return False


def _shell_word(text: str) -> str:
    """``text`` as one word of a shell command line, in double quotes when they suffice (to
    show ``--script "'my train.py' --fast"``, not shlex's ``'"'"'`` form)."""
    if not any(c in text for c in '"$`\\!'):
        return f'"{text}"'
    return shlex.quote(text)


def _script_flag(value: str, data: dict[str, Any], exp_path: Path) -> str:
    """The ``script`` value of ``--script VALUE``. ``script`` is split into words like a shell
    command line, so the name of a local file with a space, given alone (``--script "my
    train.py"``, as the shell quoting passes it), is quoted for the experiment file
    (``"'my train.py'"``, a note says so); a command whose file name has a space (``--script
    "my train.py --fast"``) is refused with the flag that works."""
    from aup.config import quote_spaced_script
    from aup.resources import registry as rreg

    wd_text = data.get("workingdir", "./")
    try:
        local = getattr(rreg.get(str(data.get("resource", "cpu"))), "local_files", True)
    except (KeyError, ImportError):
        return value  # an unknown resource: parse_config names it
    if not local or not isinstance(wd_text, str) or "\x00" in value + wd_text:
        return value  # a remote script is not checked here
    wd = exp_path.resolve().parent / Path(wd_text).expanduser()
    if _is_spaced_file(value, wd):
        quoted = shlex.quote(value)
        print(f"note: --script {_shell_word(value)} is written as \"script\": "
              f"{shown_json(quoted)}, quoted since the value is split into words like a shell "
              "command", file=sys.stderr)
        return quoted
    try:
        words = shlex.split(value)
        first_is_file = bool(words) and (wd / Path(words[0]).expanduser()).is_file()
    except (ValueError, RuntimeError, OSError):
        return value  # parse_config reports it
    fixed = None if first_is_file or not words else quote_spaced_script(value, words[0], wd)
    if fixed is not None:
        raise UsageError(f"--script {_shell_word(value)}: no file {wd / words[0]} (the value "
                         "is split into words like a shell command, and the file name has a "
                         "space); nothing was written. Fix: quote the file name inside the "
                         f"value: --script {_shell_word(fixed)}")
    return value


def _grid_check(text: str, kind: str) -> dict[str, Any]:
    m = re.fullmatch(r"\s*(n|interval)\s*=\s*(\S+)\s*", text)
    if not m:
        raise ValueError("write n=POINTS (e.g. n=5) or interval=STEP (e.g. interval=0.1)")
    key, raw = m.groups()
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, not {raw}")
    if key == "n":
        if not value.is_integer() or value < 2:
            raise ValueError("n must be a whole number >= 2")
        return {"n": int(value)}
    if value <= 0:
        raise ValueError("the interval must be > 0")
    if kind == "int":
        if not value.is_integer():
            raise ValueError("an int grid needs a whole-number interval")
        return {"interval": int(value)}
    return {"interval": value}


# -- entry point -----------------------------------------------------------------------------------
def _from_flags(args, start: dict[str, Any]) -> dict[str, Any]:
    data = dict(start)
    for key, value in (("name", args.name), ("script", args.script),
                       ("resource", args.resource), ("workingdir", args.workingdir),
                       ("n_parallel", args.n_parallel), ("target", args.target),
                       ("proposer", args.proposer)):
        if value is not None:
            data[key] = value
    old_proposer = str(start.get("proposer", "random")).lower()
    switched = start and args.proposer is not None and args.proposer.lower() != old_proposer
    if switched:
        _drop_stale_options(data, args.source)
        if isinstance(data.get("parameter_config"), list) and not is_grid(data):
            data["parameter_config"] = without_grid(
                [p for p in data["parameter_config"] if isinstance(p, dict)], False)
    params: list[dict[str, Any]] = []
    for t in args.param:
        params.append(parse_param_flag(t, {p["name"] for p in params}))
    if params:
        # with --from, a --param replaces the parameter of its name and adds a new one; the
        # others are kept (they were dropped silently, and the script then missed them)
        given = {p["name"]: p for p in params}
        old = data.get("parameter_config")
        old = [p for p in old if isinstance(p, dict)] if isinstance(old, list) else []
        kept = [p for p in old if p.get("name") not in given]
        merged = [given.pop(p["name"]) if p.get("name") in given else p for p in old]
        data["parameter_config"] = merged + list(given.values())
        if kept:
            print(f"note: kept the parameters {', '.join(str(p.get('name')) for p in kept)} of "
                  f"{args.source}; --param replaces a parameter of the same name and adds new "
                  "ones", file=sys.stderr)
    for opt in args.option:
        key, sep, value = opt.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option {opt!r}: write KEY=VALUE, e.g. n_samples=20")
        data[key.strip()] = _json_or_text(value.strip())
    if is_grid(data):  # the dialogue's default grid, for the parameters given here
        # (and, on a switch to a grid, for those of the --from file, which had none)
        gridless = params
        if switched and not is_grid(start):
            gridless = [p for p in data.get("parameter_config") or [] if isinstance(p, dict)]
        for p in gridless:
            kind = p.get("type")
            if kind in GRID_DEFAULT and "n" not in p and "interval" not in p:
                p.update(_grid_check(GRID_DEFAULT[kind], kind))
    if args.gpus is not None:
        if data.get("resource") != "gpu":
            raise UsageError(f"--gpus is for the gpu resource, not {data.get('resource', 'cpu')!r}"
                             "; fix: add --resource gpu. Nothing was written")
        try:
            gpus = parse_gpus(args.gpus)
        except ValueError as err:
            raise UsageError(f"--gpus {args.gpus!r}: {err}; nothing was written") from None
        ra = data.get("resource_args")
        data["resource_args"] = {**(ra if isinstance(ra, dict) else {}), "gpus": gpus}
    if args.script is not None:
        data["script"] = _script_flag(args.script, data, Path(args.exp))
    data.setdefault("name", Path(args.exp).stem)
    missing = [k for k in ("script", "parameter_config") if k not in data]
    if missing:
        flags = " and ".join({"script": "--script", "parameter_config": "--param"}[k]
                             for k in missing)
        example = "(e.g. --script train.py --param x:float:0,1); nothing was written"
        if not args.no_input:  # piped answers are not read (trial 56: it named --no-input)
            raise UsageError(f"aup init asks its questions only in a terminal, and standard "
                             f"input is not one, so no answer was read: run it in a terminal, "
                             f"or give the answers as flags: {flags} {example}")
        raise UsageError(f"--no-input needs {flags} {example}")
    return data


def _drop_stale_options(data: dict[str, Any], source: str) -> None:
    """On a proposer change with ``--from``: drop the options of the file that the new
    proposer does not take (``n_samples`` and ``random_seed`` for ``sequence``...), as the
    dialogue does; a note names them."""
    from aup.proposers import registry as preg

    try:
        keep = {n for n, _ in proposer_questions(preg.get(str(data["proposer"]).lower()))}
    except (KeyError, ValueError):
        return  # an unknown proposer: parse_config names it
    stale = sorted({n for n, _ in proposer_questions_all(preg)} - keep & set(data))
    for k in stale:
        del data[k]
    if stale:
        print(f"note: dropped {', '.join(stale)} of {source}: the {data['proposer']} proposer "
              f"does not use {'it' if len(stale) == 1 else 'them'}", file=sys.stderr)


_ORDER = ("name", "script", "workingdir", "resource", "n_parallel", "target", "proposer",
          "n_samples", "random_seed")


def render(data: dict[str, Any]) -> str:
    """experiment.json text: the usual keys first, one line per parameter."""
    keys = [k for k in _ORDER if k in data] + [k for k in data if k not in _ORDER
                                                and k != "parameter_config"]
    lines = [f"  {json.dumps(k)}: {json.dumps(data[k])}" for k in keys]
    params = data.get("parameter_config")
    if isinstance(params, list):
        inner = ",\n".join(f"    {json.dumps(p)}" for p in params)
        lines.append(f'  "parameter_config": [\n{inner}\n  ]')
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.aup-tmp")
    tmp.write_text(render(data), encoding="utf-8")
    os.replace(tmp, path)


def check_as_run(config: Any, env: Any) -> None:
    """The checks ``aup run --check`` makes on a loaded configuration: the resource's checks
    that connect to nothing (GPU ids or hosts given at all...) and the proposer built from the
    space and its options (its planned number of jobs is compared with ``n_samples``).

    Raises:
        UsageError: the resource is not ready.
        ConfigError: the proposer rejects its options or the space.
    """
    import queue

    from aup.experiment import build_proposer, prepared_resource, warn_planned_jobs

    prepared_resource(config, queue.Queue(), env, check_only=True)
    warn_planned_jobs(config, build_proposer(config))


def run(args: argparse.Namespace) -> int:
    """Entry point of ``aup init``. Returns the exit code."""
    from aup.config import parse_config
    from aup.environment import load_environment

    interactive = not args.no_input and sys.stdin.isatty()
    prompter = Prompter()
    exp_path = Path(args.exp)
    if not interactive:  # the dialogue asks for the file again until it may be written
        problem = exp_file_problem(exp_path)
        if problem:
            raise UsageError(f"-e {problem[0]}; nothing was written. Fix: {problem[1]}")
    env = load_environment()  # what aup run reads (GPU ids...); a broken env.ini stops it too
    start: dict[str, Any] = {}
    if args.source:
        start = _load(Path(args.source))
    if interactive:
        prompter.say("Auptimizer experiment set-up (ENTER keeps [the default]; Ctrl-D aborts, "
                     "nothing is written until the end).")
        exp_path = Path(prompter.ask("experiment file to write", args.exp, _json_name))
        if exp_path.exists() and not args.source and prompter.confirm(
                f"{exp_path} exists. Start from its values?", True):
            start = _load(exp_path)
        data = _Dialogue(prompter, exp_path, start, env).run()
    else:
        data = _from_flags(args, start)
    try:
        config = parse_config(data, exp_path.resolve().parent, exp_path)
        check_as_run(config, env)
    except ConfigError as err:
        if interactive:
            prompter.say(err.render())
            prompter.say("nothing was written")
            return 2
        raise
    except UsageError as err:  # the resource is not ready: what aup run --check refuses
        if interactive:
            prompter.say(str(err))
            prompter.say("nothing was written")
            return 2
        no_ids = data.get("resource") == "gpu" and not (data.get("resource_args") or {}).get(
            "gpus")
        hint = ". Fix with aup init: add --gpus 0,1" if no_ids else ""
        raise UsageError(f"{err}{hint}; nothing was written") from None
    typos = [w for w in config.warnings
             if any(w.startswith(f"unknown key '{k}'") for k in _option_keys(args))]
    if typos and not interactive:
        # a key typed on the command line is meant to act: not written to be ignored
        raise UsageError("--option: " + "; ".join(typos).replace(" is ignored", "")
                         + ". Fix: correct the key (docs/experiment.md lists every key; docs/"
                         "proposers.md the options of each proposer); nothing was written")
    if exp_path.exists() and not args.overwrite and not allow_replace(
            prompter, exp_path, interactive=interactive, question=f"replace {exp_path}?",
            fix="add --overwrite, or write another file with -e"):
        return 2
    _write(exp_path, data)
    n = len(config.space)
    print(f"wrote {exp_path}: {config.proposer}, {n} parameter{'' if n == 1 else 's'}, target "
          f"{config.target}. Run it with: aup run {shlex.quote(str(exp_path))}")
    for w in config.warnings:
        print(f"note: {w}")
    return 0


def _option_keys(args: argparse.Namespace) -> set[str]:
    """The keys given with ``--option KEY=VALUE``."""
    return {opt.partition("=")[0].strip() for opt in args.option}


def _json_name(text: str) -> str:
    problem = exp_file_problem(Path(text))
    if problem:
        raise ValueError(f"{problem[0]}. Fix: {problem[1]}")
    return text


def exp_file_problem(path: Path) -> tuple[str, str] | None:
    """Why ``aup init`` must not write the experiment file ``path`` (even with
    ``--overwrite``), and the fix, or None: a folder, a name not ending in ``.json`` (a training
    script, a database...), or an SQLite database (the experiment history) whatever its name."""
    from aup.dashboard.export import is_sqlite_database

    if path.is_dir():
        return (f"{path} is a folder, and the experiment file must be a file",
                f"e.g. -e {path / 'experiment.json'}")
    if not path.parent.is_dir():  # its working directory is read relative to that folder
        return (f"{path}: its folder {path.parent} does not exist",
                f"create it first (mkdir -p {shlex.quote(str(path.parent))})")
    if path.suffix != ".json":
        return (f"{path}: the experiment file name must end with .json (aup init never "
                "replaces a script or a database)", f"e.g. -e {path.with_suffix('.json')}")
    try:
        if path.is_file() and is_sqlite_database(path):
            return (f"{path} is an SQLite database (perhaps the experiment history), never "
                    "replaced, not even with --overwrite", "choose another -e file")
    except OSError as err:
        return f"cannot read {path}: {err.strerror}", "choose another -e file"
    return None

