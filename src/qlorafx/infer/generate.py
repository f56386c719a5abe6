"""Prompts -> continuations with a finished run's model, rendered exactly as the run trained.

    report.run.trained_run (files only: a finished run, its adapter, its recipe)
    -> infer/prompt.py: the prompt as the run's format renders it, tokenized by the training code
    -> load_model (the quantized base + adapter) -> generate_ids (left-padded batches)
    -> Prompter.decode (up to EOS or the chat template's end of turn) -> text

Everything that can be wrong with the input (the run directory, the sampling options, the
prompts) is refused before any weight loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qlorafx.infer.prompt import Encoded, GenerateError, Prompter, conversation, from_messages
from qlorafx.infer.trained_run import load_quantized
from qlorafx.model.architecture import is_encoder_decoder
from qlorafx.report.run import FinishedRun
from qlorafx.run_files import TOKENIZER_DIR


# ---------------------------------------------------------------------------------------------
# Sampling options: checked before anything loads.


@dataclass(frozen=True)
class Sampling:
    """temperature 0 is greedy decoding (the default, deterministic); above 0 samples, with top_p
    (nucleus; 1 keeps all) and top_k (0 keeps all) applied to the tempered distribution."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def problems(self) -> list[str]:
        found = []
        if not self.max_new_tokens >= 1:
            found.append(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if not self.temperature >= 0 or self.temperature == float("inf"):
            found.append(f"--temperature must be 0 (greedy) or a positive number, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            found.append(f"--top-p must be in (0, 1] (1 keeps every token), got {self.top_p}")
        if not self.top_k >= 0:
            found.append(f"--top-k must be 0 (off) or a positive count, got {self.top_k}")
        if self.seed < 0:
            found.append(f"--seed must be 0 or positive, got {self.seed}")
        return found

    def check(self) -> "Sampling":
        found = self.problems()
        if found:
            raise GenerateError("; ".join(found))
        return self

    def generate_kwargs(self) -> dict[str, Any]:
        """Every decoding option given explicitly, so no generation_config.json default (top_k 50) leaks in."""
        if self.greedy:
            return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}


# ---------------------------------------------------------------------------------------------
# The model: quantized base + adapter, as trained.


def load_tokenizer(run: FinishedRun):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run.path / TOKENIZER_DIR)
    if tokenizer.pad_token is None:  # as in training: padding is masked out, so EOS is a safe pad
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_model(run: FinishedRun):
    """The run's base, quantized as the recipe says, with the adapter on top, in eval mode."""
    return load_quantized(run)


def generate_ids(model, batch: list[list[int]], pad_token_id: int, stop_ids: list[int], sampling: Sampling) -> list[list[int]]:
    """New token ids for each prompt, the prompts left-padded into one batch; each row ends at its
    first stop token (kept), so the padding that fills a finished row in a batch is not returned.
    An encoder-decoder model returns only its decoder's tokens, after the start token."""
    import torch

    width = max(len(ids) for ids in batch)
    input_ids = torch.tensor([[pad_token_id] * (width - len(ids)) + ids for ids in batch], device=model.device)
    attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=model.device)
    with torch.no_grad():
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                max_new_tokens=sampling.max_new_tokens, pad_token_id=pad_token_id,
                                eos_token_id=stop_ids, use_cache=True, **sampling.generate_kwargs())
    skip = 1 if is_encoder_decoder(model.config) else width
    rows = [row[skip:].tolist() for row in output]
    return [row[:next((i + 1 for i, token in enumerate(row) if token in stop_ids), len(row))] for row in rows]


class Generator:
    """A run ready to answer: tokenizer and prompter at once, the model on the first answer (so
    every prompt is rendered, and refused if it must be, before any weight loads)."""

    def __init__(self, run: FinishedRun, sampling: Sampling, tokenizer=None, model=None):
        self.run, self.sampling = run, sampling.check()
        self.tokenizer = tokenizer or load_tokenizer(run)
        self.prompter = Prompter(run, self.tokenizer)
        self._model = model
        self._seeded = False

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(self.run)
        return self._model

    def context_length(self) -> int:
        """Positions the model has (max_position_embeddings or its family's name for it); the
        run's data.max_length where the config names none."""
        config = self.model.config
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            if isinstance(getattr(config, name, None), int):
                return getattr(config, name)
        return self.run.recipe.data.max_length

    def encode(self, prompt: str | dict, history: list = (), system: str | None = None) -> Encoded:
        """A prompt (text or record), after earlier (prompt, answer) exchanges, as the run trained."""
        return self.prompter.encode(conversation(self.run.dataset, prompt, history, system))

    def encode_messages(self, messages: list[dict]) -> Encoded:
        """OpenAI chat messages ({role, content}, ending with the user's) as the run trained."""
        return self.prompter.encode(from_messages(self.run.dataset, messages))

    def answer(self, encoded: list[Encoded], batch_size: int = 8) -> list[str]:
        """One answer per prompt, in order; the prompts go to the model batch_size at a time."""
        if not self._seeded:  # once: later answers continue the same random stream
            from transformers import set_seed

            self.model  # loaded first: loading draws random numbers (peft initializes LoRA before loading it)

            set_seed(self.sampling.seed)
            self._seeded = True
        answers = []
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start:start + batch_size]
            new = generate_ids(self.model, [e.ids for e in chunk], self.tokenizer.pad_token_id,
                               self.prompter.stop_ids, self.sampling)
            answers += [self.prompter.decode(ids, e) for ids, e in zip(new, chunk)]
        return answers


def generate_text(model, tokenizer, prompt: str | list[int], max_new_tokens: int) -> str:
    """Greedy continuation of a prompt given as text or as token ids (ids exactly as trained)."""
    import torch

    if isinstance(prompt, str):
        inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
    else:
        ids = torch.tensor([prompt], device=model.device)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    model.train(was_training)
    skip = 1 if is_encoder_decoder(model.config) else inputs["input_ids"].shape[1]  # the decoder start, or the prompt
    return tokenizer.decode(output[0, skip:], skip_special_tokens=True)
