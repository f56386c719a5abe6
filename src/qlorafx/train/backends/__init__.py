"""Metrics backends, by registry key (the recipe's logging.backends).

    console      progress bar with loss, lr, tokens/s and ETA; evaluations as lines
    jsonl        RUN/metrics.jsonl, the run's own record (the report plots it)
    tensorboard  event files in RUN/tensorboard
    wandb        a Weights & Biases run (logging.wandb: project, entity, run_name, tags, mode)

Registering imports nothing heavy: torch.utils.tensorboard and wandb are imported when a
backend opens, so a recipe that does not list them never imports them.
"""

from __future__ import annotations

from contextlib import contextmanager
from importlib.util import find_spec
from typing import Iterator

from qlorafx import processes
from qlorafx.errors import Problem, UserError
from qlorafx.registry import Registry
from qlorafx.train.backends.base import Backend, RunInfo
from qlorafx.train.backends.console import ConsoleBackend
from qlorafx.train.backends.jsonl import JsonlBackend
from qlorafx.train.backends.tensorboard import TensorboardBackend
from qlorafx.train.backends.wandb import WandbBackend

BACKENDS: Registry[type[Backend]] = Registry("metrics backend")
BACKENDS.register("console")(ConsoleBackend)
BACKENDS.register("jsonl")(JsonlBackend)
BACKENDS.register("tensorboard")(TensorboardBackend)
BACKENDS.register("wandb")(WandbBackend)


class BackendUnavailableError(UserError):
    """A backend the recipe lists needs a package that is not installed."""


def missing_packages(names: list[str]) -> dict[int, str]:
    """Backends (by position in the list) whose package is not installed, with how to install it."""
    missing = {}
    for index, name in enumerate(names):
        backend = BACKENDS.get(name)
        if backend.requires and find_spec(backend.requires) is None:
            missing[index] = (f"backend {name!r} needs the {backend.requires} package, which is not installed; "
                              f"pip install 'qlorafx[{backend.extra}]', or remove {name!r} from logging.backends")
    return missing


def backend_problems(recipe, sources) -> list[Problem]:
    """For `validate`: each listed backend whose package is missing, at its key and line."""
    return [Problem(f"logging.backends.{i}", message, sources.where(f"logging.backends.{i}"))
            for i, message in missing_packages(recipe.logging.backends).items()]


def require_packages(names: list[str]) -> None:
    """Fail before any weight loads when a listed backend cannot open."""
    missing = missing_packages(names)
    if missing:
        raise BackendUnavailableError("; ".join(f"logging.backends.{i}: {m}" for i, m in missing.items()))


def open_backends(names: list[str], run: RunInfo) -> list[Backend]:
    """Open the named backends in order; if one fails to open, close those already open."""
    opened: list[Backend] = []
    try:
        for name in names:
            opened.append(BACKENDS.get(name)(run))
    except BaseException:
        close_backends(opened, failed=True)
        raise
    return opened


def close_backends(backends: list[Backend], failed: bool = False) -> None:
    for backend in backends:
        backend.close(failed=failed)


@contextmanager
def tracking(names: list[str], run: RunInfo) -> Iterator[list[Backend]]:
    """The named backends, open for the block (main process only); closed as failed on an error."""
    # only the first process tracks (one wandb run, one bar)
    backends = open_backends(names if processes.is_main() else [], run)
    try:
        yield backends
    except BaseException:
        close_backends(backends, failed=True)
        raise
    close_backends(backends)


__all__ = ["BACKENDS", "Backend", "BackendUnavailableError", "RunInfo", "backend_problems", "missing_packages",
           "require_packages", "open_backends", "close_backends", "tracking"]
