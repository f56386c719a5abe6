"""Which process this is, among those a launcher (torchrun, ``qlorafx train --nproc``) started: the one
place that reads torchrun's RANK, LOCAL_RANK and WORLD_SIZE. A plain single process sets none of them
and is rank 0 of 1. A leaf module (os only): the CLI asks it before torch is imported, and the model
and training layers alike ask it.
"""

from __future__ import annotations

import os


def launched() -> bool:
    """True inside a process a launcher started (torchrun sets LOCAL_RANK in each)."""
    return "LOCAL_RANK" in os.environ


def rank() -> int:
    """This process's index among all processes, on every machine."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's index on its machine: the GPU it trains on."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """The process that writes the run directory, logs and tracks: rank 0."""
    return rank() == 0
