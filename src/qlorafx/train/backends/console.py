"""console: a tqdm progress bar whose postfix shows loss, lr and tokens/s (with tqdm's ETA);
evaluations print a line of their own."""

from __future__ import annotations

from typing import Any

from qlorafx.train.backends.base import Backend, RunInfo


class ConsoleBackend(Backend):
    def __init__(self, run: RunInfo):
        super().__init__(run)
        self.bar = None

    def start(self, total_steps: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total_steps, desc="train", unit="step", dynamic_ncols=True)

    def step(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)

    def write(self, record: dict[str, Any]) -> None:
        if "eval_loss" in record:
            line = f"step {record['step']}: eval_loss {record['eval_loss']:.4f}"
            (self.bar.write if self.bar is not None else print)(line)
        elif self.bar is not None and "loss" in record:
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                                 tok_s=f"{record.get('tokens_per_s', 0):.0f}")

    def train_end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self, failed: bool = False) -> None:
        self.train_end()
