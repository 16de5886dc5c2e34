"""experiment.json: parsing and validation.

:func:`load_config` reads an experiment file and returns an :class:`ExperimentConfig`, or raises
:class:`~aup.errors.ConfigError` listing every problem at once (key path, bad value, hint).
Nothing is written anywhere while loading.

The keys and defaults follow the seed document (``proposer`` random, ``n_samples`` 10,
``n_parallel`` 1, ``job_retries`` 0, ``ignore_fail`` false, ``target`` max, ``workingdir`` "./").
Additions over Auptimizer 2.0: ``name`` is optional (file stem), ``resource`` defaults to
``cpu``, ``"log": true`` on float/int parameters, ``job_timeout`` (seconds), ``storage``
(SQLAlchemy URL). Unknown keys, at the top level and inside ``job_failure``, ``runtime_args``,
``resource_args`` and the parameter entries, produce a warning naming the key path.

Validation is strict, unlike Auptimizer 2.0: an integer must be a JSON integer (``3``, not
``"3"`` or ``3.0``), a boolean ``true``/``false`` (not ``"yes"``), a string a JSON string; an
integer is fine where a number is expected. The file may start with a UTF-8 byte order mark; a
key given twice in one object is an error. A proposer or resource whose optional Python
package is missing (``pip install 'auptimizer[bo]'``...) is reported at load, before anything
runs.

Relative paths (``workingdir``) resolve against the folder of the experiment file; ``script``
resolves against ``workingdir``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from aup.config_problems import (
    FOREIGN_PARAM_KEYS,
    closest_key,
    finalize,
    problems_from_validation,
    unknown_key_warning,
)
from aup.errors import (
    MISSING,
    ConfigError,
    Problem,
    install_hint,
    missing_modules,
    shown_json,
)
from aup.json_syntax import json_syntax_problem
from aup.space import ChoiceParam, FloatParam, IntParam, Param, SearchSpace

#: Job-config keys of the job protocol; no parameter may be named like one. ``tid`` is the
#: trial id the hyperopt proposer adds (as Auptimizer 2.0 did): ``aup.client.aup_args`` drops
#: it from every job config, so a parameter of that name would never reach the function.
RESERVED_JOB_KEYS = ("job_id", "n_iterations", "save_model", "folder_name", "tid")


class _Model(BaseModel):
    # allow_inf_nan: "job_timeout": Infinity was taken, and stored as JSON no reader parses.
    model_config = ConfigDict(extra="allow", validate_default=True, strict=True,
                              allow_inf_nan=False)


class ParameterSpec(_Model):
    """One entry of ``parameter_config``."""

    name: str = Field(min_length=1)
    type: Literal["float", "int", "choice"]
    range: list[Any]
    log: bool = False
    # a non-finite step gets the grid's own message ("the grid step must be a finite number")
    interval: float | None = Field(default=None, gt=0, allow_inf_nan=True)
    n: int | None = Field(default=None, ge=2)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _printable_name(v)


class JobFailure(_Model):
    """The ``job_failure`` block: retries per job and whether failures stop the experiment."""

    job_retries: int = Field(default=0, ge=0)
    ignore_fail: bool = False


class EarlyStopArgs(_Model):
    """``resource_args.early_stop`` (validated in detail by :mod:`aup.early_stop`)."""

    aup_policy: str
    aup_policy_steps: int = Field(ge=1)


class ResourceArgs(_Model):
    """``resource_args`` keys shared by every resource; resource-specific keys pass through."""

    save_model: bool = False
    multi_res_labels: list[str] | None = None
    track_intermediate_results: bool = False
    early_stop: dict[str, Any] | None = None

    @field_validator("multi_res_labels")
    @classmethod
    def _labels(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if any(not label.strip() for label in v):
            raise ValueError("a label is empty")
        for label in v:  # labels are column names of tables and exports, like names
            _printable_name(label)
        repeated = sorted({label for label in v if v.count(label) > 1})
        if repeated:
            raise ValueError(f"the label {repeated[0]!r} is given twice; give each result its "
                             "own name")
        return v


#: Most jobs at once: each is a slot, a process and file handles (a typo like 1e11 would
#: exhaust the memory before the first job).
MAX_PARALLEL = 10_000
#: Most jobs of one experiment (job ids are 64-bit integers in every database).
MAX_SAMPLES = 1_000_000_000
#: Deepest nesting accepted in experiment.json (a value nested deeper cannot be stored).
MAX_DEPTH = 64


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character (\\u0000), which no file name, command or "
                         "database accepts")
    return value


def _printable_name(value: str) -> str:
    """A name shown in tables and given to jobs: no control or invisible format characters."""
    import unicodedata

    bad = sorted({f"U+{ord(c):04X}" for c in value if unicodedata.category(c) in ("Cc", "Cf")})
    if bad:
        raise ValueError(f"contains control or invisible characters ({', '.join(bad)}), which "
                         "break tables and make look-alike names")
    return value


def _env_name(key: str) -> str:
    if not key or "=" in key or "\x00" in key:
        raise ValueError(f"{key!r} is not an environment variable name (it must be "
                         "non-empty, without '=' or NUL)")
    return key


def _env_value(value: str) -> str:
    if "\x00" in value:
        raise ValueError("the value contains a NUL character")
    return value


class RuntimeArgs(_Model):
    """``runtime_args``: ``env`` (merged into the job's environment), shell ``prescript`` and
    ``postscript`` run before/after the job, ``overwrite`` (re-upload the script, remote only).

    Every name and value of ``env`` is checked on its own (pydantic validates each key and
    value), so all bad entries are reported at once: what the operating system refuses would
    fail every job at its start.
    """

    env: dict[Annotated[str, AfterValidator(_env_name)],
              Annotated[str, AfterValidator(_env_value)]] = Field(default_factory=dict)
    # a NUL would fail every job at its start (START_FAILED: "embedded null byte")
    prescript: Annotated[str, AfterValidator(_no_nul)] = ""
    postscript: Annotated[str, AfterValidator(_no_nul)] = ""
    overwrite: bool = False


class ExperimentConfig(_Model):
    """A validated experiment.json.

    Attributes beyond the JSON keys (set by :func:`parse_config`):
        source: the experiment file, or None when built from a dict.
        base_dir: folder relative paths resolve against.
        warnings: messages about unknown keys and defaults worth knowing.
    """

    name: str | None = None
    proposer: str = "random"
    n_samples: int = Field(default=10, ge=1, le=MAX_SAMPLES)
    random_seed: int = Field(default=0, ge=0)
    script: str = Field(min_length=1)
    parameter_config: list[dict[str, Any]] = Field(min_length=1)
    resource: str = "cpu"
    resource_args: ResourceArgs = Field(default_factory=ResourceArgs)
    runtime_args: RuntimeArgs = Field(default_factory=RuntimeArgs)
    job_failure: JobFailure = Field(default_factory=JobFailure)
    n_parallel: int = Field(default=1, ge=1, le=MAX_PARALLEL)
    target: Literal["min", "max"] = "max"
    workingdir: str = "./"
    job_timeout: float | None = Field(default=None, gt=0)
    storage: str | None = None
    cwd: str | None = None

    @field_validator("proposer", "resource")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.strip().lower()

    @field_validator("script")
    @classmethod
    def _script(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the script is blank")
        return _no_nul(v)

    @field_validator("workingdir", "storage", "cwd")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        return v if v is None else _no_nul(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if len(v) > 255:
            raise ValueError(f"is {len(v)} characters long; the database keeps at most 255")
        return _printable_name(v)

    # -- derived values, filled by parse_config -------------------------------------------
    _source: Path | None = None
    _base_dir: Path = Path(".")
    _warnings: list[str] = []
    _raw: dict[str, Any] = {}
    _space: SearchSpace | None = None
    _proposer_options: Any = None
    _resource_options: Any = None

    @property
    def source(self) -> Path | None:
        """The experiment file this configuration came from."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """Folder against which relative paths are resolved (the experiment file's folder)."""
        return self._base_dir

    @property
    def warnings(self) -> list[str]:
        """Non-fatal remarks (unknown keys...), for the CLI to log."""
        return list(self._warnings)

    @property
    def raw(self) -> dict[str, Any]:
        """The JSON object as read, before defaults."""
        return dict(self._raw)

    @property
    def space(self) -> SearchSpace:
        """The search space built from ``parameter_config``."""
        assert self._space is not None
        return self._space

    @property
    def proposer_options(self) -> Any:
        """The proposer's own options (a pydantic model of the proposer class)."""
        return self._proposer_options

    @property
    def resource_options(self) -> Any:
        """The resource manager's own options (a pydantic model of the resource class)."""
        return self._resource_options

    @property
    def experiment_name(self) -> str:
        """``name``, or the experiment file's stem, or "experiment"."""
        if self.name:
            return self.name
        return self._source.stem if self._source else "experiment"

    @property
    def workingdir_path(self) -> Path:
        """Absolute working directory of local jobs (``workingdir`` against ``base_dir``)."""
        return (self._base_dir / Path(self.workingdir).expanduser()).resolve()

    @property
    def storage_url(self) -> str | None:
        """``storage`` with a relative SQLite path resolved against the experiment file's folder
        (like every other path of experiment.json); None when ``storage`` is not given.

        A bare path (no ``://``) is a SQLite file, as for ``--db``.
        """
        url = self.storage
        if url is None:
            return None
        from aup.store.store import absolute_sqlite_url, sqlite_url

        if "://" not in url:  # a file, named exactly ('my runs#1 ?.db')
            return sqlite_url((self._base_dir / Path(url).expanduser()).resolve())
        return absolute_sqlite_url(url, self._base_dir)

    @property
    def maximize(self) -> bool:
        """True when ``target`` is ``max``."""
        return self.target == "max"

    @property
    def target_text(self) -> str:
        """``target min``, ``target max``, or ``target max (the default)`` when experiment.json
        does not set it (shown by ``aup run`` and ``--check``: maximizing a loss by
        forgetting the key would otherwise go unnoticed)."""
        return f"target {self.target}" + ("" if "target" in self.model_fields_set
                                          else " (the default)")

    @property
    def script_argv(self) -> list[str]:
        """The script command split like a shell would (``"train.py --fast"`` -> 2 words)."""
        return shlex.split(self.script)

    def script_path(self) -> Path:
        """Absolute path of the script's first word, relative to the working directory.

        Symbolic links are not resolved: a script reached through a link runs under the link's
        path, as it does from a shell (its ``$0`` and ``__file__`` name the link, and files it
        finds next to itself are the ones next to the link).
        """
        return self.workingdir_path / Path(self.script_argv[0]).expanduser()

    def job_command(self) -> list[str]:
        """argv prefix that runs the script locally; the job config path is appended later.

        A ``.py`` script that is not executable runs under the current Python interpreter.
        """
        argv = self.script_argv
        path = self.script_path()
        # a link named without .py to a .py file is Python too (its target decides)
        if ((path.suffix == ".py" or path.resolve().suffix == ".py")
                and not os.access(path, os.X_OK)):
            return [sys.executable, str(path), *argv[1:]]
        return [str(path), *argv[1:]]

    def to_json_dict(self) -> dict[str, Any]:
        """The configuration with every default filled in, as stored in the database."""
        data = self.model_dump(mode="json", exclude_none=False)
        return data


def _problems_from_validation(err: ValidationError, prefix: str = "") -> list[Problem]:
    problems = problems_from_validation(err)
    if not prefix:
        return problems
    return [Problem(f"{prefix}.{p.path}" if p.path else prefix, p.message, p.value, p.hint)
            for p in problems]


def _build_param(spec: ParameterSpec, path: str, problems: list[Problem]) -> Param | None:
    r = spec.range
    if spec.type == "choice":
        if len(r) == 0:
            problems.append(Problem(path + ".range", "a choice needs at least one value", r,
                                    "list the allowed values"))
            return None
        if spec.log:
            problems.append(Problem(path + ".log", "log scale applies to float/int only", True,
                                    "remove \"log\" from this choice parameter"))
        seen: set[str] = set()
        for v in r:  # 1, 1.0, "1" and true are different values; a repeat is a mistake
            key = json.dumps(v, sort_keys=True)
            if key in seen:
                problems.append(Problem(path + ".range",
                                        f"the choice {shown_json(v)} is listed twice", r,
                                        "list each value once (a repeated value would be "
                                        "proposed twice as often, and twice in a grid)"))
                return None
            seen.add(key)
        return ChoiceParam(spec.name, tuple(r))
    if len(r) != 2 or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in r):
        problems.append(Problem(path + ".range", f"the range of {'an' if spec.type == 'int' else 'a'} {spec.type} parameter must "
                                "be [low, high] numbers", r,
                                "write the bounds as two numbers, e.g. [0, 1]" + (
                                    '; for just these values use "type": "choice"'
                                    if isinstance(r, list) and len(r) > 2 else "")))
        return None
    low, high = r
    if not all(math.isfinite(x) for x in r):
        problems.append(Problem(path + ".range", "bounds must be finite", r, "use finite numbers"))
        return None
    if low > high:
        problems.append(Problem(path + ".range", "lower bound is above upper bound", r,
                                f"swap them: [{high}, {low}]"))
        return None
    if spec.log and low <= 0:
        problems.append(Problem(path + ".range", "log scale needs bounds > 0", r,
                                "use a positive lower bound or drop \"log\""))
        return None
    interval = spec.interval
    if interval is not None and spec.n is not None:
        problems.append(Problem(path + ".n", "give one of \"interval\" (the step) and \"n\" "
                                "(the number of points), not both", spec.n,
                                "remove \"interval\" or \"n\""))
        return None
    if interval is not None and not math.isfinite(interval):
        problems.append(Problem(path + ".interval", "the grid step must be a finite number",
                                interval, "use a step > 0, e.g. 0.1, or \"n\" for a number "
                                "of points"))
        return None
    if interval is not None and spec.log and interval <= 1:
        problems.append(Problem(path + ".interval", "on a log scale \"interval\" is the ratio "
                                "of neighbouring grid values, so it must be above 1", interval,
                                "use e.g. 10 (one value per decade) or 2 (doubling), or "
                                "\"n\" for a number of points"))
        return None
    if spec.type == "int":
        if any(isinstance(x, float) and not float(x).is_integer() for x in r):
            problems.append(Problem(path + ".range", "int bounds must be whole numbers", r,
                                    "use integers, or type \"float\""))
            return None
        if interval is not None and not float(interval).is_integer():
            problems.append(Problem(path + ".interval", "an int grid step must be a whole number",
                                    interval, "use an integer step"))
            return None
        return IntParam(spec.name, int(low), int(high), spec.log,
                        int(interval) if interval is not None else None, spec.n)
    param = FloatParam(spec.name, float(low), float(high), spec.log, spec.interval, spec.n)
    if spec.n is not None and low < high and _too_narrow(param):
        fit = len(param.grid())
        if fit < spec.n:
            problems.append(Problem(path + ".n", f"only {fit} distinct floating-point values "
                                    f"of the range {r} fit on this grid", spec.n,
                                    f"use \"n\": {fit} or a wider range"))
            return None
    return param


def _too_narrow(param: FloatParam) -> bool:
    """Whether an ``n``-point grid spaces values so closely (under a millionth of the bounds'
    size) that floats may not tell them apart: only then is the grid built to count them."""
    lo, hi = (math.log(param.low), math.log(param.high)) if param.log else (param.low,
                                                                             param.high)
    step = hi / (param.n - 1) - lo / (param.n - 1)
    return step < 1e-6 * max(1.0, abs(lo), abs(hi))


_KNOWN_PARAM_KEYS = set(ParameterSpec.model_fields) | {"size"}

#: Blocks whose unknown keys are reported (``resource_args`` is handled with the resource).
_NESTED_BLOCKS: dict[str, type[BaseModel]] = {"job_failure": JobFailure,
                                              "runtime_args": RuntimeArgs}


def _requirement_problems(key: str, name: str, registry: Any) -> list[Problem]:
    """A problem at ``key`` when the proposer/resource ``name`` needs a package not installed."""
    extra, modules = getattr(registry, "REQUIREMENTS", {}).get(name, ("", ()))
    missing = missing_modules(modules)
    if not missing:
        return []
    what = ", ".join(missing)
    return [Problem(key, f"{key} '{name}' needs the Python package{'s' if len(missing) > 1 else ''}"
                    f" {what}, which {'are' if len(missing) > 1 else 'is'} not installed", name,
                    install_hint(extra))]


#: 2.0's env.ini keys, written in experiment.json's resource_args (trial 56).
_ENV_INI_MAPPINGS = {
    "gpu_mapping": "it is a key of env.ini (aup setup --gpu 0,1); in experiment.json write "
                   "resource_args \"gpus\": [0, 1]",
    "node_mapping": "it is a key of env.ini (aup setup --node user@host); in experiment.json "
                    "write resource_args \"nodes\": [\"user@host\"]",
    "aws_mapping": "it is a key of env.ini (aup setup --aws ...); in experiment.json write "
                   "resource_args \"instances\": [...]",
}

#: Auptimizer 2.0 names that are not (or no longer) a proposer or resource here: what to
#: write instead, said where the name is refused (docs/proposers.md has the details).
_FORMER_NAMES = {
    ("proposer", "passive"): "passive is a resource here, as in 2.0's code (its documentation "
                             "listed it among the proposers): write \"resource\": \"passive\" "
                             "with any proposer; else ",
    ("proposer", "eas"): "2.0's eas (a demo of architecture search with hard-coded paths) is not "
                         "offered; ",
}


def _lookup(key: str, raw: Any, registry: Any,
            problems: list[Problem]) -> tuple[str | None, Any]:
    """Find ``raw`` (the value of ``proposer`` or ``resource``) in its registry.

    Returns ``(name, class)``; the class is None when the name is unknown (a problem is added)
    or not a string (ExperimentConfig reports that). A known name whose optional packages are
    missing adds a problem too, but its class is returned so its options are still checked.
    """
    if not isinstance(raw, str):
        return None, None
    name = raw.strip().lower()
    try:
        cls = registry.get(name)
    except KeyError:
        hint = "use one of " + ", ".join(registry.names())
        hint = _FORMER_NAMES.get((key, name), "") + hint  # 2.0 names (trial 56)
        alias = proposer_alias(raw) if key == "proposer" else None
        if alias is not None and alias != name:  # another tool's name: TPESampler, asha
            hint = f"that algorithm is the proposer {alias!r} here: write \"proposer\": \"{alias}\""
        problems.append(Problem(key, f"unknown {key}", raw, hint))
        return name, None
    problems.extend(_requirement_problems(key, name, registry))
    return name, cls


def _spaced_prefix(script: str, first: str, wd: Path) -> tuple[str, Path] | None:
    """For a script whose first word ``first`` is no file: the shortest longer part of the
    unsplit command that names a file or a folder (``my job.py`` of ``my job.py --fast``: a
    name with a space), and its path; None when there is none."""
    text = script.lstrip()
    for end in range(len(first), len(text) + 1):
        if end < len(text) and not text[end].isspace():
            continue
        prefix = text[:end].rstrip()
        if len(prefix) <= len(first):
            continue
        target = wd / Path(prefix).expanduser()
        if target.is_file() or target.is_dir():
            return prefix, target
    return None


def quote_spaced_script(script: str, first: str, wd: Path) -> str | None:
    """``script`` with the name of its file quoted, when its first word ``first`` is no file
    but a longer part names one (``my job.py --fast`` -> ``'my job.py' --fast``); else None."""
    found = _spaced_prefix(script, first, wd)
    if found is None or not found[1].is_file():
        return None
    text = script.lstrip()
    return shlex.quote(found[0]) + text[len(found[0]):]


def _quoted_prefix_hint(script: str, first: str, wd: Path) -> str:
    """For a script whose first word is no file: when a longer part of the unsplit command
    names a file (``my job.py --fast``: a file name with a space), the hint to quote it."""
    found = _spaced_prefix(script, first, wd)
    if found is not None:
        prefix, target = found
        if target.is_file():
            quoted = shlex.quote(prefix) + script.lstrip()[len(prefix):]
            return (f"quote the file name, which has a space: write \"script\": "
                    f"{shown_json(quoted)} (the command is split into words like a shell "
                    "command)")
        if target.is_dir():
            inside = shlex.quote(f"{prefix.rstrip('/')}/train.py")
            return (f"{prefix!r} is a folder, and the script must be a file: name the file "
                    f"inside it, quoted since the folder's name has a space (e.g. "
                    f"\"script\": {shown_json(inside)})")
    return ""


#: How many bytes of a script are read to find its ``#!`` line (Linux reads 256).
_SHEBANG_BYTES = 1024


def _interpreter_problems(script: str, path: Path, wd: Path, wrapped: bool) -> list[Problem]:
    """Check that a script run as a program can start: its ``#!`` line names an interpreter
    that exists, or it is a binary. Only the interpreter's own path is checked (with
    ``#!/usr/bin/env NAME``, that ``env`` exists, not where NAME is found).

    Args:
        script: the ``script`` value (for the problems).
        path: the script file, which exists.
        wd: the working directory (the jobs' current directory).
        wrapped: the job runs under ``/bin/sh`` (a prescript or postscript is set), which runs
            a text file without a ``#!`` line as a shell script.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(_SHEBANG_BYTES)
    except OSError as err:
        return [Problem("script", "the script cannot be read", script,
                        f"check its permissions ({err.strerror})")]
    quoted = shlex.quote(str(path))
    if not head.startswith(b"#!"):
        if wrapped or head.startswith(b"\x7fELF") or b"\0" in head:
            return []  # a binary (or run by sh): nothing to check
        if path.suffix == ".py":
            hint = (f"add the first line #!/usr/bin/env python3 to {path}, or make it "
                    f"non-executable (chmod -x {quoted}) to run it under the Python that runs "
                    "Auptimizer")
        else:
            hint = (f"add a first line that names its interpreter to {path}, e.g. #!/bin/sh "
                    "or #!/usr/bin/env bash")
        return [Problem("script", "the script has no #! line naming its interpreter, so it "
                        "cannot be started (every job would fail with 'Exec format error')",
                        script, hint)]
    line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace")
    if line.endswith("\r"):
        return [Problem("script", "the script's #! line ends with a carriage return (Windows "
                        "line endings), so its interpreter cannot be found", script,
                        f"convert {path} to Unix line endings, e.g. dos2unix {quoted}")]
    words = line.split()
    if not words:
        return [Problem("script", "the script's #! line names no interpreter", script,
                        f"name the interpreter on the first line of {path}, e.g. #!/bin/sh")]
    interp = words[0]
    where = (wd / interp).resolve()
    if where.is_file() and os.access(where, os.X_OK):
        return []
    name = Path(interp).name
    found = shutil.which(name)
    if found:
        fix = (f"change the first line of {path} to #!/usr/bin/env {name} (or #!{found}, "
               "where it is installed here)")
    else:
        fix = (f"change the first line of {path} to name an interpreter installed on this "
               "machine, e.g. #!/bin/sh or #!/usr/bin/env bash")
    what = "does not exist" if not where.exists() else "is not an executable file"
    return [Problem("script", f"the interpreter {interp} named by the script's #! line {what}, "
                    "so every job would fail to start", script, fix)]


def _check_files(data: dict[str, Any], base_dir: Path, run_here: bool = False) -> list[Problem]:
    """Check the working directory and the script of local resources: both exist, and the
    script is a file that can run (executable, or a ``.py`` run under Python).

    Args:
        data: the JSON object of experiment.json.
        base_dir: folder relative paths resolve against.
        run_here: the jobs run on this machine (cpu, gpu): also check that a script run as a
            program can start (its ``#!`` interpreter exists, or it is a binary).
    """
    wd_text, script = data.get("workingdir", "./"), data.get("script")
    if not isinstance(wd_text, str) or "\x00" in wd_text:
        return []  # reported by the model
    if isinstance(script, str) and ("\x00" in script or not script.strip()):
        script = None
    wd = (base_dir / Path(wd_text).expanduser()).resolve()
    if wd.exists() and not wd.is_dir():
        return [Problem("workingdir", "the working directory is not a directory (it is a file)",
                        wd_text, f"give the folder the jobs run in, e.g. {str(wd.parent)!r}")]
    if not wd.is_dir():
        return [Problem("workingdir", "the working directory does not exist", wd_text,
                        f"create {wd} or fix the path")]
    if not isinstance(script, str) or not script.strip():
        return []
    try:
        words = shlex.split(script)
        first = words[0]
    except (ValueError, IndexError):
        return [Problem("script", "cannot split the script command", script,
                        "check the quotes")]
    path = (wd / Path(first).expanduser()).resolve()
    if path.is_dir():
        return [Problem("script", "the script is a directory, not a file", script,
                        f"name the script file inside {path}")]
    if not path.is_file():
        quote = _quoted_prefix_hint(script, first, wd)
        if quote:
            return [Problem("script", "the script does not exist", script,
                            f"no file at {path}; {quote}")]
        if len(words) > 1 and "/" not in first and shutil.which(first):
            # "python train.py": the first word is a program, not the script
            rest = shown_json(shlex.join(words[1:]))
            return [Problem("script", f"the script must be the file to run, not the program "
                            f"{first!r} that would run it", script,
                            f"write \"script\": {rest} (a .py file runs under Auptimizer's "
                            "Python; any other script runs by its #! line once it is "
                            "executable)")]
        split = ""
        if len(words) > 1 and not words[1].startswith("-"):
            # "nonexist file.py": a name with a space that does not exist either; say how the
            # command was read (trial 73: only "no file at .../nonexist")
            split = (f" (the command is split into words like a shell command, so the script "
                     f"is its first word {first!r}; no file {script.strip()!r} exists either, "
                     f"and a name with a space is written quoted: "
                     f"{shown_json(shlex.quote(script.strip()))})")
        return [Problem("script", "the script does not exist", script,
                        f"no file at {path}; paths are relative to workingdir{split}")]
    executable = os.access(path, os.X_OK)
    if path.suffix != ".py" and not executable:
        return [Problem("script", "the script is not executable (only a .py script runs "
                        "under Python without the executable bit)", script,
                        f"chmod +x {shlex.quote(str(path))}")]
    if run_here and executable:  # run as a program (see ExperimentConfig.job_command)
        rt = data.get("runtime_args")
        wrapped = isinstance(rt, dict) and any(rt.get(k) for k in ("prescript", "postscript"))
        return _interpreter_problems(script, path, wd, wrapped)
    return []


def _option_of_another_proposer(key: str, proposer: str | None) -> str:
    """`` (an option of proposer 'hyperband', not of 'bohb')`` when ``key`` is an option of
    another registered proposer (hyperband's ``max_iter`` given to bohb...), else ``""``."""
    if proposer is None:
        return ""
    from aup.proposers import registry

    owners = []
    for name in registry.names():
        if name == proposer:
            continue
        try:
            fields = registry.get(name).Options.model_fields
        except ImportError:  # its optional package is not installed
            continue
        if key in fields:
            owners.append(name)
    if not owners:
        return ""
    which = "proposer" if len(owners) == 1 else "proposers"
    doc = ("docs/multifidelity.md" if set(owners) <= {"hyperband", "bohb"}
           else "docs/proposers.md")  # where those options are listed
    return (f" (an option of {which} {', '.join(repr(o) for o in owners)}, not of "
            f"'{proposer}'; see {doc})")


#: Ray Tune's and Optuna's early-stopping scheduler options, given to a proposer without a
#: schedule (before: min_resource got "did you mean 'resource'?").
_FOREIGN_SCHEDULER_KEYS = dict.fromkeys(
    ("min_resource", "max_resource", "grace_period", "max_t", "reduction_factor",
     "time_attr", "brackets"),
    "a Ray Tune / Optuna scheduler option: budgets come from the proposers 'hyperband' and "
    "'bohb' (docs/multifidelity.md), early stopping from resource_args.early_stop "
    "(docs/lifecycle.md)")

#: Other tools' names for the direction (Ray Tune's "mode", Optuna's "direction").
_DIRECTION_KEYS = ("mode", "direction", "metric_mode")
#: Other tools' names for the search space (Auptimizer's is ``parameter_config``).
_SPACE_KEYS = {"search_space": "NNI's and Ray Tune's", "param_space": "Ray Tune's",
               "space": "hyperopt's", "param_distributions": "scikit-learn's",
               "parameters": "Weights & Biases'", "params": "a common"}
#: Other tools' names for the number of jobs (Auptimizer's is ``n_samples``).
_JOB_COUNT_KEYS = {"n_trials": "Optuna's", "num_samples": "Ray Tune's",
                   "max_trials": "KerasTuner's and NNI's", "max_evals": "hyperopt fmin's",
                   "n_iter": "scikit-learn's RandomizedSearchCV's"}


#: Other tools' words for a log-uniform scale (not "logit", "lognormal").
_LOG_SCALE_WORD = re.compile(r"log|log[-_ ]?uniform|reciprocal|log10|log2")
#: Other tools' names for the search algorithm (Auptimizer's is ``proposer``).
_PROPOSER_KEYS = {"sampler": "Optuna's", "search_alg": "Ray Tune's", "algorithm": "a common",
                  "algo": "hyperopt fmin's", "tuner": "NNI's and KerasTuner's",
                  "optimizer": "a common"}
#: Of those, the names that may mean something else (a model's optimizer, "adam"): an error
#: only when the value names a search algorithm (``"optimizer": "tpe"``).
_AMBIGUOUS_PROPOSER_KEYS = frozenset({"optimizer", "algorithm", "tuner"})
#: What other tools' algorithm names are here (the value of such a key, or of ``proposer``).
PROPOSER_ALIASES = {"tpe": "hyperopt", "tpesampler": "hyperopt", "hyperopt": "hyperopt",
                    "hyperoptsearch": "hyperopt", "gp": "spearmint", "gpsampler": "spearmint",
                    "bayesian": "spearmint", "bayesopt": "spearmint", "bo": "spearmint",
                    "gpei": "spearmint", "random": "random", "randomsampler": "random",
                    "grid": "sequence", "gridsampler": "sequence", "gridsearch": "sequence",
                    "hyperband": "hyperband", "asha": "hyperband", "bohb": "bohb",
                    "tunebohb": "bohb"}
#: Other tools' names for the seed (Auptimizer's is ``random_seed``).
_SEED_KEYS = ("seed", "random_state", "rng_seed")
#: Other tools' names for the number of jobs at once (Auptimizer's is ``n_parallel``).
_PARALLEL_KEYS = ("n_jobs", "max_concurrent_trials", "max_concurrent", "n_workers",
                  "concurrency", "parallel", "num_workers")
#: Other tools' names for early stopping or a multi-fidelity scheduler.
_PRUNER_KEYS = {"pruner": "Optuna's", "scheduler": "Ray Tune's", "assessor": "NNI's"}


#: Hints for other tools' top-level keys, where only warned about (the real key is given too).
_FOREIGN_TOP_KEYS = {
    **_FOREIGN_SCHEDULER_KEYS,
    **{k: f"{who} name for the search algorithm, which is \"proposer\" here"
       for k, who in _PROPOSER_KEYS.items()},
    **dict.fromkeys(_SEED_KEYS, "the seed is \"random_seed\" here"),
    **dict.fromkeys(_PARALLEL_KEYS, "the jobs at once are \"n_parallel\" here"),
}


def proposer_alias(value: Any) -> str | None:
    """The proposer another tool's name of one of our algorithms stands for (Optuna's
    ``TPESampler``: ``hyperopt``; Ray Tune's ``asha``: ``hyperband``), else None."""
    if not isinstance(value, str):
        return None
    return PROPOSER_ALIASES.get(re.sub(r"[^a-z]", "", value.lower()))


def _misplaced_block_key(key: str) -> str | None:
    """The block (``resource_args``, ``job_failure``, ``runtime_args``) whose option ``key``
    is, when given at the top level; None when it is none of theirs."""
    for block, model in (("resource_args", ResourceArgs), *_NESTED_BLOCKS.items()):
        if key in model.model_fields:
            return block
    return None


def _counts_n_samples(proposer_cls: Any) -> bool:
    """True when the proposer runs ``n_samples`` jobs (not a grid or a schedule of its own)."""
    from aup.proposers.base import Proposer

    return getattr(proposer_cls, "total", None) is Proposer.total


def _costly_unknown_key(key: str, data: dict[str, Any], proposer_cls: Any,
                        proposer: str | None) -> Problem | None:
    """A problem for an unknown top-level key whose being ignored would cost a night's run,
    else None (the key is only warned about).

    These are: another tool's name for the direction while ``target`` is not set (the run
    would maximize a loss); another tool's name for the number of jobs while ``n_samples`` is
    not set, for a proposer that runs ``n_samples`` jobs (the run would make 10); and, for a proposer with a schedule (hyperband, bohb), another
    proposer's or tool's name for a schedule option, or a near miss of one (the run would
    use the default schedule: with bohb's default min_budget, 1,516 jobs instead of 18).
    """
    value = data[key]
    if key in _DIRECTION_KEYS and "target" not in data:
        want = ("min" if isinstance(value, str) and value.strip().lower().startswith("min")
                else "max" if isinstance(value, str) and value.strip().lower().startswith("max")
                else "min or max")
        return Problem(key, f"'{key}' is not an Auptimizer key: without \"target\" the run "
                       "would maximize (the default)", value,
                       f'write "target": "{want}" instead of "{key}"')
    if (key in _JOB_COUNT_KEYS and "n_samples" not in data and proposer_cls is not None
            and _counts_n_samples(proposer_cls)):
        return Problem(key, f"'{key}' is {_JOB_COUNT_KEYS[key]} name for the number of jobs, "
                       "not an Auptimizer key: the run would make the default 10 jobs", value,
                       f'write "n_samples": {shown_json(value)} instead of "{key}"')
    if (key in _PROPOSER_KEYS and "proposer" not in data
            and (key not in _AMBIGUOUS_PROPOSER_KEYS or proposer_alias(value) is not None)):
        alias = proposer_alias(value)
        return Problem(key, f"'{key}' is {_PROPOSER_KEYS[key]} name for the search algorithm, "
                       "not an Auptimizer key: the run would use random search (the default)",
                       value, f'write "proposer": "{alias}" instead of "{key}"' if alias else
                       f'write "proposer": one of random, sequence, hyperopt (TPE), spearmint '
                       f'(GP), hyperband, bohb, instead of "{key}"')
    if key in _SEED_KEYS and "random_seed" not in data and proposer != "sequence":
        seed = (shown_json(value) if isinstance(value, int) and not isinstance(value, bool)
                and value >= 0 else "0 (any whole number >= 0)")
        return Problem(key, f"'{key}' is not an Auptimizer key: the run would use seed 0 (the "
                       "default), so runs meant to differ by seed would be identical", value,
                       f'write "random_seed": {seed} instead of "{key}"')
    if key in _PARALLEL_KEYS and "n_parallel" not in data and value not in (None, False):
        n = (shown_json(value) if isinstance(value, int) and not isinstance(value, bool)
             and value >= 1 else f"{os.cpu_count() or 2} (the jobs at once, >= 1; this machine "
             "has that many CPUs)")
        return Problem(key, f"'{key}' is not an Auptimizer key: the run would run one job at a "
                       "time (the default)", value,
                       f'write "n_parallel": {n} instead of "{key}" (a setting of your script '
                       'goes in parameter_config, as a one-value choice)')
    if key in _PRUNER_KEYS and value not in (None, False, "", {}, []):
        return Problem(key, f"'{key}' is {_PRUNER_KEYS[key]} early-stopping key, not an "
                       "Auptimizer key: no job would be stopped early", value,
                       "early stopping (median, ASHA-like truncation...) is "
                       "resource_args.early_stop (docs/lifecycle.md); Hyperband/ASHA-style "
                       "budgets are the proposers hyperband and bohb (docs/multifidelity.md)")
    block = _misplaced_block_key(key)
    if block is not None and not (isinstance(data.get(block), dict) and key in data[block]):
        return Problem(key, f"'{key}' is an option of \"{block}\", not a top-level key: the "
                       "run would ignore it", value,
                       f'move it into "{block}": {{"{key}": {shown_json(value)}}}')
    if proposer_cls is None or not proposer_cls.schedule_options:
        return None
    foreign = proposer_cls.foreign_schedule_keys.get(key)
    if foreign is not None:
        if foreign[0] in data:  # given under its own name too: only a leftover
            return None
        return Problem(key, f"'{key}' is not an option of proposer '{proposer}': the run would "
                       "use its default schedule", value, foreign[1])
    close = closest_key(key, proposer_cls.schedule_options)
    if close is not None and close not in data:
        return Problem(key, f"unknown key '{key}': the run would use the default {close} "
                       f"({proposer_cls.Options.model_fields[close].default})", value,
                       f"did you mean '{close}'?")
    return None


def _nested_key_warnings(data: dict[str, Any]) -> list[str]:
    """Warnings for unknown keys inside ``job_failure`` and ``runtime_args``."""
    out = []
    for block, model in _NESTED_BLOCKS.items():
        value = data.get(block)
        if isinstance(value, dict):
            out.extend(unknown_key_warning(f"{block}.{k}", k, model.model_fields)
                       for k in value if k not in model.model_fields)
    return out


#: ``source`` as a command (at the start, or after ``;``, ``&``, ``|``, a newline or ``(``).
_SOURCE_COMMAND = re.compile(r"(?:^|[;&|\n(])\s*source\s")


def _bash_only_warnings(data: dict[str, Any]) -> list[str]:
    """Warnings for a ``prescript``/``postscript`` that calls ``source``: the job's wrapper
    runs under ``/bin/sh``, which on Debian and Ubuntu (dash) has no ``source``; the line
    fails ("source: not found"), the job runs without it (a virtualenv not activated) and
    may still succeed, so the mistake goes unseen."""
    rt = data.get("runtime_args")
    if not isinstance(rt, dict):
        return []
    return [f"runtime_args.{key} calls 'source', which /bin/sh (dash on Debian and Ubuntu) does "
            f"not have: the line fails and the job runs without it. Fix: write '.' instead "
            f"(e.g. \". venv/bin/activate\")"
            for key in ("prescript", "postscript")
            if isinstance(rt.get(key), str) and _SOURCE_COMMAND.search(rt[key])]


def _depth(value: Any, limit: int = MAX_DEPTH + 1) -> int:
    """Nesting depth of a JSON value (lists and objects), counted up to ``limit``."""
    depth, level = 0, [value]
    while level and depth < limit:
        nxt: list[Any] = []
        for v in level:
            if isinstance(v, dict):
                nxt.extend(v.values())
            elif isinstance(v, list):
                nxt.extend(v)
        if not nxt:
            break
        depth, level = depth + 1, nxt
    return depth


def _grid_key_warnings(data: dict[str, Any], proposer: str) -> list[str]:
    """Warnings for ``interval``/``n`` given to a proposer that does not use a grid."""
    pc = data.get("parameter_config")
    engine = data.get("engine")
    grid = proposer == "sequence" or (proposer == "hyperband" and isinstance(engine, str)
                                      and engine.strip().lower() == "sequence")
    if not isinstance(pc, list):
        return []
    out = []
    for i, entry in enumerate(pc):
        if not isinstance(entry, dict):
            continue
        for k in ("interval", "n"):
            if k in entry and grid and entry.get("type") == "choice":
                out.append(f"parameter_config[{i}].{k} is ignored: the grid of a choice "
                           "parameter is every value of its range")
            elif k in entry and not grid:
                out.append(f"parameter_config[{i}].{k} is ignored by proposer '{proposer}' "
                           "(only the sequence proposer and hyperband with \"engine\": "
                           "\"sequence\" use a grid)")
    return out


def parse_config(data: Any, base_dir: Path | str = ".", source: Path | str | None = None,
                 *, check_files: bool = True) -> ExperimentConfig:
    """Validate an experiment configuration given as a dict.

    Args:
        data: the JSON object of experiment.json.
        base_dir: folder relative paths resolve against.
        source: the file the data came from (for messages and the default name).
        check_files: check that the working directory and the script exist (local resources).

    Returns:
        The validated configuration, with proposer and resource options validated too.

    Raises:
        ConfigError: listing every problem found (each once, each with a hint).
    """
    from aup.proposers import registry as proposer_registry
    from aup.resources import registry as resource_registry

    src = str(source) if source is not None else None
    if not isinstance(data, dict):
        raise ConfigError([Problem("", "the experiment configuration must be a JSON object",
                                   type(data).__name__, 'wrap the keys in { ... }')], src)
    if _depth(data) > MAX_DEPTH:
        raise ConfigError([Problem("", f"values are nested more than {MAX_DEPTH} levels deep",
                                   "(nested lists or objects)",
                                   "flatten the values (a choice value can be a string)")], src)
    problems: list[Problem] = []
    warnings: list[str] = []
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as err:
        problems.extend(_problems_from_validation(err))
        cfg = None

    # Proposer and resource names (a non-string is reported by ExperimentConfig), their
    # optional packages, and their own options.
    raw_proposer, raw_resource = data.get("proposer", "random"), data.get("resource", "cpu")
    proposer_name, proposer_cls = _lookup("proposer", raw_proposer, proposer_registry, problems)
    resource_name, resource_cls = _lookup("resource", raw_resource, resource_registry, problems)

    proposer_options = resource_options = None
    known_top = set(ExperimentConfig.model_fields)
    if proposer_cls is not None:
        opts_cls = proposer_cls.Options
        known_top |= set(opts_cls.model_fields)
        try:
            proposer_options = opts_cls.model_validate(
                {k: v for k, v in data.items() if k in opts_cls.model_fields}, strict=True)
        except ValidationError as err:
            problems.extend(_problems_from_validation(err))
    ra = data.get("resource_args") if isinstance(data.get("resource_args"), dict) else {}
    if resource_cls is not None:
        ropts_cls = resource_cls.Options
        known_ra = set(ResourceArgs.model_fields) | set(ropts_cls.model_fields)
        try:
            resource_options = ropts_cls.model_validate(
                {k: v for k, v in ra.items() if k in ropts_cls.model_fields}, strict=True)
        except ValidationError as err:
            problems.extend(_problems_from_validation(err, "resource_args"))
        warnings.extend(unknown_key_warning(f"resource_args.{k}", k, known_ra,
                                            f" by resource '{resource_name}'",
                                            _ENV_INI_MAPPINGS)
                        for k in ra if k not in known_ra)

    for k in data:
        if k in known_top:
            continue
        problem = _costly_unknown_key(k, data, proposer_cls, proposer_name)
        if problem is not None:
            problems.append(problem)
        else:
            warnings.append(unknown_key_warning(k, k, known_top, _option_of_another_proposer(
                k, proposer_name), foreign=_FOREIGN_TOP_KEYS))
    alias = next((k for k in _SPACE_KEYS if k in data), None)
    if alias is not None and "parameter_config" not in data:
        # the search space under another tool's name: say so where the missing key is named
        problems = [Problem(p.path, p.message, p.value,
                            f'rename "{alias}" ({_SPACE_KEYS[alias]} name) to '
                            '"parameter_config", a list of {"name", "range", "type"} objects')
                    if p.path == "parameter_config" and p.value is MISSING else p
                    for p in problems]
    warnings.extend(_nested_key_warnings(data))
    warnings.extend(_bash_only_warnings(data))
    if proposer_cls is not None and proposer_name is not None:
        warnings.extend(_grid_key_warnings(data, proposer_name))

    # Parameters, one by one so that every entry's problems are reported.
    space = None
    params: list[Param] = []
    pc = data.get("parameter_config")
    if isinstance(pc, list):
        seen: set[str] = set()
        for i, entry in enumerate(pc):
            path = f"parameter_config[{i}]"
            if isinstance(entry, dict):
                logged = next((k for k in ("scale", "log_scale", "distribution", "prior")
                               if k in entry and "log" not in entry
                               and entry.get("type") != "choice"
                               and (entry[k] is True or _LOG_SCALE_WORD.fullmatch(
                                   str(entry[k]).strip().lower()))), None)
                if logged is not None:  # ignored, it would sample a log range linearly
                    problems.append(Problem(f"{path}.{logged}", f"'{logged}' is not a key of a "
                                            "parameter: the range would be sampled linearly",
                                            entry[logged], f'write "log": true instead of '
                                            f'"{logged}"'))
                warnings.extend(unknown_key_warning(f"{path}.{k}", k, _KNOWN_PARAM_KEYS,
                                                    foreign=FOREIGN_PARAM_KEYS)
                                for k in entry if k not in _KNOWN_PARAM_KEYS and k != logged)
            try:
                spec = ParameterSpec.model_validate(entry)
            except ValidationError as err:
                problems.extend(_problems_from_validation(err, path))
                continue
            if spec.name in seen:
                problems.append(Problem(path + ".name", "duplicate parameter name", spec.name,
                                        "give every parameter its own name"))
                continue
            seen.add(spec.name)
            if spec.name in RESERVED_JOB_KEYS:
                problems.append(Problem(path + ".name", "this name is reserved for the job "
                                        "protocol", spec.name, "rename the parameter"))
            p = _build_param(spec, path, problems)
            if p is not None:
                params.append(p)
        if params and len(params) == len(pc):
            space = SearchSpace(tuple(params))
            if all(p.is_constant for p in params):
                warnings.append("every parameter of parameter_config is a constant, so every "
                                "job runs the same configuration; give one a range to search")

    # Early stopping and multiple results.
    if check_files and resource_cls is not None and getattr(resource_cls, "local_files", True):
        from aup.resources.local import CPUResourceManager

        # cpu and gpu jobs run here; ray's may run on other machines, passive's where the user
        # likes: only the former get the interpreter of the script checked.
        problems.extend(_check_files(data, Path(base_dir),
                                     run_here=issubclass(resource_cls, CPUResourceManager)))
    # Checked also when other keys are wrong (then from the raw value; a non-object is
    # reported by ExperimentConfig): every problem at once, not a second batch after the first
    # is fixed (trial 55).
    early_stop = (cfg.resource_args.early_stop if cfg is not None
                  else ra.get("early_stop") if isinstance(ra.get("early_stop"), dict) else None)
    if early_stop is not None:
        from aup.early_stop import early_stop_warnings, validate_early_stop

        problems.extend(validate_early_stop(early_stop))
        warnings.extend(early_stop_warnings(early_stop))
        if (data.get("resource_args") or {}).get("track_intermediate_results") is False:
            warnings.append("resource_args.track_intermediate_results is false, but early "
                            "stopping needs the intermediate results: they are recorded")

    # A proposer may refuse spaces it cannot handle, at load (also when other keys are wrong).
    if proposer_cls is not None and space is not None and proposer_options is not None:
        problems.extend(proposer_cls.check_space(space, proposer_options))
        warnings.extend(proposer_cls.option_warnings(proposer_options, set(data)))
        from aup.proposers.warm_start import check_points

        problems.extend(check_points(proposer_options.points_to_evaluate, space,
                                     proposer_options.n_samples,
                                     proposer_cls.accepts_points, proposer_name))
    if cfg is not None:
        cfg._source = Path(source).resolve() if source is not None else None
        cfg._base_dir = Path(base_dir).resolve()
        cfg._raw = dict(data)
        cfg._space = space
        cfg._proposer_options = proposer_options
        cfg._resource_options = resource_options
        if resource_cls is not None and resource_options is not None:
            problems.extend(resource_cls.check_config(cfg))

    if problems:
        # A proposer's own options are documented with the proposer, not in experiment.md.
        doc = ("docs/multifidelity.md" if proposer_name in ("hyperband", "bohb")
               else "docs/proposers.md")
        docs = ({k: doc for k in proposer_cls.Options.model_fields
                 if k not in ExperimentConfig.model_fields} if proposer_cls is not None else {})
        # A resource's own keys (gpus, nodes, kill_grace...) are documented in resources.md.
        if resource_cls is not None:
            docs.update({f"resource_args.{k}": "docs/resources.md"
                         for k in resource_cls.Options.model_fields
                         if k not in ResourceArgs.model_fields})
        raise ConfigError(finalize(problems, docs), src, [_visible(w) for w in warnings])
    assert cfg is not None
    cfg._warnings = [_visible(w) for w in warnings]
    return cfg


def _visible(text: str) -> str:
    """``text`` with control and invisible characters written as ``\\uXXXX``: a warning quotes
    keys and values from experiment.json, and an escape sequence there (``\\u001b[2J``) would
    act on the terminal (errors show values as JSON already)."""
    import unicodedata

    if text.isprintable():
        return text
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cc", "Cf") else c
                   for c in text)


def _json_path_problems(data: Any, duplicated: dict[int, list[str]], path: str = ""
                        ) -> list[Problem]:
    """Problems for the keys given twice, found by walking ``data`` (objects by identity)."""
    out: list[Problem] = []
    if isinstance(data, dict):
        for k in duplicated.get(id(data), []):
            key_path = f"{path}.{k}" if path else k
            out.append(Problem(key_path, "this key is given more than once (JSON would keep only "
                               "the last value)", data[k], f"keep one '{k}' and delete the others"))
        for k, v in data.items():
            out.extend(_json_path_problems(v, duplicated, f"{path}.{k}" if path else k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.extend(_json_path_problems(v, duplicated, f"{path}[{i}]"))
    return out


def read_json(path: Path) -> tuple[Any, list[Problem]]:
    """Read a JSON file (UTF-8, with or without a byte order mark).

    Returns:
        The data, and one problem per key given twice in the same object.

    Raises:
        ConfigError: the file cannot be read, is not UTF-8 or is not valid JSON.
    """
    duplicated: dict[int, list[str]] = {}
    keep: list[dict[str, Any]] = []  # keeps objects alive, so that their ids stay unique

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        twice: list[str] = []
        for k, v in pairs:
            if k in obj and k not in twice:
                twice.append(k)
            obj[k] = v
        if twice:
            duplicated[id(obj)] = twice
            keep.append(obj)
        return obj

    try:
        text = path.read_text(encoding="utf-8-sig")
        data = json.loads(text, object_pairs_hook=pairs_hook)
    except UnicodeDecodeError as err:
        raise ConfigError([Problem("", "the file is not UTF-8 text", str(err)[:80],
                                   "save it as UTF-8 JSON")], str(path)) from None
    except RecursionError:
        raise ConfigError([Problem("", "the JSON is nested too deeply to read", str(path),
                                   "flatten the values")], str(path)) from None
    except json.JSONDecodeError as err:
        if path.suffix.lower() in (".py", ".ipynb", ".sh"):  # the script given for the config
            what = f"{err.msg} at line {err.lineno} column {err.colno}"
            fix = (f"this is a {path.suffix} file, not the experiment: give the experiment "
                   "file (experiment.json), which names the script in \"script\"")
        else:
            what, fix = json_syntax_problem(text, err)
        raise ConfigError([Problem("", f"not valid JSON: {what}", MISSING, fix)],
                          str(path)) from None
    except OSError as err:
        raise ConfigError([Problem("", "the experiment file cannot be read", str(path),
                                   f"check its permissions ({err.strerror})")],
                          str(path)) from None
    return data, (_json_path_problems(data, duplicated) if duplicated else [])


def load_config(path: str | Path, *, check_files: bool = True) -> ExperimentConfig:
    """Read and validate an experiment file.

    Args:
        path: the experiment.json file.
        check_files: check that the working directory and the script exist.

    Returns:
        The validated :class:`ExperimentConfig`.

    Raises:
        ConfigError: the file is missing or a directory, is not JSON, has a key twice, or has
            invalid keys (all listed).
    """
    p = Path(path)
    if p.is_dir():
        inside = sorted(p.glob("*.json"))
        hint = (f"give the experiment file itself, e.g. {inside[0]}" if inside
                else "give the path of an experiment.json file, not of a folder")
        raise ConfigError([Problem("", "this is a directory, not an experiment file", str(path),
                                   hint)], str(path))
    if p.exists() and not p.is_file():
        raise ConfigError([Problem("", "this is not a regular file (a pipe or a device)",
                                   str(path), "save the experiment as a .json file and give "
                                   "its path")], str(path))
    if not p.is_file():
        raise ConfigError([Problem("", "the experiment file does not exist", str(path),
                                   "give the path of an experiment.json")], str(path))
    data, duplicates = read_json(p)
    try:
        config = parse_config(data, p.resolve().parent, p, check_files=check_files)
    except ConfigError as err:
        raise ConfigError(finalize([*duplicates, *err.problems]), str(path),
                          err.warnings) from None
    if duplicates:
        raise ConfigError(duplicates, str(path), config.warnings)
    return config
