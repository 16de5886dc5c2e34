"""``aup convert SCRIPT EXPERIMENT_JSON FUNCTION [-o OUT]``: wrap a plain function as a job script.

The generated script is the original source plus a small ``__main__`` block that loads the job
config (the last command-line argument, as the job protocol passes it), calls ``FUNCTION`` with
the experiment's parameters as keyword arguments (and ``n_iterations`` when the function takes
it and the proposer gives a budget), and reports the return value with ``print_result``.

Checked before anything is written (a clear message and exit code 2 otherwise):

* the source parses and defines ``FUNCTION`` at top level (found with :mod:`ast`, the script is
  never run);
* the function accepts every parameter of the experiment and needs no other argument
  (``n_iterations`` only when the experiment's proposer gives a budget: hyperband, bohb);
* the source is UTF-8 text;
* the output is not the source (2.0 overwrote it when ``script`` named the source), not a
  folder, its folder exists (it is never created), and it does not exist yet, unless
  ``--overwrite``.

The output is written to a temporary file and renamed into place, so an error never leaves a
half-written script. The source's own ``if __name__ == "__main__":`` block is disabled in the
copy (2.0 kept it, so both mains ran), and its ``#!`` line becomes ``#!/usr/bin/env python3``
(the scheduler's environment, which has ``aup``). The job protocol keys (``job_id``,
``n_iterations``...) reach the function only as named arguments, as with :func:`aup.aup_args`.
A Ray Tune style function (``def trainable(config)``) gets the parameters in one dict, and
``--metric KEY`` reports ``result[KEY]`` of a function that returns a dict
(:func:`aup.score_of`). Default output: the experiment's ``script``.
"""

from __future__ import annotations

import argparse
import ast
import json
import keyword
import os
import shlex
from pathlib import Path

from aup.client import PROTOCOL_KEYS
from aup.errors import UsageError, shown_json

