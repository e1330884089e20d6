"""Chart helpers: small aggregated inputs in, PNG bytes out, one consistent style.

Charts are drawn on ``matplotlib.figure.Figure`` objects (Agg canvas, no pyplot global state), so
they are safe in Airflow workers and never open a window. Callers aggregate first: these functions
only ever see a few hundred points.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from contextlib import contextmanager

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

DPI = 150
WIDTH_IN = 7.0
PALETTE = ("#1f3864", "#e07b39", "#3a9d5d", "#c0392b", "#8e6bbf", "#7f7f7f", "#2a9fd6", "#d4a017")
STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 8.5,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
}



def percent_axis() -> PercentFormatter:
    """A fresh formatter per axis (formatters remember the axis they are attached to)."""
    return PercentFormatter(1.0, decimals=None)


def thousands_axis() -> FuncFormatter:
    return FuncFormatter(lambda v, _pos: f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}")


@contextmanager
def _figure(height_in: float, ncols: int = 1, nrows: int = 1, width_in: float = WIDTH_IN):
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False)
        yield fig, axes


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def _short(label: object, n: int = 32) -> str:
    s = str(label)
    return s if len(s) <= n else s[: n - 1] + "…"


def hbar(labels: Sequence[object], values: Sequence[float], *, title: str, xlabel: str,
         value_fmt: str = "{:,.0f}", color: str = PALETTE[0], width_in: float = WIDTH_IN) -> bytes:
    """Horizontal bars, largest on top, values printed at the bar ends."""
    height = max(1.4, 0.55 + 0.27 * len(labels))
    with _figure(height, width_in=width_in) as (fig, axes):
        ax = axes[0][0]
        ypos = list(range(len(labels)))[::-1]
        ax.barh(ypos, values, color=color, height=0.65)
        ax.set_yticks(ypos, [_short(label) for label in labels])
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        ax.grid(axis="y", visible=False)
        vmax = max([float(v) for v in values] + [0.0]) or 1.0
        ax.set_xlim(0, vmax * 1.18)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for y, v in zip(ypos, values, strict=True):
            ax.text(float(v) + vmax * 0.01, y, value_fmt.format(v), va="center", fontsize=7.5)
        return _png(fig)


def bars(labels: Sequence[object], values: Sequence[float], *, title: str, xlabel: str, ylabel: str,
         height_in: float = 2.6, color: str = PALETTE[0], percent: bool = False) -> bytes:
    """Vertical bars for a handful of categories (weekdays, rating values, event types)."""
    with _figure(height_in) as (fig, axes):
        ax = axes[0][0]
        ax.bar([str(label) for label in labels], values, color=color, width=0.7)
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(axis="x", visible=False)
        ax.yaxis.set_major_formatter(percent_axis() if percent else thousands_axis())
        return _png(fig)


def lines(x: Sequence[object], series: Mapping[str, Sequence[float]], *, title: str, xlabel: str,
          ylabel: str, height_in: float = 2.8, percent: bool = False,
          hline: tuple[float, str] | None = None, markers: bool = False, stacked: bool = False) -> bytes:
    """One line per series over a shared x axis (dates or run labels); optional reference line."""
    labels = [str(v) for v in x] if x and isinstance(next(iter(x)), str) else None
    xs = list(range(len(labels))) if labels is not None else list(x)
    with _figure(height_in) as (fig, axes):
        ax = axes[0][0]
        if stacked and series:
            ax.stackplot(xs, *[list(v) for v in series.values()], labels=list(series),
                         colors=PALETTE[: len(series)], alpha=0.85)
        else:
            for i, (name, ys) in enumerate(series.items()):
                ax.plot(xs, list(ys), label=name, color=PALETTE[i % len(PALETTE)], linewidth=1.4,
                        marker="o" if markers else None, markersize=3.5)
        if hline is not None:
            ax.axhline(hline[0], color=PALETTE[3], linestyle="--", linewidth=1, label=hline[1])
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.yaxis.set_major_formatter(percent_axis() if percent else thousands_axis())
        ax.set_ylim(bottom=0)
        if series:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        if labels is not None:
            step = max(1, (len(labels) + 11) // 12)
            ax.set_xticks(xs[::step], labels[::step])
            if len(labels) == 1:
                ax.set_xlim(-1, 1)
        for label in ax.get_xticklabels():
            label.set_rotation(30)
            label.set_horizontalalignment("right")
        return _png(fig)


def histogram(edges: Sequence[float], counts: Sequence[float], *, title: str, xlabel: str,
              ylabel: str = "rows", height_in: float = 2.4, logx: bool = False) -> bytes:
    """Pre-binned histogram (``len(edges) == len(counts) + 1``)."""
    with _figure(height_in) as (fig, axes):
        ax = axes[0][0]
        widths = [edges[i + 1] - edges[i] for i in range(len(counts))]
        ax.bar(list(edges[:-1]), list(counts), width=widths, align="edge", color=PALETTE[0],
               edgecolor="white", linewidth=0.4)
        if logx:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(thousands_axis())
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.yaxis.set_major_formatter(thousands_axis())
        return _png(fig)


def panels(specs: Sequence[dict], *, ncols: int = 2, panel_height_in: float = 2.3) -> bytes:
    """Several small charts in one image; each spec is {kind: bar|hist|hbar, title, xlabel, ...}.

    ``bar``: labels, values; ``hbar``: labels, values (percent=True for shares);
    ``hist``: edges, counts.
    """
    n = len(specs)
    nrows = (n + ncols - 1) // ncols
    with _figure(panel_height_in * nrows, ncols=ncols, nrows=nrows) as (fig, axes):
        for k in range(nrows * ncols):
            ax = axes[k // ncols][k % ncols]
            if k >= n:
                ax.set_visible(False)
                continue
            spec = specs[k]
            kind = spec["kind"]
            if kind == "hist":
                edges, counts = spec["edges"], spec["counts"]
                ax.bar(list(edges[:-1]), list(counts), width=[edges[i + 1] - edges[i]
                                                              for i in range(len(counts))],
                       align="edge", color=PALETTE[0], edgecolor="white", linewidth=0.4)
                ax.yaxis.set_major_formatter(thousands_axis())
            elif kind == "bar":
                ax.bar([str(v) for v in spec["labels"]], spec["values"], color=PALETTE[0], width=0.7)
                ax.grid(axis="x", visible=False)
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
                ax.yaxis.set_major_formatter(thousands_axis())
            elif kind == "hbar":
                labels = [_short(v, 24) for v in spec["labels"]]
                ypos = list(range(len(labels)))[::-1]
                ax.barh(ypos, spec["values"], color=spec.get("color", PALETTE[0]), height=0.65)
                ax.set_yticks(ypos, labels)
                ax.grid(axis="y", visible=False)
                if spec.get("percent"):
                    vmax = max([float(v) for v in spec["values"]] + [0.0])
                    ax.set_xlim(0, max(vmax * 1.15, 0.01))
                    ax.xaxis.set_major_formatter(percent_axis())
                    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
            else:
                raise ValueError(f"unknown panel kind {kind!r}")
            ax.set_title(_short(spec["title"], 48), loc="left")
            ax.set_xlabel(spec.get("xlabel", ""))
            ax.set_ylabel(spec.get("ylabel", ""))
        return _png(fig)


def lorenz(product_share: Sequence[float], interaction_share: Sequence[float], *, title: str,
           mark_x: float = 0.2) -> bytes:
    """Cumulative share of interactions against share of products (most popular first)."""
    with _figure(3.0, width_in=5.2) as (fig, axes):
        ax = axes[0][0]
        ax.plot(product_share, interaction_share, color=PALETTE[0], linewidth=1.6, label="observed")
        ax.plot([0, 1], [0, 1], color=PALETTE[5], linestyle=":", linewidth=1, label="equal popularity")
        ax.axvline(mark_x, color=PALETTE[1], linestyle="--", linewidth=1,
                   label=f"top {mark_x:.0%} of products")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.xaxis.set_major_formatter(percent_axis())
        ax.yaxis.set_major_formatter(percent_axis())
        ax.set_title(title, loc="left")
        ax.set_xlabel("share of products (most popular first)")
        ax.set_ylabel("cumulative share of interactions")
        ax.legend(loc="lower right")
        return _png(fig)


def heatmap(matrix: Sequence[Sequence[float]], row_labels: Sequence[str], col_labels: Sequence[str], *,
            title: str, xlabel: str, ylabel: str, colorbar_label: str = "share") -> bytes:
    """Cohort-style heatmap of shares in [0, 1]; NaN cells stay blank, values printed in cells."""
    import numpy as np

    data = np.array(matrix, dtype=float)
    nrows, ncols = data.shape
    height = max(2.2, 0.9 + 0.26 * nrows)
    with _figure(height) as (fig, axes):
        ax = axes[0][0]
        masked = np.ma.masked_invalid(data)
        cmap = matplotlib.colormaps["Blues"].with_extremes(bad="white")
        im = ax.imshow(masked, cmap=cmap, vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(ncols), list(col_labels))
        ax.set_yticks(range(nrows), list(row_labels))
        ax.grid(False)
        for i in range(nrows):
            for j in range(ncols):
                v = data[i, j]
                if not np.isnan(v):
                    ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=6.5,
                            color="white" if v > 0.55 else "black")
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        cbar = fig.colorbar(im, ax=ax, shrink=0.9, format=percent_axis())
        cbar.set_label(colorbar_label)
        return _png(fig)
