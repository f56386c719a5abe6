"""Trainer callbacks for a run's life: publishing checkpoints, stopping on a signal, loss guards."""

from __future__ import annotations

import math
import signal
from contextlib import contextmanager
from pathlib import Path

from transformers import TrainerCallback

from qlorafx.errors import UserError
from qlorafx.train import checkpoints


class Diverged(UserError):
    """The loss became NaN or infinite; the message says where and what usually causes it."""


class PublishCheckpoints(TrainerCallback):
    """Once the Trainer has written a checkpoint to staging, move it into place (rank 0 only)."""

    def __init__(self, run_dir: Path, recipe_yaml: str, keep: int, clock=None):
        """``clock``: the run's training time so far in seconds (earlier sessions included), kept with each checkpoint."""
        self.run_dir, self.recipe_yaml, self.keep, self.clock = run_dir, recipe_yaml, keep, clock
        self.latest: Path | None = None

    def on_save(self, args, state, control, **kwargs):
        import torch.distributed as dist

        distributed = dist.is_available() and dist.is_initialized()
        if distributed:
            dist.barrier()  # every rank has written its RNG state into staging
        if state.is_world_process_zero:
            checkpoints.publish(self.run_dir, state.global_step, self.recipe_yaml, self.keep,
                                round(self.clock(), 1) if self.clock else None,
                                dist.get_world_size() if distributed else 1)
        if distributed:
            dist.barrier()
        self.latest = checkpoints.checkpoints_dir(self.run_dir) / f"checkpoint-{state.global_step}"  # every rank says where


class GracefulStop(TrainerCallback):
    """SIGTERM or Ctrl-C: finish the step, save a checkpoint, stop. A second one stops at once."""

    def __init__(self):
        self.signal: str | None = None  # its name, and where it came from if not to this process
        self.step: int | None = None
        self._number = 0

    def request(self, signum: int, frame=None) -> None:
        self.signal, self._number = signal.Signals(signum).name, signum
        # the next signal gets the default behaviour: Ctrl-C raises KeyboardInterrupt, SIGTERM ends the process
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    @contextmanager
    def installed(self):
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, self.request)
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def on_step_end(self, args, state, control, **kwargs):
        self._agree(args.device)
        if self.signal is not None:
            self.step = state.global_step
            control.should_save = True
            control.should_log = True  # the steps since the last log: the resumed run's losses continue from here
            control.should_training_stop = True

    def _agree(self, device) -> None:
        """Several processes stop at the same step or not at all: a signal may reach only one machine
        (a scheduler preempting it), or reach the processes between two of their steps; a process that
        went on alone would wait forever for the others in its next collective."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        number = torch.tensor([self._number], device=device)
        dist.all_reduce(number, op=dist.ReduceOp.MAX)
        if number.item() and self.signal is None:
            self._number = int(number.item())
            self.signal = f"{signal.Signals(self._number).name} (to another process)"


class LossGuard(TrainerCallback):
    """Stops on a NaN or infinite loss (with a diagnosis); warns once when the loss is exactly 0."""

    def __init__(self, log=print):
        self.log = log
        self.bad_step: int | None = None
        self.bad_loss: float | None = None
        self.warned_zero = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        if not math.isfinite(loss):
            self.bad_step, self.bad_loss = state.global_step, loss
            control.should_training_stop = True
        elif loss == 0.0 and not self.warned_zero:
            self.warned_zero = True
            self.log(f"warning: the training loss is exactly 0 at step {state.global_step}: are all labels masked? "
                     "Check with `qlorafx preprocess RECIPE --show 3` (trained tokens are marked)")

    def diagnosis(self, run_dir: Path) -> Diverged:
        found = checkpoints.complete(run_dir)
        last = f"the last good checkpoint is {found[-1]}" if found else "no checkpoint was saved before it"
        return Diverged(
            f"the training loss became {self.bad_loss} at step {self.bad_step}; {last}. Likely causes: a learning "
            "rate too high for this model (lower optimizer.lr or add warm-up), float16 overflow (use "
            "compute_dtype bfloat16 or float32), or a corrupt example (inspect with qlorafx preprocess)."
        )
