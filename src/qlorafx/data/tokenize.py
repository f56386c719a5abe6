"""Rendered text -> (input_ids, labels): the one place where text meets the tokenizer.

Causal LMs: the whole text is tokenized once, so every boundary tokenizes exactly as the same
text will at inference. The loss mask comes from character offsets: a token carries loss when
its characters overlap an assistant span (or always, with train_on_inputs). Special tokens the
tokenizer adds itself (BOS) have empty offsets and never carry loss.

Encoder-decoder models (T5): each assistant turn is one example. The text before it (earlier
turns included) is the encoder's input, tokenized as a whole with the tokenizer's special tokens
(T5 appends </s>); the turn itself, with the end marker the rendering put after it, is the
decoder's target, every token of which carries loss. Generation feeds the encoder the same
prompt text through the same function. An input longer than max_length keeps its END: the latest
user turn, the one the target answers (a target keeps its start).
"""

from __future__ import annotations

from dataclasses import dataclass

from qlorafx.data.collate import IGNORE_INDEX
from qlorafx.data.render import Rendered


@dataclass(frozen=True)
class Example:
    input_ids: list[int]  # an encoder-decoder model's encoder input
    labels: list[int]  # an encoder-decoder model's decoder target, not aligned with input_ids
    truncated: bool = False
    encoder_decoder: bool = False

    @property
    def length(self) -> int:
        """Tokens the model reads: encoder input and decoder target together for an encoder-decoder."""
        return len(self.input_ids) + (len(self.labels) if self.encoder_decoder else 0)

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)

    @property
    def prompt_ids(self) -> list[int]:
        """The tokens before the first one that carries loss: the inference prompt, as trained."""
        if self.encoder_decoder:
            return self.input_ids
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


def _end_of(text: str, tokenizer, max_length: int, add_special_tokens: bool) -> list[int]:
    """The text's last tokens, with the tokenizer's special tokens kept where it puts them (T5's
    closing </s>): its own truncation, from the left."""
    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"
    try:
        return tokenizer(text, add_special_tokens=add_special_tokens, truncation=True, max_length=max_length)["input_ids"]
    finally:
        tokenizer.truncation_side = side


def tokenize_encoder_decoder(rendered: Rendered, tokenizer, max_length: int, drop_long: bool = False) -> list[Example]:
    """One example per assistant turn; input and target each truncated to max_length (the input
    keeps its end, the target its start), or the example left out when either is longer and
    drop_long is set."""
    examples = []
    for start, end in rendered.spans:
        source = tokenizer(rendered.text[:start], add_special_tokens=rendered.add_special_tokens)["input_ids"]
        target = tokenizer(rendered.text[start:end], add_special_tokens=False)["input_ids"]
        too_long = len(source) > max_length or len(target) > max_length
        if too_long and drop_long:
            continue
        if len(source) > max_length:
            source = _end_of(rendered.text[:start], tokenizer, max_length, rendered.add_special_tokens)
        examples.append(Example(list(source), list(target[:max_length]), too_long, encoder_decoder=True))
    return examples
