"""jsonl: one JSON object per log or evaluation in <run>/metrics.jsonl, the run's own record
(``qlorafx report`` plots it). The resolved recipe is beside it in recipe.yaml."""

from __future__ import annotations

import json
from typing import Any

from qlorafx.run_files import METRICS_FILE
from qlorafx.train.backends.base import Backend, RunInfo



class JsonlBackend(Backend):
    def __init__(self, run: RunInfo):
        super().__init__(run)
        self.path = run.run_dir / METRICS_FILE

    def write(self, record: dict[str, Any]) -> None:
        # opened per record: a crash loses nothing already logged
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
