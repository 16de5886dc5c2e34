"""experiment.json: parsing and validation.

:func:`load_config` reads an experiment file and returns an :class:`ExperimentConfig`, or raises
:class:`~aup.errors.ConfigError` listing every problem at once (key path, bad value, hint).
Nothing is written anywhere while loading.

The keys and defaults follow the seed document (``proposer`` random, ``n_samples`` 10,
``n_parallel`` 1, ``job_retries`` 0, ``ignore_fail`` false, ``target`` max, ``workingdir`` "./").
Additions over Auptimizer 2.0: ``name`` is optional (file stem), ``resource`` defaults to
``cpu``, ``"log": true`` on float/int parameters, ``job_timeout`` (seconds), ``storage``
(SQLAlchemy URL). Unknown keys produce a warning naming the key.

Relative paths (``workingdir``) resolve against the folder of the experiment file; ``script``
resolves against ``workingdir``.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aup.errors import MISSING, ConfigError, Problem
from aup.space import ChoiceParam, FloatParam, IntParam, Param, SearchSpace

RESERVED_JOB_KEYS = ("job_id", "n_iterations", "save_model", "folder_name")


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", validate_default=True)


class ParameterSpec(_Model):
    """One entry of ``parameter_config``."""

    name: str = Field(min_length=1)
    type: Literal["float", "int", "choice"]
    range: list[Any]
    log: bool = False
    interval: float | None = Field(default=None, gt=0)
    n: int | None = Field(default=None, ge=2)


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


class RuntimeArgs(_Model):
    """``runtime_args``: ``env`` (merged into the job's environment), shell ``prescript`` and
    ``postscript`` run before/after the job, ``overwrite`` (re-upload the script, remote only)."""

    env: dict[str, str] = Field(default_factory=dict)
    prescript: str = ""
    postscript: str = ""
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
    n_samples: int = Field(default=10, ge=1)
    random_seed: int = 0
    script: str = Field(min_length=1)
    parameter_config: list[dict[str, Any]] = Field(min_length=1)
    resource: str = "cpu"
    resource_args: ResourceArgs = Field(default_factory=ResourceArgs)
    runtime_args: RuntimeArgs = Field(default_factory=RuntimeArgs)
    job_failure: JobFailure = Field(default_factory=JobFailure)
    n_parallel: int = Field(default=1, ge=1)
    target: Literal["min", "max"] = "max"
    workingdir: str = "./"
    job_timeout: float | None = Field(default=None, gt=0)
    storage: str | None = None
    cwd: str | None = None

    @field_validator("proposer", "resource")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.strip().lower()

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
    def maximize(self) -> bool:
        """True when ``target`` is ``max``."""
        return self.target == "max"

    @property
    def script_argv(self) -> list[str]:
        """The script command split like a shell would (``"train.py --fast"`` -> 2 words)."""
        return shlex.split(self.script)

    def script_path(self) -> Path:
        """Absolute path of the script's first word, relative to the working directory."""
        return (self.workingdir_path / Path(self.script_argv[0]).expanduser()).resolve()

    def job_command(self) -> list[str]:
        """argv prefix that runs the script locally; the job config path is appended later.

        A ``.py`` script that is not executable runs under the current Python interpreter.
        """
        import os

        argv = self.script_argv
        path = self.script_path()
        if path.suffix == ".py" and not os.access(path, os.X_OK):
            return [sys.executable, str(path), *argv[1:]]
        return [str(path), *argv[1:]]

    def to_json_dict(self) -> dict[str, Any]:
        """The configuration with every default filled in, as stored in the database."""
        data = self.model_dump(mode="json", exclude_none=False)
        return data


# -- hints per field, used when pydantic reports a problem ------------------------------------
_HINTS = {
    "script": 'name the training script to run, e.g. "script": "train.py"',
    "parameter_config": 'give a list of {"name", "range", "type"} objects',
    "type": 'use one of "float", "int", "choice"',
    "range": "give [low, high] for float/int or a non-empty list of values for choice",
    "n_parallel": "use an integer >= 1",
    "n_samples": "use an integer >= 1",
    "target": 'use "min" or "max"',
    "job_retries": "use an integer >= 0",
    "ignore_fail": "use true or false",
    "job_timeout": "give a number of seconds > 0, or leave the key out",
    "interval": "use a step > 0",
    "n": "use an integer number of grid points >= 2",
    "name": "use a non-empty string",
}


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _problems_from_validation(err: ValidationError, data: Any) -> list[Problem]:
    problems = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        path = _loc_to_path(loc)
        field = next((p for p in reversed(loc) if isinstance(p, str)), "")
        if e["type"] == "missing":
            msg, value = "required key is missing", MISSING
        else:
            msg, value = e["msg"], e.get("input", MISSING)
            if e["type"] == "literal_error":
                msg = "not an allowed value"
        problems.append(Problem(path, msg, value, _HINTS.get(field, "")))
    return problems


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
        return ChoiceParam(spec.name, tuple(r))
    if len(r) != 2 or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in r):
        problems.append(Problem(path + ".range", f"a {spec.type} range must be [low, high] numbers",
                                r, "write the bounds as two numbers, e.g. [0, 1]"))
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
    if spec.type == "int":
        if any(isinstance(x, float) and not float(x).is_integer() for x in r):
            problems.append(Problem(path + ".range", "int bounds must be whole numbers", r,
                                    "use integers, or type \"float\""))
            return None
        interval = spec.interval
        if interval is not None and not float(interval).is_integer():
            problems.append(Problem(path + ".interval", "an int grid step must be a whole number",
                                    interval, "use an integer step"))
            return None
        return IntParam(spec.name, int(low), int(high), spec.log,
                        int(interval) if interval is not None else None, spec.n)
    return FloatParam(spec.name, float(low), float(high), spec.log, spec.interval, spec.n)


