"""Tiny finished runs (4-bit Llama, quickstart data, 8 steps), each trained once per session and
shared by the tests in tests/infer, tests/cli and tests/serve.

``finished_run`` trains on the alpaca records; ``finished_chat_run`` on the same records as OpenAI
chat messages with the chatml template. Both build their base from the same config and seed, so
their bases are the same weights: one server can serve both adapters on one base."""

from __future__ import annotations

import json
from pathlib import Path

from qlorafx.recipe.load import load_recipe
from tests.train.tiny import QUICKSTART_DATA, tiny_recipe

OVERRIDES = ["training.max_steps=8", "logging.backends=[jsonl]", "logging.sample_max_new_tokens=8"]
_RUNS: dict[str, Path] = {}


def _train(tmp_path_factory, key: str, overrides: list[str], prepare=None) -> Path:
    if key not in _RUNS:
        from qlorafx.finetune import train

        tmp = tmp_path_factory.mktemp(f"{key}-run")
        extra = prepare(tmp) if prepare else []
        loaded = load_recipe(tiny_recipe(tmp), [*OVERRIDES, *overrides, *extra])
        train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)
        _RUNS[key] = Path(loaded.recipe.output_dir)
    return _RUNS[key]


def finished_run(tmp_path_factory) -> Path:
    """The alpaca run directory (trained on first use)."""
    return _train(tmp_path_factory, "run", [])


def chat_messages(record: dict) -> dict:
    prompt = record["instruction"] + (f"\n{record['input']}" if record["input"] else "")
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": record["output"]}]}


def finished_chat_run(tmp_path_factory) -> Path:
    """A chat (chatml) run on the same base as finished_run's (trained on first use)."""
    def prepare(tmp: Path) -> list[str]:
        data = tmp / "chat.jsonl"
        records = [json.loads(line) for line in QUICKSTART_DATA.read_text().splitlines()]
        data.write_text("".join(json.dumps(chat_messages(r)) + "\n" for r in records))
        return [f"data.datasets=[{{path: {data}, format: chat, chat_template: chatml}}]",
                f"output_dir={tmp / 'chat-run'}"]

    return _train(tmp_path_factory, "chat", [], prepare)


_LOADED: dict[str, object] = {}


def served_engine(tmp_path_factory):
    """One Engine serving both runs' adapters (as "alpaca" and "chat") on their base, loaded once."""
    if "engine" not in _LOADED:
        from qlorafx.infer.engine import Engine

        _LOADED["engine"] = Engine.load([finished_run(tmp_path_factory), finished_chat_run(tmp_path_factory)],
                                        ["alpaca", "chat"], gather_s=0.005)  # tests that batch hold the lock
    return _LOADED["engine"]


def generators(tmp_path_factory) -> dict:
    """What `qlorafx generate` answers with, per run ("alpaca", "chat"): each run's model loaded alone."""
    if "generators" not in _LOADED:
        from qlorafx.infer import generate as g
        from qlorafx.report.run import trained_run

        runs = {"alpaca": finished_run(tmp_path_factory), "chat": finished_chat_run(tmp_path_factory)}
        _LOADED["generators"] = {name: g.Generator(trained_run(path), g.Sampling(max_new_tokens=12))
                                 for name, path in runs.items()}
    return _LOADED["generators"]
