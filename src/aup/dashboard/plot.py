"""``aup plot``: an experiment's best-so-far history and parallel coordinates as a file.

``.html`` files are interactive Plotly figures with Plotly.js embedded (they open offline);
``.png``, ``.svg`` and ``.pdf`` are drawn with matplotlib (no browser needed). The data comes
from the same down-sampled queries as the dashboard.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from aup.commands.args import add_db_argument
from aup.dashboard.export import add_overwrite_argument
from aup.errors import UsageError, install_hint

IMAGE_SUFFIXES = (".png", ".svg", ".pdf")


def _installed(module: str) -> bool:
    """True when ``module`` can be imported (found, and not blocked in ``sys.modules``)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ValueError, ImportError):
        return False


def plot_html(history: dict[str, Any], parallel: dict[str, Any], title: str) -> str:
    """A standalone HTML page with both figures (Plotly.js embedded once)."""
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise UsageError(f"HTML plots need plotly. Fix: {install_hint('dashboard')}"
                         ) from None

    h = history
    fig1 = go.Figure([
        *(go.Scatter(x=ns, y=ys, mode="markers", name=name, customdata=jids,
                     hovertemplate="job %{customdata}: %{y}<extra></extra>")
          for name, ns, ys, jids in _points_by_budget(h["points"])),
        go.Scatter(x=h["best"]["n"], y=h["best"]["score"], mode="lines", name="best so far",
                   line={"shape": "hv"})])
    fig1.update_layout(title=f"{title}: score per job", xaxis_title="finished job #",
                       yaxis_title="score")
    dims = _plotly_dims(parallel)
    fig2 = go.Figure(go.Parcoords(dimensions=dims, line={
        "color": parallel["score"], "colorscale": "Viridis", "showscale": True,
        "colorbar": {"title": {"text": "score"}},
        "reversescale": parallel["target"] == "min"}))  # the best bright, as in the images
    fig2.update_layout(title=f"{title}: parameters vs score ({parallel['n_shown']} of "
                       f"{parallel['n_finished']} jobs)")
    body = (fig1.to_html(full_html=False, include_plotlyjs=True)
            + fig2.to_html(full_html=False, include_plotlyjs=False))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
            f"</head><body>{body}</body></html>\n")


def _points_by_budget(points: dict[str, list[Any]]) -> list[tuple[str, list, list, list]]:
    """The score points split by budget, largest first, as the dashboard draws them: ``(name,
    n, score, jid)`` per trace; one trace named "score" without budgets. A budget-1 score drawn
    like a budget-9 one looked like a better job above the best-so-far line (trial 70)."""
    budgets = points.get("budget") or [None] * len(points["n"])
    groups: dict[Any, tuple[list, list, list]] = {}
    for n, y, jid, b in zip(points["n"], points["score"], points["jid"], budgets, strict=True):
        g = groups.setdefault(b, ([], [], []))
        g[0].append(n)
        g[1].append(y)
        g[2].append(jid)
    if set(groups) <= {None}:
        return [("score", *groups.get(None, ([], [], [])))]
    order = sorted(groups, key=lambda b: -1.0 if b is None else float(b), reverse=True)
    return [("score" if b is None else f"score at budget {float(b):g}", *groups[b])
            for b in order]


def _esc(text: str) -> str:
    import html

    return html.escape(text)


def _plotly_dims(parallel: dict[str, Any]) -> list[dict[str, Any]]:
    dims = []
    for d in parallel["dimensions"]:
        dim: dict[str, Any] = {"label": d["name"], "values": d["values"]}
        if d.get("log"):
            dim["values"] = [math.log10(v) if v is not None and v > 0 else None
                             for v in d["values"]]
            dim["label"] = f"{d['name']} (log10)"
        elif d["type"] == "choice":
            dim["tickvals"] = list(range(len(d["choices"])))
            dim["ticktext"] = d["choices"]
        dims.append(dim)
    dims.append({"label": "score", "values": parallel["score"]})
    return dims