_KNOWN_PARAM_KEYS = set(ParameterSpec.model_fields) | {"size"}


def _check_files(data: dict[str, Any], base_dir: Path) -> list[Problem]:
    """Check that the working directory and the script exist (local resources)."""
    wd_text, script = data.get("workingdir", "./"), data.get("script")
    if not isinstance(wd_text, str):
        return []
    wd = (base_dir / Path(wd_text).expanduser()).resolve()
    if not wd.is_dir():
        return [Problem("workingdir", "the working directory does not exist", wd_text,
                        f"create {wd} or fix the path")]
    if not isinstance(script, str) or not script.strip():
        return []
    try:
        first = shlex.split(script)[0]
    except (ValueError, IndexError):
        return [Problem("script", "cannot split the script command", script,
                        "check the quotes")]
    path = (wd / Path(first).expanduser()).resolve()
    if not path.is_file():
        return [Problem("script", "the script does not exist", script,
                        f"no file at {path}; paths are relative to workingdir")]
    return []


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
        ConfigError: listing every problem found.
    """
    from aup.proposers import registry as proposer_registry
    from aup.resources import registry as resource_registry

    src = str(source) if source is not None else None
    if not isinstance(data, dict):
        raise ConfigError([Problem("", "the experiment configuration must be a JSON object",
                                   type(data).__name__, 'wrap the keys in { ... }')], src)
    problems: list[Problem] = []
    warnings: list[str] = []
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as err:
        problems.extend(_problems_from_validation(err, data))
        cfg = None

    # Proposer and resource names, and their own options.
    proposer_name = str(data.get("proposer", "random")).strip().lower()
    resource_name = str(data.get("resource", "cpu")).strip().lower()
    proposer_cls = resource_cls = None
    try:
        proposer_cls = proposer_registry.get(proposer_name)
    except KeyError:
        problems.append(Problem("proposer", "unknown proposer", data.get("proposer"),
                                "use one of " + ", ".join(proposer_registry.names())))
    try:
        resource_cls = resource_registry.get(resource_name)
    except KeyError:
        problems.append(Problem("resource", "unknown resource", data.get("resource"),
                                "use one of " + ", ".join(resource_registry.names())))

    proposer_options = resource_options = None
    known_top = set(ExperimentConfig.model_fields)
    if proposer_cls is not None:
        opts_cls = proposer_cls.Options
        known_top |= set(opts_cls.model_fields)
        try:
            proposer_options = opts_cls.model_validate(
                {k: v for k, v in data.items() if k in opts_cls.model_fields})
        except ValidationError as err:
            problems.extend(_problems_from_validation(err, data))
    ra = data.get("resource_args") if isinstance(data.get("resource_args"), dict) else {}
    if resource_cls is not None:
        ropts_cls = resource_cls.Options
        known_ra = set(ResourceArgs.model_fields) | set(ropts_cls.model_fields)
        try:
            resource_options = ropts_cls.model_validate(
                {k: v for k, v in ra.items() if k in ropts_cls.model_fields})
        except ValidationError as err:
            for p in _problems_from_validation(err, ra):
                problems.append(Problem("resource_args." + p.path, p.message, p.value, p.hint))
        for k in ra:
            if k not in known_ra:
                warnings.append(f"unknown key resource_args.{k} is ignored by resource "
                                f"'{resource_name}'")

    for k in data:
        if k not in known_top:
            warnings.append(f"unknown key '{k}' is ignored")

    # Parameters, one by one so that every entry's problems are reported.
    space = None
    params: list[Param] = []
    pc = data.get("parameter_config")
    if isinstance(pc, list):
        seen: set[str] = set()
        for i, entry in enumerate(pc):
            path = f"parameter_config[{i}]"
            try:
                spec = ParameterSpec.model_validate(entry)
            except ValidationError as err:
                for p in _problems_from_validation(err, entry):
                    problems.append(Problem(f"{path}.{p.path}" if p.path else path, p.message,
                                            p.value, p.hint))
                continue
            if spec.name in seen:
                problems.append(Problem(path + ".name", "duplicate parameter name", spec.name,
                                        "give every parameter its own name"))
                continue
            seen.add(spec.name)
            if spec.name in RESERVED_JOB_KEYS:
                problems.append(Problem(path + ".name", "this name is reserved for the job "
                                        "protocol", spec.name, "rename the parameter"))
            for k in (spec.model_extra or {}):
                if k not in _KNOWN_PARAM_KEYS:
                    warnings.append(f"unknown key '{path}.{k}' is ignored")
            p = _build_param(spec, path, problems)
            if p is not None:
                params.append(p)
        if params and len(params) == len(pc):
            space = SearchSpace(tuple(params))

    # Early stopping and multiple results.
    if check_files and resource_cls is not None and getattr(resource_cls, "local_files", True):
        problems.extend(_check_files(data, Path(base_dir)))
    if cfg is not None and cfg.resource_args.early_stop is not None:
        from aup.early_stop import validate_early_stop

        problems.extend(validate_early_stop(cfg.resource_args.early_stop))

    if cfg is not None:
        cfg._source = Path(source).resolve() if source is not None else None
        cfg._base_dir = Path(base_dir).resolve()
        cfg._raw = dict(data)
        cfg._space = space
        cfg._proposer_options = proposer_options
        cfg._resource_options = resource_options
        # A proposer may refuse spaces it cannot handle, at load.
        if proposer_cls is not None and space is not None and proposer_options is not None:
            problems.extend(proposer_cls.check_space(space, proposer_options))
        if resource_cls is not None and resource_options is not None:
            problems.extend(resource_cls.check_config(cfg))

    if problems:
        raise ConfigError(problems, src)
    assert cfg is not None
    cfg._warnings = warnings
    return cfg


def load_config(path: str | Path, *, check_files: bool = True) -> ExperimentConfig:
    """Read and validate an experiment file.

    Args:
        path: the experiment.json file.
        check_files: check that the working directory and the script exist.

    Returns:
        The validated :class:`ExperimentConfig`.

    Raises:
        ConfigError: the file is missing, is not JSON, or has invalid keys (all listed).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError([Problem("", "the experiment file does not exist", str(path),
                                   "give the path of an experiment.json")], str(path))
    try:
        text = p.read_text(encoding="utf-8")
        data = json.loads(text)
    except UnicodeDecodeError as err:
        raise ConfigError([Problem("", "the file is not UTF-8 text", str(err)[:80],
                                   "save it as UTF-8 JSON")], str(path)) from None
    except json.JSONDecodeError as err:
        raise ConfigError([Problem("", f"not valid JSON: {err.msg} at line {err.lineno} column "
                                   f"{err.colno}", MISSING, "fix the JSON syntax")],
                          str(path)) from None
    return parse_config(data, p.resolve().parent, p, check_files=check_files)
