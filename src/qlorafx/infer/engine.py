"""One 4-bit base, many finished runs' adapters on it, answering requests in mixed batches.

    Engine.load([run_dir, ...])      the base once, quantized as the runs trained it; each adapter by name
    engine.encode_chat(name, msgs)   messages -> prompt ids, with that adapter's run's format and template
    engine.encode_prompt(name, text) a prompt, as `qlorafx generate --prompt` renders it
    engine.submit(name, encoded, sampling, stop=(), seed=None) -> Stream   (iterate it; cancel it)
    engine.load_adapter(run_dir, name) / engine.unload_adapter(name) / engine.close()

The base is served too, under its own name (the hub id or folder name; ``base_model`` for a base
built from a config): a prompt is continued as plain text, messages need the tokenizer's template.
Runs whose bases differ, or that quantize the same base differently, are refused before any weight
loads: one process serves one base.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qlorafx.errors import UserError
from qlorafx.infer.batching import BASE, Scheduler, Stream
from qlorafx.infer.generate import Sampling, load_tokenizer
from qlorafx.infer.prompt import Encoded, GenerateError
from qlorafx.infer.renderers import AdapterRenderer, BaseRenderer
from qlorafx.model.adapter_files import CONFIG as ADAPTER_CONFIG
from qlorafx.model.loaders import FROM_CONFIG
from qlorafx.report.run import trained_run
from qlorafx.run_files import ADAPTER_DIR


class EngineError(UserError):
    """Runs that cannot be served together, or a name that is not served."""


class UnknownModel(EngineError):
    """A model name that is neither the base nor a loaded adapter."""


@dataclass(frozen=True)
class Served:
    """A model the engine answers as: the base, or one run's adapter on it."""

    name: str
    kind: str  # "base" | "adapter"
    renderer: Any
    run: Any = None  # FinishedRun of an adapter
    peft_name: str = BASE  # the adapter's name inside the peft model
    dora: bool = False

    def lineage(self) -> dict:
        if self.run is None:
            return {"kind": "base"}
        recipe = self.run.recipe
        return {"kind": "adapter", "run_dir": str(self.run.path), "base": self.run.base,
                "format": self.run.dataset.format, "description": recipe.description,
                "lora": {"r": recipe.lora.r, "alpha": recipe.lora.alpha, "use_dora": self.dora},
                "quantization": recipe.quantization.model_dump(mode="json")}


# ---------------------------------------------------------------------------------------------
# Which runs can share one base (files only).


def base_identity(run) -> tuple:
    """What makes two runs' bases the same: the hub id and revision, the same local folder, or for
    a base built from a config (each run keeps its own copy) the same weights, byte for byte."""
    model = run.recipe.model
    if model.loader == FROM_CONFIG:
        digest = hashlib.sha256()
        for path in sorted(Path(run.base).glob("*.safetensors")):
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        return ("weights", digest.hexdigest())
    path = Path(model.path)
    if path.is_dir():
        return ("folder", str(path.resolve()))
    return ("hub", model.path, model.revision)


def _quantization(run) -> dict:
    return run.recipe.quantization.model_dump(mode="json")


def check_same_base(runs: list) -> None:
    first = runs[0]
    for run in runs[1:]:
        if base_identity(run) != base_identity(first):
            raise EngineError(f"{run.path} was trained on the base {run.base}, {first.path} on {first.base}: one "
                              f"server loads one base; serve these runs from separate `qlorafx serve` processes")
        if _quantization(run) != _quantization(first):
            raise EngineError(f"{run.path} quantizes its base as {_quantization(run)}, {first.path} as "
                              f"{_quantization(first)}: the base is loaded once, so the runs must quantize it alike; "
                              f"serve them from separate processes")


