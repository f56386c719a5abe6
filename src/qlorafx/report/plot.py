"""metrics.jsonl -> one PNG: train and eval loss on top, the learning rate below, sharing the step axis.

Uses matplotlib's object API with the Agg canvas (no pyplot): no display, no global figure
state, the same picture on a server as on a laptop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TRAIN_COLOR, EVAL_COLOR, LR_COLOR = "#1f77b4", "#d62728", "#2ca02c"
SMOOTH_FROM = 30  # with this many train logs or more, draw an EMA over the raw (noisy) curve
MARKERS_UP_TO = 40


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(r["step"], r[key]) for r in records
              if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
    return [p[0] for p in points], [p[1] for p in points]


def ema(values: list[float], weight: float = 0.9) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so it starts at the data."""
    out, last, norm = [], 0.0, 0.0
    for v in values:
        last = weight * last + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out.append(last / norm)
    return out


def _loss_panel(ax, metrics: list[dict[str, Any]]) -> None:
    steps, loss = _series(metrics, "loss")
    if len(steps) >= SMOOTH_FROM:
        ax.plot(steps, loss, color=TRAIN_COLOR, alpha=0.25, linewidth=1)
        ax.plot(steps, ema(loss), color=TRAIN_COLOR, linewidth=1.8, label=f"train loss, smoothed (last raw {loss[-1]:.3f})")
    elif steps:
        ax.plot(steps, loss, color=TRAIN_COLOR, marker="o", markersize=3.5, linewidth=1.8,
                label=f"train loss (last {loss[-1]:.3f})")
    eval_steps, eval_loss = _series(metrics, "eval_loss")
    if eval_steps:
        change = f"{eval_loss[0]:.3f} \u2192 {eval_loss[-1]:.3f}" if len(eval_steps) > 1 else f"{eval_loss[0]:.3f}"
        ax.plot(eval_steps, eval_loss, color=EVAL_COLOR, marker="s", markersize=6 if len(eval_steps) <= MARKERS_UP_TO else 0,
                linewidth=1.4, linestyle="--", label=f"eval loss ({change})")
    if steps or eval_steps:
        ax.legend(loc="best", frameon=True, framealpha=0.9, edgecolor="none")
        ax.margins(y=0.08)
    else:
        ax.text(0.5, 0.5, "no losses logged", transform=ax.transAxes, ha="center", color="gray")
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)


def _lr_panel(ax, metrics: list[dict[str, Any]]) -> None:
    from matplotlib.ticker import ScalarFormatter

    steps, lr = _series(metrics, "lr")
    if steps:
        ax.plot(steps, lr, color=LR_COLOR, linewidth=1.8, marker="o" if len(steps) <= MARKERS_UP_TO else None, markersize=3)
        formatter = ScalarFormatter(useMathText=True)
        formatter.set_powerlimits((-2, 3))
        ax.yaxis.set_major_formatter(formatter)
        ax.set_ylim(bottom=0, top=max(lr) * 1.2 if max(lr) > 0 else 1)
    else:
        ax.text(0.5, 0.5, "no learning rate logged", transform=ax.transAxes, ha="center", color="gray")
    ax.set_ylabel("learning rate")
    ax.set_xlabel("optimizer step")
    ax.grid(True, alpha=0.3)


def plot_curves(metrics: list[dict[str, Any]], path: Path, title: str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 6), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, lr_ax = fig.subplots(2, 1, sharex=True, height_ratios=[2.2, 1])
    fig.suptitle(title, fontsize=12)
    _loss_panel(loss_ax, metrics)
    _lr_panel(lr_ax, metrics)
    lr_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    last = max((r["step"] for r in metrics if isinstance(r.get("step"), (int, float))), default=0)
    lr_ax.set_xlim(left=-0.015 * max(last, 1))  # step 0 (the eval before training) sits just inside the frame
    fig.savefig(path, dpi=120)
    return path
