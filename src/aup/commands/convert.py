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
copy (2.0 kept it, so both mains ran). Default output: the experiment's ``script``.
"""

from __future__ import annotations

import argparse
import ast
import json
import keyword
import os
from pathlib import Path

from aup.errors import UsageError

HELP = "write a job script that calls FUNCTION of SCRIPT with the experiment's parameters"
BUDGET_KEY = "n_iterations"


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
                     proposer: str | None) -> bool:
    """Check that ``fn`` takes ``params``; returns True when it also takes the budget.

    ``proposer`` is the experiment's proposer name; a function that needs ``n_iterations``
    is refused when that proposer gives no budget (every job would fail with a TypeError).
    """
    a = fn.args
    named = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    accepts_any = a.kwarg is not None
    if a.posonlyargs:
        raise UsageError(f"{source}: {fn.name} has positional-only arguments; the parameters are "
                         "passed by name")
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
    unset = [r for r in required if r not in params and r != BUDGET_KEY]
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
    return BUDGET_KEY in named or accepts_any


def _is_argument_name(name: str) -> bool:
    """True when ``name`` can be a Python argument name (an identifier, not a keyword)."""
    return name.isidentifier() and not keyword.iskeyword(name)


def _gives_budget(proposer: str | None) -> bool:
    """True when ``proposer`` passes a budget to its jobs, or is unknown here (checked by
    ``aup run``)."""
    from aup.proposers import registry

    try:
        return registry.get(proposer or "random").gives_budget
    except (KeyError, ImportError, AttributeError):
        return True


def _disable_main_blocks(text: str, tree: ast.Module) -> tuple[str, int]:
    lines = text.splitlines(keepends=True)
    n = 0
    for node in tree.body:
        if not isinstance(node, ast.If):
            continue
        t = node.test
        is_main = (isinstance(t, ast.Compare) and isinstance(t.left, ast.Name)
                   and t.left.id == "__name__" and len(t.comparators) == 1
                   and isinstance(t.comparators[0], ast.Constant)
                   and t.comparators[0].value == "__main__")
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
             proposer: str | None = "random") -> str:
    """The job script's text; ``proposer`` is the experiment's proposer name.

    Raises:
        UsageError: syntax error, no such function, or a signature that does not fit.
    """
    try:
        tree = ast.parse(source_text, filename=str(source))
    except SyntaxError as err:
        where = f" line {err.lineno}" if err.lineno else ""
        raise UsageError(f"{source}{where}: syntax error ({err.msg}); nothing was "
                         "written") from None
    fn = _function(tree, function, source)
    takes_budget = _check_signature(fn, params, source, proposer)
    body, _ = _disable_main_blocks(source_text, tree)
    if not body.startswith("#!"):
        body = "#!/usr/bin/env python3\n" + body
    if not body.endswith("\n"):
        body += "\n"
    # A dict literal, not keyword arguments: a **kwargs function can take names that are not
    # identifiers ("learning-rate") or are keywords ("lambda").
    args = ", ".join(f"{p!r}: config[{p!r}]" for p in params)
    budget = ""
    if takes_budget:
        budget = (f"    if {BUDGET_KEY!r} in config:\n"
                  f"        kwargs[{BUDGET_KEY!r}] = config[{BUDGET_KEY!r}]\n")
    return body + f'''

# ---- added by `aup convert`: run {function}() as an Auptimizer job ----
def _aup_job_main(argv=None):
    """Load the job config (last argument), call {function}(), report its result."""
    import sys

    from aup import BasicConfig, print_result

    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        sys.exit("usage: " + sys.argv[0] + " JOB_CONFIG.json (Auptimizer passes the job config)")
    config = BasicConfig().load(argv[-1])
    kwargs = {{{args}}}
{budget}    print_result({function}(**kwargs))


if __name__ == "__main__":
    _aup_job_main()
'''


def _experiment_params(path: Path) -> tuple[list[str], dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UsageError(f"cannot read the experiment file {path}: {err.strerror}") from None
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
    if not source.is_file():
        raise UsageError(f"the script {source} does not exist")
    exp_path = Path(args.experiment)
    params, data = _experiment_params(exp_path)
    if args.output:
        out = Path(args.output)
    else:
        script = data.get("script")
        if not isinstance(script, str) or not script.strip():
            raise UsageError(f"{exp_path} has no 'script'; give the output with -o FILE")
        wd = exp_path.resolve().parent / Path(str(data.get("workingdir", "./"))).expanduser()
        out = wd / script.split()[0]
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
    text = generate(source_text, args.function, params, source,
                    proposer if isinstance(proposer, str) else None)
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
    print(f"wrote {out}: calls {args.function}({', '.join(params)}) and reports its result")
    if data.get("script") and Path(str(data["script"]).split()[0]).name != out.name:
        print(f"note: {exp_path} runs {data['script']!r}; set \"script\": \"{out.name}\" to use "
              "the new file")
    return 0
