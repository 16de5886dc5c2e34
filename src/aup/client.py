"""Job-side helpers for training scripts (standard library only).

This file can be copied alone to a remote machine. It imports nothing outside the standard
library, so ``import aup`` inside a job costs a few milliseconds.

* :func:`print_result` - report a result line (``#Auptimizer:<value>``).
* :class:`BasicConfig` - a dict with attribute access, loaded from the job's config file.
* :func:`aup_args` - decorator: call a function with the job config as keyword arguments.
* :func:`aup_save_model` - register a callback that saves the model in the best-model re-run.
* :func:`aup_flags` - decorator for absl/TensorFlow-style ``FLAGS`` scripts.
"""

from __future__ import annotations

import math
import os
import sys

TYPE_CHECKING = False  # not `from typing import ...`: typing costs ~4 ms at import
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# json, functools, inspect, logging, pickle and shutil are imported where used: `import aup` inside a job must
# stay within a few milliseconds of a bare interpreter start.

__all__ = ["BasicConfig", "aup_args", "aup_flags", "aup_save_model", "print_result"]

MARKER = "#Auptimizer:"


def _warn(message: str) -> None:
    import logging

    logging.getLogger("aup.client").warning(message)


def _number(value: Any) -> str:
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, str | bytes):  # 2.0 printed any str() (trial 56: no fix was given)
        raise TypeError(f"a result must be a number, got {_short(value)} (a string): pass "
                        "float(...) of it, or the number itself (Auptimizer 2.0 printed "
                        "strings as they were, so a typo could become a result)")
    if isinstance(value, bool):
        raise TypeError(f"a result must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"a result must be a number, got {value!r}") from None
    except OverflowError:  # an int beyond the float range (10**400)
        raise ValueError(f"a result must be a finite number, got {_short(value)}, which is too "
                         "large for a float; report a smaller value (e.g. scale or clip it)"
                         ) from None
    return repr(number) if math.isfinite(number) else str(number)


def _short(value: Any) -> str:
    """``repr(value)`` for messages, shortened."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond sys.get_int_max_str_digits()
        return f"{type(value).__name__} with too many digits to show"
    return text if len(text) <= 40 else f"{text[:20]}...{text[-10:]} ({len(text)} characters)"


def score_of(result: Any, metric: str, labels: list[str] | tuple[str, ...] = ()) -> Any:
    """The score of a function's result for :func:`print_result`: ``result[metric]`` for a
    mapping (Ray Tune's ``return {"mean_accuracy": 0.9, "loss": 0.3}``), followed by
    ``result[label]`` for each ``multi_res_labels`` label; a pandas Series (a metrics table's
    last row) is read by label the same way, and a DataFrame by its last row; anything else
    is returned as is.
    ``aup convert --metric KEY`` writes job scripts that call it.

    Raises:
        KeyError: ``metric`` or a label is not a key of the mapping (the message lists the
            keys it has).
    """
    if not _keyed(result):
        return result
    if hasattr(result, "iloc") and hasattr(result, "columns"):
        # a DataFrame of metrics (one row per epoch): its last row, not a whole column
        # (trial 69: print_result then named the row numbers as keys)
        result = result.iloc[-1]
    wanted = [metric, *labels]
    keys = list(result.keys())
    absent = [k for k in wanted if k not in keys]
    if absent:
        raise KeyError(f"the result has no key {', '.join(map(repr, absent))} (its keys: "
                       f"{', '.join(map(repr, keys)) or 'none'}); fix: aup convert --metric "
                       "with one of its keys, or multi_res_labels naming its keys")
    return [result[k] for k in wanted] if labels else result[metric]


def _keyed(value: Any) -> bool:
    """True for values read by key, not position: mappings, and objects with ``keys()`` and
    item access such as a pandas Series or DataFrame."""
    from collections.abc import Mapping

    if isinstance(value, Mapping):
        return True
    return (callable(getattr(value, "keys", None)) and hasattr(value, "__getitem__")
            and not isinstance(value, str | bytes))


def print_result(result: Any, file: Any = None) -> None:
    """Report a result to Auptimizer.

    Writes the line ``#Auptimizer:<v>`` (a number) or ``#Auptimizer:<v0>,<v1>,...`` (a list,
    tuple or 1-D array: the score first, then the ``multi_res_labels`` values) to stderr, and
    flushes. No blank line is written before it; the marker is found even after other text on
    the same line (e.g. an unfinished progress line). Call it once per epoch to report
    intermediate results; the last call is the final result.

    Args:
        result: a number, or a sequence of numbers (numpy/torch scalars and arrays work).
        file: where to write (default ``sys.stderr``).

    Raises:
        TypeError: a value is not a number (a string such as ``"0.5"`` or a bool included).
        ValueError: an empty sequence, or an integer too large for a float (``10**400``).
    """
    if _keyed(result):
        # a pandas Series has tolist() too: its values would be reported by position, the
        # first one as the score (trial 64: a loss maximized as if it were the accuracy)
        keys = ", ".join(map(repr, list(result.keys())[:20])) or "none"
        kind = "dict" if isinstance(result, dict) else type(result).__name__
        raise TypeError(f"a result must be a number, got a {kind} (keys: {keys}); fix: report "
                        "one of its values, e.g. print_result(result[KEY]), or with aup "
                        "convert give --metric KEY")
    if hasattr(result, "tolist") and callable(result.tolist):
        result = result.tolist()
    if isinstance(result, list | tuple):
        if not result:
            raise ValueError("print_result() got an empty sequence: give the score, or "
                             "[score, v1, ...] with one value per multi_res_labels label")
        text = ",".join(_number(v) for v in result)
    else:
        text = _number(result)
    out = file if file is not None else sys.stderr
    out.write(f"{MARKER}{text}\n")
    out.flush()


class BasicConfig(dict):
    """A dict with attribute access (``cfg.lr``), loadable from and savable to JSON or pickle.

    Example::

        cfg = BasicConfig().load(sys.argv[-1])
        train(lr=cfg.lr)
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    @staticmethod
    def _kind(path: str) -> str:
        ext = os.path.splitext(str(path))[1].lower()
        if ext == ".json":
            return "json"
        if ext in (".pkl", ".pickle"):
            return "pkl"
        raise ValueError(f"unsupported config file {path!r}: use a .json or .pkl file")

    def load(self, path: str | os.PathLike) -> BasicConfig:
        """Update this config from a ``.json`` or ``.pkl`` file and return self.

        Raises:
            ValueError: unknown extension, or the file does not hold an object/dict.
            OSError: the file cannot be read.
        """
        kind = self._kind(str(path))
        if kind == "json":
            with open(path, encoding="utf-8") as f:
                import json

                data = json.load(f)
        else:
            import pickle

            with open(path, "rb") as f:
                data = pickle.load(f)
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object / dict, got {type(data).__name__}")
        self.update(data)
        return self

    def save(self, path: str | os.PathLike) -> None:
        """Write this config to a ``.json`` or ``.pkl`` file."""
        kind = self._kind(str(path))
        if kind == "json":
            with open(path, "w", encoding="utf-8") as f:
                import json

                json.dump(dict(self), f, indent=2, default=_json_plain)
        else:
            import pickle

            with open(path, "wb") as f:
                pickle.dump(dict(self), f)

    def to_flags(self, flags: Any) -> Any:
        """Set every attribute of ``flags`` (e.g. absl ``FLAGS``) that this config names."""
        for key, value in self.items():
            if hasattr(flags, key):
                setattr(flags, key, value)
        return flags


class _SaveModelRegistry:
    """Holds the callback registered with :func:`aup_save_model` for one decorated call."""

    def __init__(self) -> None:
        self.callback: tuple[Callable[..., Any], tuple, dict] | None = None


_save_registry = _SaveModelRegistry()


def aup_save_model(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Register ``fn(*args, **kwargs)`` to save the model.

    It is called only in the best-model re-run (``resource_args.save_model``), from inside
    ``aup_models/<folder_name>/`` (so relative paths land there), after the function decorated
    with :func:`aup_args` returns.

    Raises:
        TypeError: ``fn`` is not callable (checked now, not in the re-run).
    """
    if not callable(fn):
        raise TypeError(f"aup_save_model() takes the function that saves the model first, got "
                        f"{_short(fn)} ({type(fn).__name__}); e.g. aup_save_model(model.save, "
                        "'model.pt')")
    _save_registry.callback = (fn, args, kwargs)


def _run_save_callback(config: dict[str, Any]) -> None:
    cb = _save_registry.callback
    _save_registry.callback = None
    if cb is None or config.get("save_model") is not True:
        return
    folder = os.path.join("aup_models", str(config.get("folder_name") or "models"))
    if os.path.isdir(folder):
        import shutil

        shutil.rmtree(folder)
    os.makedirs(folder)
    here = os.getcwd()
    os.chdir(folder)
    try:
        fn, args, kwargs = cb
        fn(*args, **kwargs)
    finally:
        os.chdir(here)


#: Job-config keys the job protocol adds (``tid``: Auptimizer 2.0); :func:`aup_args` passes
#: one only to a function that names it as a parameter.
PROTOCOL_KEYS = ("job_id", "n_iterations", "save_model", "folder_name", "tid")


def _config_path_from_argv(argv: list[str], name: str) -> str:
    """The job config path: the last command-line argument.

    Raises:
        ValueError: there is no argument after the script (it was run by hand without one),
            or the process is a Jupyter/IPython kernel (its last argument is the kernel's
            connection file, which was read as a job config with a warning per key).
    """
    prog = os.path.basename(argv[0]) if argv and argv[0] else ""
    if "ipykernel" in prog or (len(argv) >= 2 and os.path.basename(argv[-1]).startswith(
            "kernel-") and argv[-1].endswith(".json") and "AUP_JOB_ID" not in os.environ):
        raise ValueError(f"{name}() runs in a Jupyter kernel here, whose last command-line "
                         "argument is the kernel's connection file, not a job config. Fix: "
                         f"call {name}('config.json') with a job config file (a JSON object "
                         "of the parameters), or run the script with Auptimizer (aup run)")
    if len(argv) < 2:
        if prog in ("", "-c") or prog.startswith("python"):  # python -c, interactive: no script
            raise ValueError(f"{name}() reads the job config file from the last command-line "
                             f"argument, and there is none here. Fix: call "
                             f"{name}('config.json') with a job config file (a JSON object of "
                             "the parameters), or run the script with Auptimizer (aup run)")
        raise ValueError(f"{name}() reads the job config file from the last command-line "
                         f"argument, and {prog} got none. Auptimizer runs the script as "
                         f"'{prog} <workingdir>/jobs/<job id>.json'; to run it by hand, give a "
                         f"config file: python {prog} config.json (a JSON object of the "
                         "parameters)")
    return argv[-1]


def aup_args(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: call ``func`` with the job config's values as keyword arguments.

    The decorated function takes the config file path (``sys.argv[-1]`` when called without
    arguments), or the config as a dict, and optional keyword overrides; called with keywords
    alone where the command line holds no config file (a notebook), the keywords are the
    config. Parameters of ``func`` without a default must be
    in the config; config keys ``func`` does not take are dropped with a warning, unless it has
    ``**kwargs``, which receives them. The protocol keys (:data:`PROTOCOL_KEYS`: ``job_id``,
    ``n_iterations``...) reach ``func`` only as named parameters; otherwise they are dropped
    silently, ``**kwargs`` or not. The return value goes to :func:`print_result` (a None
    return prints nothing). With ``save_model: true`` in the config, a callback registered
    with :func:`aup_save_model` then runs. Unlike Auptimizer 2.0, no hidden ``init*``
    functions are called.

    Raises:
        TypeError: a required parameter is missing from the config (message names it).
        ValueError: called without a path while the command line has no argument after the
            script (run by hand without a job config file).
    """
    import inspect

    sig = inspect.signature(func)
    takes_var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())

    import functools

    @functools.wraps(func)
    def wrapper(config_path: Any = None, **overrides: Any) -> Any:
        if _keyed(config_path):  # main({"x": 1.0}) in a notebook: no file needed
            path, config = "given as a dict", BasicConfig(dict(config_path))
        else:
            try:
                path = (config_path if config_path is not None
                        else _config_path_from_argv(sys.argv, func.__name__))
            except ValueError:
                if not overrides:
                    raise
                # main(x=1.0, y=2.0) by hand or in a notebook: the keywords are the config
                path = "given as keywords"
                config = BasicConfig()
            else:
                config = BasicConfig().load(path)
        config.update(overrides)
        kwargs: dict[str, Any] = {}
        for name, p in sig.parameters.items():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if name in config:
                kwargs[name] = config[name]
            elif p.default is p.empty:
                raise TypeError(f"{func.__name__}() needs parameter '{name}', which is not in "
                                f"the job config {path}; add it to parameter_config or give it "
                                "a default value")
        for key in config:
            if key not in sig.parameters and key not in PROTOCOL_KEYS:
                if takes_var_kw:
                    kwargs[key] = config[key]
                else:
                    _warn(f"config key '{key}' is not a parameter of {func.__name__}(); "
                          "ignored")
        result = func(**kwargs)
        if result is not None:
            print_result(result)
        _run_save_callback(config)
        return result

    return wrapper


def aup_flags(flags: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator factory for ``main(argv)`` scripts driven by absl/TensorFlow ``FLAGS``.

    The job config (``argv[-1]``) is applied to ``flags`` (fixing Auptimizer 2.0, which never
    applied it), then ``main`` runs and its return value is reported with :func:`print_result`.
    The wrapper returns None: absl's ``app.run`` exits with ``main``'s return value, and a
    score there would end the job with exit code 1 (a failed job).
    """

    def decorate(main: Callable[..., Any]) -> Callable[..., Any]:
        import functools

        @functools.wraps(main)
        def wrapper(argv: list[str] | None = None) -> None:
            args = list(argv) if argv is not None else list(sys.argv)
            BasicConfig().load(_config_path_from_argv(args, main.__name__)).to_flags(flags)
            import inspect

            n_params = len(inspect.signature(main).parameters)
            result = main(args) if n_params else main()
            if result is not None:
                print_result(result)

        return wrapper

    return decorate


def _json_plain(value: Any) -> Any:
    """numpy (and torch) scalars and arrays as plain JSON values, for :meth:`BasicConfig.save`
    (``np.float64(1.0)`` was a TypeError: "Object of type int64 is not JSON serializable").

    Raises:
        TypeError: anything else that JSON cannot hold, naming its type.
    """
    for method in ("item", "tolist"):
        if callable(getattr(value, method, None)):
            try:
                return getattr(value, method)()
            except (TypeError, ValueError):
                continue
    raise TypeError(f"a config value of type {type(value).__name__} cannot be written to JSON: "
                    "use numbers, strings, booleans, lists and dicts (or save to .pkl)")
