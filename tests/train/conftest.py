"""One tiny training run with every backend that writes files (jsonl, tensorboard, wandb offline),
shared by the backend tests and the end-of-run report test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qlorafx.recipe.load import load_recipe
from tests.train.tiny import tiny_recipe

OVERRIDES = ["logging.backends=[jsonl, tensorboard, wandb]", "logging.sample_max_new_tokens=0",
             "logging.wandb={project: qlorafx-tests, run_name: tiny-tracked, tags: [test, tiny], mode: offline}"]


@pytest.fixture(scope="session")  # one training run for every test that reads one
def tracked(tmp_path_factory):
    """(loaded recipe, run dir, wandb dir, metrics.jsonl records); wandb offline, no network."""
    tmp = tmp_path_factory.mktemp("tracked")
    wandb_dir = tmp / "wandb-dir"
    wandb_dir.mkdir()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_MODE", "offline")
        env.setenv("WANDB_DIR", str(wandb_dir))
        env.setenv("WANDB_CONFIG_DIR", str(tmp / "wandb-config"))
        env.setenv("WANDB_CACHE_DIR", str(tmp / "wandb-cache"))
        env.delenv("WANDB_API_KEY", raising=False)
        from qlorafx.finetune import train

        loaded = load_recipe(tiny_recipe(tmp), OVERRIDES)
        train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)
    run_dir = Path(loaded.recipe.output_dir)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return loaded, run_dir, wandb_dir, records


# Data-parallel runs compared step by step (test_distributed.py, test_fsdp.py), with the defaults (packing
# and shuffling on): the processes split each global batch of the one seeded order
PARALLEL = ["training.max_steps=12", "logging.every=2", "logging.sample_max_new_tokens=0",
            "logging.backends=[jsonl]", "data.val_size=16"]


def _parallel_run(folder: Path, *extra: str) -> tuple[Path, object]:
    from tests.cli.test_cli import qlorafx

    scratch = folder / "tmp"  # the processes' temporary files (TMPDIR): the tests check none is left behind
    scratch.mkdir()
    done = qlorafx("train", tiny_recipe(folder), *PARALLEL, *extra, timeout=600, env={"TMPDIR": str(scratch)})
    assert done.returncode == 0, [line for line in done.stderr.splitlines() if "error" in line.lower()][:10] or done.stderr[-2000:]
    return folder / "run", done


@pytest.fixture(scope="session")
def one_process(tmp_path_factory):
    """The reference: one process, micro-batch 8. (run dir, finished process)"""
    return _parallel_run(tmp_path_factory.mktemp("one"), "training.micro_batch_size=8")


@pytest.fixture(scope="session")
def two_processes(tmp_path_factory):
    """One machine, two processes of micro-batch 4 (DDP): the same global batch."""
    return _parallel_run(tmp_path_factory.mktemp("two"), "training.micro_batch_size=4", "--nproc", "2")


def losses_by_step(run_dir: Path) -> tuple[dict[int, float], dict[int, float]]:
    """Training and evaluation losses of a run, by step."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return ({r["step"]: r["loss"] for r in records if "loss" in r},
            {r["step"]: r["eval_loss"] for r in records if "eval_loss" in r})
