"""Helpers for the data tests: run a record through format, render and tokenize; show the mask as runs."""

from __future__ import annotations

from collections import Counter
from typing import Any

from qlorafx.data.collate import IGNORE_INDEX
from qlorafx.data.formats import FORMATS
from qlorafx.data.render import chat_template_of, render_chat, render_text
from qlorafx.data.tokenize import Example, tokenize
from qlorafx.recipe.schema import Recipe


def runs(example: Example, tokenizer) -> list[tuple[bool, str]]:
    """(trained, text) for each maximal run of tokens that carry loss, or do not; a trained token's
    label must be its own id."""
    grouped: list[tuple[bool, list[int]]] = []
    for token, label in zip(example.input_ids, example.labels, strict=True):
        trained = label != IGNORE_INDEX
        assert not trained or label == token, (token, label)
        if grouped and grouped[-1][0] == trained:
            grouped[-1][1].append(token)
        else:
            grouped.append((trained, [token]))
    return [(trained, tokenizer.decode(ids, skip_special_tokens=False)) for trained, ids in grouped]


def encode(format_name: str, record: Any, tokenizer, options=None, max_length: int = 4096,
           train_on_inputs: bool = False) -> list[Example]:
    """The record's examples, as build.py makes them (one per conversation)."""
    fmt = FORMATS.get(format_name)
    options = options if options is not None else fmt.section(path="x")
    examples = []
    for turns in fmt.conversations(record, options, Counter()):
        if fmt.chat:
            rendered = render_chat(turns, tokenizer, chat_template_of(tokenizer, getattr(options, "chat_template", None)))
        else:
            rendered = render_text(turns, tokenizer.eos_token)
        examples.append(tokenize(rendered, tokenizer, max_length, train_on_inputs))
    return examples


def recipe(datasets: list[dict], *, seed: int = 0, micro_batch_size: int = 4, **data: Any) -> Recipe:
    """A validated recipe around these datasets (paths as given: no resolution), from_config model."""
    return Recipe.model_validate({
        "model": {"loader": "from_config", "config": {"model_type": "llama"}},
        "data": {"datasets": datasets, **data},
        "training": {"seed": seed, "micro_batch_size": micro_batch_size},
        "output_dir": "out",
    })
