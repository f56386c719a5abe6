"""wandb: a Weights & Biases run, configured by the recipe's logging.wandb section.

Imported only when a recipe lists ``wandb`` in logging.backends: nothing is sent anywhere
unless a recipe asks. The run's config is the resolved recipe; metrics are named train/loss,
train/lr, ..., eval/loss, at the Trainer's optimizer step. Run files go to $WANDB_DIR when set,
else into <run>/wandb (so an offline run travels with its run directory:
``wandb sync RUN/wandb/offline-run-*``). Needs ``pip install 'qlorafx[wandb]'``.

The wandb run's id is kept in <run>/wandb-run.json, so that ``qlorafx train --resume`` continues
the same wandb run (its curves go on from the checkpoint's step) rather than starting another.
"""

from __future__ import annotations

import json
import os
from typing import Any

from qlorafx.errors import UserError
from qlorafx.run_files import WANDB_RUN_FILE
from qlorafx.train.backends.base import Backend, RunInfo, scalars




def _recorded_id(path) -> str | None:
    """The wandb run id an earlier part of this run recorded; None when there is none (wandb was
    not on then). A damaged record is an error: guessing would split the run's curves in two."""
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8")).get("id")
    except (ValueError, AttributeError):
        found = None
    if not (isinstance(found, str) and found):
        raise UserError(f"{path} does not hold a wandb run id (expected {{\"id\": \"...\"}}); fix it, or delete it "
                        f"to log the resumed part to a new wandb run")
    return found


class WandbBackend(Backend):
    requires = "wandb"
    extra = "wandb"

    def __init__(self, run: RunInfo):
        super().__init__(run)
        import wandb

        cfg = run.recipe.logging.wandb
        record = run.run_dir / WANDB_RUN_FILE
        earlier = _recorded_id(record) if run.resumed else None
        self.wandb_run = wandb.init(
            id=earlier,
            resume="allow" if earlier else None,
            project=cfg.project,
            entity=cfg.entity,
            name=cfg.run_name or run.run_dir.name,
            tags=list(cfg.tags) or None,
            mode=cfg.mode,  # None: wandb's own choice ($WANDB_MODE, else online)
            config=run.recipe.model_dump(mode="json"),
            # read here, not left to wandb: wandb caches $WANDB_DIR from a process's first run
            dir=os.environ.get("WANDB_DIR") or str(run.run_dir),
        )
        record.write_text(json.dumps({"id": self.wandb_run.id, "project": self.wandb_run.project}) + "\n",
                          encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.wandb_run.log(scalars(record), step=record["step"])

    def close(self, failed: bool = False) -> None:
        self.wandb_run.finish(exit_code=1 if failed else 0)
