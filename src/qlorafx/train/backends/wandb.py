"""wandb: a Weights & Biases run, configured by the recipe's logging.wandb section.

Imported only when a recipe lists ``wandb`` in logging.backends: nothing is sent anywhere
unless a recipe asks. The run's config is the resolved recipe; metrics are named train/loss,
train/lr, ..., eval/loss, at the Trainer's optimizer step. Run files go to $WANDB_DIR when set,
else into <run>/wandb (so an offline run travels with its run directory:
``wandb sync RUN/wandb/offline-run-*``). Needs ``pip install 'qlorafx[wandb]'``.
"""

from __future__ import annotations

import os
from typing import Any

from qlorafx.train.backends.base import Backend, RunInfo, scalars


class WandbBackend(Backend):
    requires = "wandb"
    extra = "wandb"

    def __init__(self, run: RunInfo):
        super().__init__(run)
        import wandb

        cfg = run.recipe.logging.wandb
        self.wandb_run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            name=cfg.run_name or run.run_dir.name,
            tags=list(cfg.tags) or None,
            mode=cfg.mode,  # None: wandb's own choice ($WANDB_MODE, else online)
            config=run.recipe.model_dump(mode="json"),
            # read here, not left to wandb: wandb caches $WANDB_DIR from a process's first run
            dir=os.environ.get("WANDB_DIR") or str(run.run_dir),
        )

    def write(self, record: dict[str, Any]) -> None:
        self.wandb_run.log(scalars(record), step=record["step"])

    def close(self, failed: bool = False) -> None:
        self.wandb_run.finish(exit_code=1 if failed else 0)