def require_matplotlib(out: Path) -> None:
    """Check that images can be drawn, before anything is written.

    Raises:
        UsageError: matplotlib is not installed (the message names ``out`` and the fix).
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        html = ", or write .html (plotly is installed)" if _installed("plotly") else ""
        raise UsageError(f"{out}: images need matplotlib. Fix: {install_hint('dashboard')}"
                         f"{html}") from None


def plot_image(history: dict[str, Any], parallel: dict[str, Any], title: str,
               out: Path) -> None:
    """Draw both charts with matplotlib into ``out`` (format from its suffix).

    Raises:
        UsageError: matplotlib is not installed.
    """
    require_matplotlib(out)
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5))
    h = history
    for name, ns, ys, _ in _points_by_budget(h["points"]):
        pts = [(n, y) for n, y in zip(ns, ys, strict=True) if y is not None]
        if pts:
            ax1.scatter([p[0] for p in pts], [p[1] for p in pts], s=10, alpha=0.6, label=name)
    ax1.step(h["best"]["n"], h["best"]["score"], where="post", color="C3", label="best so far")
    ax1.set_xlabel("finished job #")
    ax1.set_ylabel("score")
    ax1.set_title(f"{title}: score per job")
    ax1.legend()
    cols = [d for d in parallel["dimensions"]] + [
        {"name": "score", "type": "float", "values": parallel["score"], "choices": None}]
    def axis(d: dict[str, Any]) -> list[float]:
        if d.get("log"):
            return [np.log10(v) if v is not None and v > 0 else np.nan for v in d["values"]]
        return [np.nan if v is None else float(v) for v in d["values"]]

    data = np.array([axis(d) for d in cols], dtype=float).reshape(len(cols), -1)
    finite = [r[~np.isnan(r)] for r in data]
    lo = np.array([r.min() if r.size else 0.0 for r in finite])
    hi = np.array([r.max() if r.size else 1.0 for r in finite])
    if data.size:
        span = np.where(hi > lo, hi - lo, 1.0)
        norm = (data - lo[:, None]) / span[:, None]
        scores = data[-1]
        cmap = plt.get_cmap("viridis_r" if parallel["target"] == "min" else "viridis")
        smin, smax = np.nanmin(scores), np.nanmax(scores)
        for k in range(norm.shape[1]):
            c = 0.5 if smax == smin else (scores[k] - smin) / (smax - smin)
            ax2.plot(range(len(cols)), norm[:, k], color=cmap(c), alpha=0.5, lw=0.8)
        if np.isfinite(smin):  # which colour is which score (the best is bright)
            from matplotlib.cm import ScalarMappable
            from matplotlib.colors import Normalize

            scale = ScalarMappable(Normalize(smin, smax if smax > smin else smin + 1), cmap)
            fig.colorbar(scale, ax=ax2, label="score", fraction=0.04, pad=0.02)
        for i, d in enumerate(cols):
            if d["type"] == "choice" and len(d["choices"]) <= 12:
                # each choice beside the axis at its own height (joined under the axis they
                # ran into one unreadable label)
                for k, choice in enumerate(d["choices"]):
                    if lo[i] <= k <= hi[i]:
                        y = 0.5 if hi[i] == lo[i] else (k - lo[i]) / (hi[i] - lo[i])
                        ax2.text(i + 0.04, y, choice[:20], ha="left", va="center",
                                 fontsize=7)
                continue
            if d["type"] == "choice":
                label = f"{len(d['choices'])} choices"
            elif d.get("log"):
                label = f"{10 ** lo[i]:.3g}..{10 ** hi[i]:.3g} (log)"
            else:
                label = f"{lo[i]:.3g}..{hi[i]:.3g}"
            ax2.text(i, -0.08, label, ha="center", va="top", fontsize=7)
    ax2.set_xticks(range(len(cols)), [d["name"] for d in cols])
    ax2.set_yticks([])
    ax2.set_ylim(-0.15, 1.05)
    ax2.set_title(f"parameters vs score ({parallel['n_shown']} of {parallel['n_finished']} "
                  "jobs)")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def check_plot_out(out: Path, overwrite: bool = False) -> None:
    """Refuse a bad ``--out`` before any work: unsupported suffix, and everything
    :func:`aup.dashboard.export.check_out` refuses (missing folder, a folder, an existing file
    without ``overwrite``, an SQLite database).

    Raises:
        UsageError: with the reason and a fix.
    """
    from aup.dashboard.export import check_out

    suffix = out.suffix.lower()
    if suffix not in (".html", *IMAGE_SUFFIXES):
        raise UsageError(f"--out {out}: unknown file type {suffix or '(none)'}. Fix: end the "
                         "name with .html, .png, .svg or .pdf")
    check_out(out, overwrite)


def write_plot(store: Any, eid: int, out: Path, overwrite: bool = False) -> dict[str, Any]:
    """Write experiment ``eid``'s charts to ``out`` (``.html``, ``.png``, ``.svg``, ``.pdf``).

    Returns:
        The experiment's summary (as the dashboard's API gives it: ``n_finished``,
        ``n_failed``...), so a caller can say why the charts are empty.

    The file is written under a temporary name and renamed, so a failure leaves nothing
    half-written; an existing file is replaced only with ``overwrite`` (never an SQLite
    database).

    Raises:
        UsageError: see :func:`check_plot_out`, or the file cannot be written.
        aup.dashboard.queries.NotFound: no experiment ``eid``.
    """
    from aup.dashboard.export import write_out
    from aup.dashboard.queries import DashboardQueries

    check_plot_out(out, overwrite)
    q = DashboardQueries(store)
    exp = q.experiment(eid)
    history = q.history(eid, max_points=4000)
    parallel = q.parallel(eid, max_lines=1000)
    title = f"experiment {eid} ({exp['name']})"
    if out.suffix.lower() == ".html":
        text = plot_html(history, parallel, title)
        write_out(out, lambda path: path.write_text(text, encoding="utf-8"))
    else:
        require_matplotlib(out)  # named as given, not as the temporary file written first
        write_out(out, lambda path: plot_image(history, parallel, title, path))
    return exp


def cmd_plot(args: Any) -> int:
    """aup plot EXPERIMENT --out FILE."""
    from aup.api import find_experiment, open_existing_store

    out = Path(args.out)
    check_plot_out(out, args.overwrite)
    store = open_existing_store(args.db, read_only=True)
    try:
        row = find_experiment(store, args.experiment)
        exp = write_plot(store, int(row["eid"]), out, args.overwrite)
    finally:
        store.close()
    print(f"wrote {args.out}", file=sys.stderr)
    if not exp["n_finished"]:
        # Optuna warns too: the axes alone looked like a broken plot (trial 60)
        print(f"note: no job of experiment {exp['eid']} has finished with a score yet "
              f"({exp['n_jobs']} job(s), {exp['n_failed']} failed), so the charts are empty; "
              f"aup show {exp['eid']} lists the failures", file=sys.stderr)
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``aup plot`` (see :data:`aup.cli.EXTRA_COMMANDS`)."""
    p = subparsers.add_parser("plot", help="plot an experiment's history and parameters",
                              description="Write the best-so-far history and the parallel "
                              "coordinates of an experiment as HTML (interactive, offline) or "
                              "PNG/SVG/PDF.")
    p.set_defaults(func=cmd_plot)
    add_db_argument(p)
    p.add_argument("experiment", help="experiment id or name")
    p.add_argument("--out", "-o", required=True, help="output file: .html, .png, .svg or .pdf "
                   "(an existing file needs --overwrite)")
    add_overwrite_argument(p)
