"""Figures out of repeated samples: medians, ranges, ratios, printed tables and PNG plots.

This machine is shared and noisy, so every figure is a median of several samples with its
min-max beside it, and comparisons are ratios of medians taken in the same run.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path


def summary(samples: Sequence[float]) -> dict:
    """Median, min and max of the samples (empty when nothing was measured)."""
    if not samples:
        return {"median": None, "min": None, "max": None, "samples": []}
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": list(samples),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either side is missing or zero."""
    if not numerator or not denominator:
        return None
    return numerator / denominator


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a table cell; a dash when there is none."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def fmt_range(stats: dict, digits: int = 1) -> str:
    if stats.get("median") is None:
        return "-"
    return f"{fmt(stats['min'], digits)}-{fmt(stats['max'], digits)}"


def table(title: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A plain-text table with left-aligned first column and right-aligned figures."""
    rows = [list(map(str, row)) for row in rows]
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(widths[i + 1]) for i, cell in enumerate(cells[1:])]
        return "  ".join([first, *rest]).rstrip()

    out = [title, line(header), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_plot(
    path: Path,
    title: str,
    ylabel: str,
    groups: Sequence[str],
    series: dict[str, Sequence[dict]],
    logy: bool = False,
) -> Path | None:
    """Grouped bars of medians with min-max whiskers: one group per x label, one bar per series.

    series maps a legend label to one summary() per group. Returns the file written, or None
    when matplotlib is missing (the tables still print).
    """
    try:
        plt = _pyplot()
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    n = max(len(series), 1)
    width = 0.8 / n
    for i, (label, stats) in enumerate(series.items()):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        med = [s.get("median") or 0.0 for s in stats]
        low = [m - (s.get("min") or m) for m, s in zip(med, stats, strict=True)]
        high = [(s.get("max") or m) - m for m, s in zip(med, stats, strict=True)]
        ax.bar(xs, med, width, label=label, yerr=[low, high], capsize=3)
    if logy:
        ax.set_yscale("log")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def line_plot(
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    logx: bool = False,
) -> Path | None:
    """Lines of (x, y) points, one per series; None when matplotlib is missing."""
    try:
        plt = _pyplot()
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=label)
    if logx:
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.set_xscale("log")
        ax.set_xticks(sorted({x for xs, _ in series.values() for x in xs}))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