HELP = "write a job script that calls FUNCTION of SCRIPT with the experiment's parameters"
BUDGET_KEY = "n_iterations"
#: Job protocol keys every job config has (a function may require them).
_ALWAYS_GIVEN = ("job_id", BUDGET_KEY)
_SHEBANG = "#!/usr/bin/env python3"
#: The argument name of a Ray Tune style function that takes every parameter in one dict.
CONFIG_ARG = "config"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``aup convert`` to the CLI."""
    p = subparsers.add_parser("convert", help=HELP, description=HELP)
    p.add_argument("script", help="the Python file that defines the function")
    p.add_argument("experiment", help="the experiment.json whose parameter_config names the "
                   "function's arguments")
    p.add_argument("function", help="name of the function to optimize (its return value is "
                   "the score)")
    p.add_argument("-o", "--output", help="the job script to write (default: the experiment's "
                   "'script')")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output file (never the source)")
    p.add_argument("--metric", help="for a function that returns a dict (Ray Tune's "
                   "'return {\"mean_accuracy\": ...}'): the key of the score; the "
                   "experiment's multi_res_labels name the values reported after it")
    p.set_defaults(func=run)
    return p


def _function(tree: ast.Module, name: str, source: Path) -> ast.FunctionDef:
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    if name not in funcs:
        known = ", ".join(sorted(funcs)) or "none"
        raise UsageError(f"{source} has no top-level function {name!r} (functions defined "
                         f"there: {known}); nothing was written")
    fn = funcs[name]
    if isinstance(fn, ast.AsyncFunctionDef):
        raise UsageError(f"{source}: {name} is 'async def'; give a plain function")
    return fn


def _check_signature(fn: ast.FunctionDef, params: list[str], source: Path,
                     proposer: str | None) -> list[str]:
    """Check that ``fn`` takes ``params``; returns the job protocol keys it names.

    ``proposer`` is the experiment's proposer name; a function that needs ``n_iterations``
    is refused when that proposer gives no budget (every job would fail with a TypeError).
    The protocol keys (``job_id``, ``n_iterations``...) reach the function only as named
    arguments, never through ``**kwargs``: the rule of :func:`aup.aup_args`, so that
    ``def train(**params): model(**params)`` does not get ``n_iterations`` under hyperband.
    """
    a = fn.args
    named = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    accepts_any = a.kwarg is not None
    if a.posonlyargs:
        raise UsageError(f"{source}: {fn.name} has positional-only arguments; the parameters are "
                         "passed by name")
    if takes_config_dict(fn, params):
        params = [CONFIG_ARG]  # Ray Tune's trainable(config): the parameters in one dict
    missing = [p for p in params if p not in named and not accepts_any]
    unnamable = [p for p in missing if not _is_argument_name(p)]
    if unnamable:
        raise UsageError(f"{source}: the parameter name(s) {', '.join(map(repr, unnamable))} "
                         f"cannot be argument names of {fn.name}() (a Python argument name is "
                         "an identifier and not a keyword); fix: give the function **kwargs "
                         "(it receives every parameter by its name), or rename the parameters "
                         "in parameter_config")
    if missing:
        raise UsageError(f"{source}: {fn.name}() has no argument {', '.join(map(repr, missing))}"
                         f" (it takes {', '.join(named) or 'nothing'}); fix: add "
                         f"{', '.join(missing)} to its arguments (or **kwargs), or rename the "
                         "parameters in parameter_config")
    positional = a.posonlyargs + a.args
    n_required = len(positional) - len(a.defaults)
    required = [x.arg for x in positional[:n_required]]
    required += [x.arg for x, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is None]
    unset = [r for r in required if r not in params and r not in _ALWAYS_GIVEN]
    protocol = [r for r in unset if r in PROTOCOL_KEYS]
    if protocol:
        raise UsageError(f"{source}: {fn.name}() needs {', '.join(map(repr, protocol))}, a key "
                         "of the job protocol that only some jobs get (with save_model); fix: "
                         "give it a default value (e.g. None); parameter_config cannot use "
                         "that name")
    if unset:
        raise UsageError(f"{source}: {fn.name}() needs {', '.join(map(repr, unset))}, which the "
                         "experiment does not set; fix: give it a default value or add it to "
                         "parameter_config")
    if BUDGET_KEY in required and BUDGET_KEY not in params and not _gives_budget(proposer):
        raise UsageError(f"{source}: {fn.name}() needs {BUDGET_KEY!r} (the budget), but the "
                         f"experiment's proposer {proposer!r} gives no budget, so every job "
                         f"would fail; fix: give {BUDGET_KEY} a default value (e.g. "
                         f"{BUDGET_KEY}=100) or use a multi-fidelity proposer (hyperband, "
                         "bohb)")
    return [k for k in PROTOCOL_KEYS if k in named and k not in params]


def takes_config_dict(fn: ast.FunctionDef, params: list[str]) -> bool:
    """True for a Ray Tune style function, ``def trainable(config)``: its first argument is
    named ``config``, no parameter of the experiment has that name, and it names none of them
    (it reads them as ``config["lr"]``)."""
    a = fn.args
    positional = [x.arg for x in a.args]
    named = positional + [x.arg for x in a.kwonlyargs]
    return (bool(positional) and positional[0] == CONFIG_ARG and CONFIG_ARG not in params
            and not any(p in named for p in params))


def _is_argument_name(name: str) -> bool:
    """True when ``name`` can be a Python argument name (an identifier, not a keyword)."""
    return name.isidentifier() and not keyword.iskeyword(name)


def _gives_budget(proposer: str | None, unknown: bool = True) -> bool:
    """True when ``proposer`` passes a budget to its jobs; ``unknown`` for a name not
    registered here (``aup run`` reports it)."""
    from aup.proposers import registry

    try:
        return registry.get(proposer or "random").gives_budget
    except (KeyError, ImportError, AttributeError):
        return unknown


def _plain_name(node: ast.expr) -> str | None:
    """``__name__`` for that name, ``'__main__'`` for that string, else None."""
    if isinstance(node, ast.Name) and node.id == "__name__":
        return "__name__"
    if isinstance(node, ast.Constant) and node.value == "__main__":
        return "'__main__'"
    return None


def _disable_main_blocks(text: str, tree: ast.Module) -> tuple[str, int]:
    lines = text.splitlines(keepends=True)
    n = 0
    for node in tree.body:
        if not isinstance(node, ast.If):
            continue
        t = node.test
        is_main = (isinstance(t, ast.Compare) and len(t.comparators) == 1
                   and isinstance(t.ops[0], ast.Eq)
                   and {_plain_name(t.left), _plain_name(t.comparators[0])}
                   == {"__name__", "'__main__'"})
        if not is_main or t.lineno != t.end_lineno:
            continue
        i = t.lineno - 1
        raw = lines[i].encode()
        was = raw[t.col_offset:t.end_col_offset].decode()
        lines[i] = (raw[:t.col_offset].decode() + "False" + raw[t.end_col_offset:].decode()
                    .rstrip("\n") + f"  # disabled by aup convert (was: {was})\n")
        n += 1
    return "".join(lines), n


def generate(source_text: str, function: str, params: list[str], source: Path,
             proposer: str | None = "random", metric: str | None = None,
             labels: list[str] | None = None) -> str:
    """The job script's text.

    Args:
        proposer: the experiment's proposer name.
        metric: for a function that returns a dict (Ray Tune style), the key of the score.
        labels: the experiment's ``multi_res_labels``: with ``metric``, the keys of the
            values reported after the score.

    Raises:
        UsageError: syntax error, no such function, or a signature that does not fit.
    """
    return _build(source_text, function, params, source, proposer, metric, labels)[0]


def _build(source_text: str, function: str, params: list[str], source: Path,
           proposer: str | None, metric: str | None = None,
           labels: list[str] | None = None) -> tuple[str, list[str]]:
    """:func:`generate`'s text and the job protocol keys the function takes."""
    try:
        tree = ast.parse(source_text, filename=str(source))
    except SyntaxError as err:
        where = f" line {err.lineno}" if err.lineno else ""
        raise UsageError(f"{source}{where}: syntax error ({err.msg}); nothing was "
                         "written") from None
    fn = _function(tree, function, source)
    protocol = _check_signature(fn, params, source, proposer)
    body, _ = _disable_main_blocks(source_text, tree)
    # The job runs under the interpreter of its #! line; the scheduler puts the environment
    # that has aup first on PATH, so "env python3" finds it. A source's own line
    # (#!/usr/bin/python3) would run the system Python, without aup: every job failed.
    # (Nothing may follow it on that line: the kernel passes the rest as one argument.)
    first, newline, rest = body.partition("\n")
    if first.startswith("#!"):
        body = _SHEBANG + newline + rest
    else:
        body = _SHEBANG + "\n" + body
    if not body.endswith("\n"):
        body += "\n"
    # A dict literal, not keyword arguments: a **kwargs function can take names that are not
    # identifiers ("learning-rate") or are keywords ("lambda").
    args = ", ".join(f"{p!r}: _aup_config[{p!r}]" for p in params)
    passed = "".join(f"    if {k!r} in _aup_config:\n"
                     f"        _aup_kwargs[{k!r}] = _aup_config[{k!r}]\n" for k in protocol)
    if takes_config_dict(fn, params):
        call = f"{function}(_aup_params, **_aup_kwargs)"
        prepare = f"    _aup_params = {{{args}}}\n    _aup_kwargs = {{}}\n"
    else:
        call = f"{function}(**_aup_kwargs)"
        prepare = f"    _aup_kwargs = {{{args}}}\n"
    report = (f"_aup.print_result({call})" if metric is None else
              f"_aup.print_result(_aup.score_of({call}, {metric!r}, {list(labels or [])!r}))")
    # Every name here starts with _aup_ so that none hides the user's function (one named
    # print_result or config was shadowed by the block's own names).
    return body + f'''

# ---- added by `aup convert`: run {function}() as an Auptimizer job ----
def _aup_job_main(_aup_argv=None):
    """Load the job config (last argument), call {function}(), report its result."""
    import sys as _aup_sys

    import aup as _aup

    _aup_argv = _aup_sys.argv[1:] if _aup_argv is None else _aup_argv
    if not _aup_argv:
        _aup_sys.exit("usage: " + _aup_sys.argv[0]
                      + " JOB_CONFIG.json (Auptimizer passes the job config)")
    _aup_config = _aup.BasicConfig().load(_aup_argv[-1])
{prepare}{passed}    {report}


if __name__ == "__main__":
    _aup_job_main()
''', protocol


