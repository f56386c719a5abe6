"""results.json -> one PNG: Elo with its interval per contestant, and the win rate of each pair.

matplotlib's object API on the Agg canvas, as the run report's plot: no display needed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from qlorafx.judge.files import write_atomic

ELO_COLOR = "#1f77b4"


def _elo_panel(ax, ranking: list[dict[str, Any]], initial: float) -> None:
    names = [r["name"] for r in ranking][::-1]  # best on top
    elo = [r["elo"] for r in ranking][::-1]
    values = [e["value"] for e in elo]
    # the mean may sit a rounding error (or, with skewed orderings, more) outside the percentile interval
    errors = [[max(0.0, e["value"] - e["low"]) for e in elo], [max(0.0, e["high"] - e["value"]) for e in elo]]
    ax.errorbar(values, range(len(names)), xerr=errors, fmt="o", color=ELO_COLOR, capsize=4, markersize=6)
    for y, e in enumerate(elo):
        ax.annotate(f"{e['value']:.0f}", (e["value"], y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=9)
    ax.axvline(initial, color="gray", linewidth=0.8, linestyle=":")
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlabel("Elo (mean over orderings, interval)")
    ax.grid(True, axis="x", alpha=0.3)


def _win_panel(ax, ranking: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> None:
    import numpy as np

    names = [r["name"] for r in ranking]
    index = {n: i for i, n in enumerate(names)}
    grid = np.full((len(names), len(names)), np.nan)
    for p in pairs:
        if p["win_rate"] is not None:
            grid[index[p["a"]], index[p["b"]]] = p["win_rate"]["value"]
            grid[index[p["b"]], index[p["a"]]] = 1 - p["win_rate"]["value"]
    ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if not np.isnan(grid[i, j]):
                dark = grid[i, j] < 0.2 or grid[i, j] > 0.8  # the colour map's ends are dark
                ax.text(j, i, f"{grid[i, j]:.0%}", ha="center", va="center", fontsize=9, color="white" if dark else "black")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_title("win rate of the row against the column", fontsize=10)


def plot_results(results: dict[str, Any], path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ranking = results["ranking"]
    size = max(3.0, 0.55 * len(ranking) + 1.8)
    fig = Figure(figsize=(11, size), layout="constrained")
    FigureCanvasAgg(fig)
    elo_ax, win_ax = fig.subplots(1, 2, width_ratios=[1.3, 1])
    judge = results["judge"]
    fig.suptitle(f"judged by {judge['model']} on {results['questions']['count']} questions ({judge['mode']})", fontsize=12)
    _elo_panel(elo_ax, ranking, results["settings"]["elo"]["initial"])
    _win_panel(win_ax, ranking, results["pairs"])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return write_atomic(path, buffer.getvalue())
