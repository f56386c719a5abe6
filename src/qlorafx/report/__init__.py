"""The run report: a PNG of the loss curves and learning rate, and README.md, the model card.

Written at the end of every run and by ``qlorafx report RUN_DIR`` (which rewrites both from
the run directory's files, e.g. after a newer qlorafx improved them). No torch needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qlorafx.model.loaders import PRETRAINED
from qlorafx.report.card import model_card
from qlorafx.report.plot import plot_curves
from qlorafx.report.run import RunError, read_run
from qlorafx.run_files import CARD_FILE, PLOT_FILE


@dataclass(frozen=True)
class Report:
    card: Path
    plot: Path | None  # None when the run kept no metrics.jsonl


def write_report(run_dir: str | Path) -> Report:
    run = read_run(run_dir)
    plot = None
    if run.metrics is not None:
        r = run.recipe
        base = Path(r.model.path).name if r.model.loader == PRETRAINED else f"random {r.model.config.get('model_type')}"
        method = f"{r.quantization.bits}-bit {r.quantization.quant_type}" if r.quantization.bits == 4 else f"{r.quantization.bits}-bit"
        title = f"{run.path.resolve().name}: {base}, {method}, LoRA r={r.lora.r}"
        plot = plot_curves([*run.train_logs, *run.evals], run.path / PLOT_FILE, title)
    card = run.path / CARD_FILE
    card.write_text(model_card(run, PLOT_FILE if plot else None), encoding="utf-8")
    return Report(card, plot)


__all__ = ["CARD_FILE", "PLOT_FILE", "Report", "RunError", "read_run", "write_report"]
