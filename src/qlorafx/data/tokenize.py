"""Rendered text -> (input_ids, labels): the one place where text meets the tokenizer.

The whole text is tokenized once, so every boundary tokenizes exactly as the same text will
at inference. The loss mask comes from character offsets: a token carries loss when its
characters overlap an assistant span (or always, with train_on_inputs). Special tokens the
tokenizer adds itself (BOS) have empty offsets and never carry loss.
"""

from __future__ import annotations

from dataclasses import dataclass

from qlorafx.data.collate import IGNORE_INDEX
from qlorafx.data.render import Rendered


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)

    @property
    def prompt_ids(self) -> list[int]:
        """The tokens before the first one that carries loss: the inference prompt, as trained."""
        first = next((i for i, label in enumerate(self.labels) if label != IGNORE_INDEX), len(self.labels))
        return self.input_ids[:first]

    def as_features(self) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids, "labels": self.labels}


def tokenize(rendered: Rendered, tokenizer, max_length: int, train_on_inputs: bool, drop_long: bool = False) -> Example | None:
    """The example, truncated to max_length; None when it is too long and drop_long is set."""
    encoded = tokenizer(rendered.text, return_offsets_mapping=True, add_special_tokens=rendered.add_special_tokens)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    if len(ids) > max_length and drop_long:
        return None
    labels = []
    for token_id, (start, end) in zip(ids, offsets):
        is_text = end > start
        in_span = is_text and any(start < span_end and end > span_start for span_start, span_end in rendered.spans)
        labels.append(token_id if is_text and (train_on_inputs or in_span) else IGNORE_INDEX)
    return Example(list(ids[:max_length]), labels[:max_length], truncated=len(ids) > max_length)
