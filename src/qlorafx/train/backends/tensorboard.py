"""tensorboard: event files in <run>/tensorboard (``tensorboard --logdir RUN/tensorboard``).

Scalars are named train/loss, train/lr, ..., eval/loss; the resolved recipe is a text entry
named 'recipe'. Needs the tensorboard package (``pip install 'qlorafx[tensorboard]'``).
"""

from __future__ import annotations

from typing import Any

from qlorafx.run_files import TENSORBOARD_DIR
from qlorafx.train.backends.base import Backend, RunInfo, scalars



def as_markdown_code(text: str) -> str:
    # TensorBoard renders text entries as markdown: indent by four spaces so YAML stays verbatim
    return "\n".join("    " + line for line in text.splitlines())


class TensorboardBackend(Backend):
    requires = "tensorboard"
    extra = "tensorboard"

    def __init__(self, run: RunInfo):
        super().__init__(run)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run.run_dir / TENSORBOARD_DIR))
        self.writer.add_text("recipe", as_markdown_code(run.recipe_yaml), global_step=0)

    def write(self, record: dict[str, Any]) -> None:
        for name, value in scalars(record).items():
            self.writer.add_scalar(name, value, global_step=record["step"])

    def close(self, failed: bool = False) -> None:
        self.writer.close()
