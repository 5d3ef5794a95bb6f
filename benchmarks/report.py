"""Figures out of repeated samples: medians, ranges, ratios, printed tables and PNG plots.

This machine is shared and noisy, so every figure is a median of several samples with its
min-max beside it, and comparisons are ratios of medians taken in the same run.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Panel:
    """One set of axes of a bar figure: one group per x label, one bar per series; series
    maps a legend label to one summary() per group."""

    title: str
    ylabel: str
    groups: Sequence[str]
    series: dict[str, Sequence[dict]]
    logy: bool = False


def bar_plot(
    path: Path,
    title: str,
    ylabel: str,
    groups: Sequence[str],
    series: dict[str, Sequence[dict]],
    logy: bool = False,
) -> Path | None:
    """Grouped bars of medians with min-max whiskers (one Panel). Returns the file written, or
    None when matplotlib is missing (the tables still print)."""
    return bar_panels(path, "", [Panel(title, ylabel, groups, series, logy)])


def bar_panels(path: Path, title: str, panels: Sequence[Panel]) -> Path | None:
    """Panels side by side in one PNG, under `title` when there is one; None when matplotlib
    is missing."""
    try:
        plt = _pyplot()
    except ImportError:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(8 if len(panels) == 1 else
                                                      5 * len(panels), 4.5), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        n = max(len(panel.series), 1)
        width = 0.8 / n
        for i, (label, stats) in enumerate(panel.series.items()):
            xs = [g + (i - (n - 1) / 2) * width for g in range(len(panel.groups))]
            med = [s.get("median") or 0.0 for s in stats]
            low = [m - (s.get("min") or m) for m, s in zip(med, stats, strict=True)]
            high = [(s.get("max") or m) - m for m, s in zip(med, stats, strict=True)]
            ax.bar(xs, med, width, label=label, yerr=[low, high], capsize=3)
        if panel.logy:
            ax.set_yscale("log")
        ax.set_xticks(range(len(panel.groups)))
        ax.set_xticklabels(panel.groups)
        ax.set_ylabel(panel.ylabel)
        ax.set_title(panel.title)
        ax.legend(fontsize="small")
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title)
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