def check_no_base_biases(run) -> None:
    """An adapter trained with lora.bias 'all' or 'lora_only' carries biases of the BASE layers:
    peft loads them into the one shared base, so the base and every other adapter would answer
    with them (in a mixed batch too: adapter_names picks the LoRA weights, not the biases)."""
    from qlorafx.model.adapter_files import tensor_shapes

    config = _adapter_config(run)
    if (config.get("bias") or "none") == "none":
        return
    kept = config.get("modules_to_save") or []
    carried = [name for name in tensor_shapes(run.path / ADAPTER_DIR)
               if name.endswith(".bias") and "lora_" not in name
               and not any(f".{module}." in f".{name}" for module in kept)]
    if carried:
        raise EngineError(f"{run.path} trained the base's biases (lora.bias: {config['bias']}, e.g. {carried[0]}); "
                          f"one server shares one base between every model, so these biases would change the base's "
                          f"and the other adapters' answers; use `qlorafx generate`/`chat` for this run, or retrain "
                          f"it with lora.bias: none to serve it")


def base_name(run) -> str:
    model = run.recipe.model
    if model.loader == FROM_CONFIG:
        return "base_model"
    return Path(model.path).name if Path(model.path).is_dir() else model.path


def _adapter_config(run) -> dict:
    import json

    return json.loads((run.path / ADAPTER_DIR / ADAPTER_CONFIG).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------


class Engine:
    def __init__(self, model, tokenizer, runs: dict[str, Any], max_batch: int = 16, gather_s: float = 0.05):
        """Use Engine.load; this takes a peft model whose first adapter ("default") is runs' first."""
        first = next(iter(runs.values()))
        self.model, self._base_run = model, first
        self.base = Served(base_name(first), "base", BaseRenderer(tokenizer, base_name(first)))
        self._served: dict[str, Served] = {}
        self._counter = 0
        self._widest: dict[int, int] = {}  # id(tokenizer) -> characters its widest token spells
        self._admin = threading.Lock()  # one load or unload at a time
        self.scheduler = Scheduler(model, max_batch=max_batch, gather_s=gather_s)
        for index, (name, run) in enumerate(runs.items()):
            self._add(name, run, peft_name="default" if index == 0 else None)
        self.context_length = _context_length(model.config, first)

    @classmethod
    def load(cls, run_dirs: list, names: list[str | None] | None = None, *, max_batch: int = 16,
             gather_s: float = 0.05) -> "Engine":
        """Every check first (finished runs, one base quantized alike, unique names), then the base
        once and each adapter onto it."""
        runs = check_runs(run_dirs, names)
        from qlorafx.infer.trained_run import load_quantized
        from qlorafx.train.quiet import quiet_libraries

        quiet_libraries()
        first = next(iter(runs.values()))
        tokenizer = load_tokenizer(first)
        model = load_quantized(first)  # the first adapter, as peft's "default"
        return cls(model, tokenizer, runs, max_batch=max_batch, gather_s=gather_s)

    # -- what is served -----------------------------------------------------------------------

    def models(self) -> list[Served]:
        return [self.base, *self._served.values()]

    def get(self, name: str) -> Served:
        if name == self.base.name:
            return self.base
        served = self._served.get(name)
        if served is None:
            known = ", ".join(s.name for s in self.models())
            raise UnknownModel(f"the model {name!r} does not exist; this server serves: {known}")
        return served

    def _add(self, name: str, run, peft_name: str | None = None) -> Served:
        if peft_name is None:
            self._counter += 1
            peft_name = f"adapter{self._counter}"  # peft's name: a served name may hold '.', which torch forbids
            self.model.load_adapter(str(run.path / ADAPTER_DIR), adapter_name=peft_name, is_trainable=False)
        self.model.eval()
        dora = bool(_adapter_config(run).get("use_dora"))
        served = Served(name, "adapter", AdapterRenderer(run, load_tokenizer(run)), run, peft_name, dora)
        self._served[name] = served
        return served

    def load_adapter(self, run_dir, name: str | None = None) -> Served:
        """Another finished run's adapter, on the same base, while serving."""
        with self._admin:
            run = trained_run(run_dir)
            name = name or Path(run_dir).name
            if name in self._served or name == self.base.name:
                raise EngineError(f"a model named {name!r} is already served; unload it first or choose another name")
            check_same_base([self._base_run, run])
            check_no_base_biases(run)
            from qlorafx.infer.trained_run import check_adapter_fits

            check_adapter_fits(run)
            with self.scheduler.model_lock:
                return self._add(name, run)

    def unload_adapter(self, name: str) -> None:
        with self._admin:
            if name == self.base.name:
                raise EngineError(f"{name!r} is the base model, which cannot be unloaded")
            served = self.get(name)
            del self._served[name]  # new requests for it are refused from here on
            self.scheduler.fail_adapter(served.peft_name, f"the adapter {name!r} was unloaded")
            with self.scheduler.model_lock:
                self.model.delete_adapter(served.peft_name)

    # -- answering ----------------------------------------------------------------------------

    def encode_chat(self, name: str, messages) -> Encoded:
        served = self.get(name)
        if isinstance(messages, list):
            self._refuse_long(served, sum(len(m["content"]) for m in messages
                                          if isinstance(m, dict) and isinstance(m.get("content"), str)))
        return served.renderer.encode_chat(messages)

    def encode_prompt(self, name: str, prompt: str) -> Encoded:
        served = self.get(name)
        self._refuse_long(served, len(prompt))
        return served.renderer.encode_prompt(prompt)

    def _refuse_long(self, served: Served, characters: int) -> None:
        """A text that cannot fit in any tokenization is refused before it is tokenized: a
        megabyte prompt takes seconds of CPU to tokenize only to be refused for its length."""
        if self._base_run.encoder_decoder:
            return  # the encoder's input has no position limit to hold it to
        tokenizer = served.renderer.tokenizer
        widest = self._widest.get(id(tokenizer))
        if widest is None:  # the most characters one token can stand for (its spelling, markers included)
            widest = max(len(token) for token in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
            self._widest[id(tokenizer)] = widest
        if characters > self.context_length * widest:
            raise GenerateError(f"the prompt is {characters} characters, so at least {characters // widest} tokens, "
                                f"but the model has {self.context_length} positions; shorten the prompt")

    def room(self, encoded: Encoded) -> int:
        """New tokens the model has positions for after this prompt."""
        return self.context_length - (0 if self._base_run.encoder_decoder else len(encoded.ids))

    def submit(self, name: str, encoded: Encoded, sampling: Sampling, stop: tuple[str, ...] = (),
               seed: int | None = None) -> Stream:
        served = self.get(name)
        sampling.check()
        if sampling.max_new_tokens > self.room(encoded):
            raise GenerateError(f"the prompt is {len(encoded.ids)} tokens and {sampling.max_new_tokens} new tokens "
                                f"were asked for, but the model has {self.context_length} positions; ask for at "
                                f"most {max(self.room(encoded), 0)} new tokens or shorten the prompt")
        stream = Stream(name, served.peft_name, served.renderer, encoded, sampling, tuple(stop), seed, served.dora)
        return self.scheduler.submit(stream)

    def close(self) -> None:
        self.scheduler.close()


def check_runs(run_dirs: list, names: list[str | None] | None = None) -> dict[str, Any]:
    """name -> finished run, every run on the same base quantized alike; files only."""
    if not run_dirs:
        raise EngineError("give at least one run directory to serve")
    names = list(names or [None] * len(run_dirs))
    runs: dict[str, Any] = {}
    for run_dir, name in zip(run_dirs, names):
        run = trained_run(run_dir)
        name = name or Path(run_dir).resolve().name
        if name in runs:
            raise EngineError(f"two runs are named {name!r} ({runs[name].path} and {run.path}); name them apart "
                              f"with NAME=RUN_DIR")
        check_no_base_biases(run)
        runs[name] = run
    check_same_base(list(runs.values()))
    first = next(iter(runs.values()))
    if base_name(first) in runs:
        raise EngineError(f"an adapter is named {base_name(first)!r}, the base model's name; name it apart with "
                          f"NAME=RUN_DIR")
    return runs


def _context_length(config, run) -> int:
    """Positions the model has (max_position_embeddings or its family's name for it); the run's
    data.max_length where the config names none (T5)."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    return run.recipe.data.max_length