def _experiment_params(path: Path) -> tuple[list[str], dict]:
    from aup.json_syntax import json_syntax_problem

    try:
        text = path.read_text(encoding="utf-8-sig")
        data = json.loads(text)
    except OSError as err:
        raise UsageError(f"cannot read the experiment file {path}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        what, fix = json_syntax_problem(text, err)
        raise UsageError(f"{path} is not valid JSON: {what}; nothing was written. Fix: "
                         f"{fix}") from None
    except ValueError as err:
        raise UsageError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the experiment must be a JSON object")
    pc = data.get("parameter_config")
    if not isinstance(pc, list) or not pc:
        raise UsageError(f"{path}: parameter_config is missing or empty; fix: list the "
                         'parameters, e.g. [{"name": "x", "type": "float", "range": [0, 1]}]')
    names = []
    for i, p in enumerate(pc):
        name = p.get("name") if isinstance(p, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise UsageError(f"{path}: parameter_config[{i}].name must be a non-empty string "
                             f"(the function's argument name), got {name!r}")
        names.append(name)
    return names, data


def run(args: argparse.Namespace) -> int:
    """Entry point of ``aup convert``. Returns the exit code."""
    source = Path(args.script)
    if source.is_dir():
        raise UsageError(f"the script {source} is a folder; nothing was written. Fix: give the "
                         "Python file that defines the function")
    if not source.is_file():
        raise UsageError(f"the script {source} does not exist")
    if source.suffix.lower() == ".ipynb":  # JSON, read as Python: "has no function" (trial 64)
        raise UsageError(f"{source} is a Jupyter notebook, not a Python source; nothing was "
                         "written. Fix: export it first with: jupyter nbconvert --to script "
                         f"{source} (or write the function's cell to a file with %%writefile "
                         "train.py), then convert that .py file")
    exp_path = Path(args.experiment)
    params, data = _experiment_params(exp_path)
    wd = exp_path.resolve().parent / Path(str(data.get("workingdir", "./"))).expanduser()
    if args.output:
        out = Path(args.output)
    else:
        script = data.get("script")
        if not isinstance(script, str) or not script.strip():
            raise UsageError(f"{exp_path} has no 'script'; give the output with -o FILE")
        first = script_file(script)
        if first is None:
            raise UsageError(f"{exp_path}: cannot split \"script\": {shown_json(script)} into "
                             "words (an unclosed quote?); nothing was written. Fix: correct "
                             "its quotes, or give the output with -o FILE")
        out = wd / first
    if out.resolve() == source.resolve():
        raise UsageError(f"the output {out} is the source script itself; refusing to overwrite "
                         "it. Fix: give another file with -o, or change 'script' in "
                         f"{exp_path}")
    if out.is_dir():
        raise UsageError(f"the output {out} is a folder; nothing was written. Fix: give a file "
                         f"name with -o, e.g. {out / 'job.py'}")
    if not out.parent.is_dir():
        raise UsageError(f"the folder {out.parent} of the output {out} does not exist; nothing "
                         "was written. Fix: create it first, or choose another file with -o")
    if out.exists() and not args.overwrite:
        raise UsageError(f"{out} exists; nothing was written. Fix: add --overwrite, or choose "
                         "another file with -o")
    try:
        source_text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(f"{source} is not UTF-8 text (byte {err.object[err.start]:#04x} at "
                         f"offset {err.start}); nothing was written. Fix: give a Python source "
                         "file saved as UTF-8") from None
    except OSError as err:
        raise UsageError(f"cannot read the script {source}: {err.strerror}") from None
    proposer = data.get("proposer", "random")
    from aup.api import result_labels

    labels = result_labels(data) if args.metric else []
    text, protocol = _build(source_text, args.function, params, source,
                            proposer if isinstance(proposer, str) else None, args.metric,
                            labels)
    tmp = out.with_name(f".{out.name}.aup-tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {out}: {err.strerror or err}; nothing was written. Fix: "
                         "check that the folder is writable and has free space, or choose "
                         "another file with -o") from None
    takes_budget = BUDGET_KEY in protocol
    as_dict = takes_config_dict(_function(ast.parse(source_text), args.function, source),
                                params)
    called = ([f"{CONFIG_ARG}={{{', '.join(params)}}}"] if as_dict else list(params)) + (
        [BUDGET_KEY] if takes_budget else [])
    reported = f"its result[{args.metric!r}]" if args.metric else "its result"
    print(f"wrote {out}: calls {args.function}({', '.join(called)}) and reports {reported}")
    for line in _notes(data, exp_path, wd, out, source, source_text, args.function,
                       takes_budget, proposer if isinstance(proposer, str) else None):
        print(f"note: {line}")
    print(f"check the experiment with: aup run --check {exp_path}")
    return 0


def _notes(data: dict, exp_path: Path, wd: Path, out: Path, source: Path, source_text: str,
           function: str, takes_budget: bool, proposer: str | None) -> list[str]:
    """What the user should know after a successful convert (one line each)."""
    notes = []
    first = source_text.partition("\n")[0].strip()
    if first.startswith("#!") and first != _SHEBANG:
        notes.append(f"the source's first line {first} became {_SHEBANG} in {out} (the "
                     "environment aup runs jobs in, which has aup)")
    try:
        script_value = os.path.relpath(out.resolve(), wd.resolve())
    except ValueError:  # another drive (Windows)
        script_value = str(out.resolve())
    script = data.get("script")
    first = script_file(script) if isinstance(script, str) else None
    if first is None or (wd / first).resolve() != out.resolve():
        # the value to write is split like a shell command: a name with a space is quoted
        runs = (f'has "script": {shown_json(script)}' if isinstance(script, str)
                and script.strip() else "names no script")
        notes.append(f"{exp_path} {runs}; set \"script\": "
                     f"{shown_json(shlex.quote(script_value))} to use the new file")
    if not takes_budget and proposer is not None and _gives_budget(proposer, unknown=False):
        notes.append(f"{function}() does not take {BUDGET_KEY}, so every job trains the same "
                     f"whatever its budget and {proposer}'s schedule gains nothing; fix: add "
                     f"an argument {BUDGET_KEY} (epochs, steps...) to {function}()")
    if out.resolve().parent != source.resolve().parent:
        local = _sibling_imports(source_text, source.resolve().parent)
        if local:
            notes.append(f"{source} imports {', '.join(local)} from its own folder, which "
                         f"{out} (in another folder) cannot import; fix: write the job "
                         "script next to the source, or make those modules installable")
    return notes


def script_file(script: str) -> str | None:
    """The file a ``script`` value runs: its first word, split like a shell command line
    (``"'my job.py' --fast"`` runs ``my job.py``); None when it has no word or cannot be
    split (an unclosed quote)."""
    try:
        words = shlex.split(script)
    except ValueError:
        return None
    return words[0] if words else None


def _sibling_imports(source_text: str, folder: Path) -> list[str]:
    """Top-level imports of ``source_text`` that are modules or packages in ``folder``."""
    names = []
    for node in ast.parse(source_text).body:
        if isinstance(node, ast.Import):
            names += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module.split(".")[0])
    return sorted({n for n in names
                   if (folder / f"{n}.py").is_file() or (folder / n / "__init__.py").is_file()})
