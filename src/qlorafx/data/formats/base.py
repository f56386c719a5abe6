"""What every dataset format produces, and the recipe section every dataset shares.

A format is one object that serves training and inference alike, so both see the same tokens:

- training: ``conversations(record)`` turns one record into conversations (lists of turns,
  each a role and its text);
- inference: ``prompt(text)`` turns a user message, and ``prompt_record(record)`` a record
  without its response, into one exchange whose assistant turn is ``PLACEHOLDER``; ``system``
  renders a system message where the format has one. generate, chat (and the server) build
  every prompt, history included, from these three.

A format knows nothing of tokenizers. ``assistant`` turns are what the model learns to write;
``system`` and ``user`` turns are context, masked out of the loss unless the recipe says
train_on_inputs. Text formats (Alpaca, Guanaco, ...) put their template's decorations into
the turns' text; chat formats leave the text bare and are rendered by a chat template.
Adding a format: its own file (a ``Format`` subclass marked ``@register``, and its ``DatasetBase``
section) and one line in ``data/formats/__init__.py`` that imports it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from qlorafx.errors import UserError
from qlorafx.section import Section
from qlorafx.registry import Registry

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Turn:
    role: Role
    text: str


Conversation = list[Turn]

# The response an inference prompt is rendered with: tokens that touch it are left out, so its
# first token decides where the prompt ends. A word-initial letter, as most responses start:
# every BPE vocabulary has it with a leading space (GPT-2's "ĠA", SentencePiece's "▁A").
PLACEHOLDER = "A"


class RecordError(UserError):
    """A record lacks what its format needs; the message names the field and the format."""


class DatasetBase(Section):
    """Keys every dataset entry has; each format's section adds its own options."""

    path: str = Field(description="A .json, .jsonl, .csv or .parquet file, a folder of them, or a hub dataset id.")
    format: str = Field(description="Dataset format (registry key); each format's section narrows it to its name.")
    weight: float = Field(1.0, gt=0, description="Scale this dataset's example count: 0.5 keeps half, 2 repeats it twice.")
    max_examples: int | None = Field(None, gt=0, description="Use at most this many examples (before weight).")
    split: str = Field("train", description="Split of a hub dataset.")


class Format:
    """Base of the registered formats: a name, a version, the section with its options, and how
    a record renders for training and a prompt for inference."""

    name: ClassVar[str]
    version: ClassVar[str]  # bump when rendering changes: cached tokenizations are then rebuilt
    chat: ClassVar[bool] = False  # rendered by a chat template rather than joined as text
    dialogue: ClassVar[bool] = True  # False: plain text with no turns to chat in (completion)
    section: ClassVar[type[DatasetBase]]

    def conversations(self, record: Any, options: DatasetBase, counts: Counter) -> list[Conversation]:
        """Training: the record's conversations (none if filtered out, after counting why in ``counts``)."""
        raise NotImplementedError

    def prompt(self, text: str, options: DatasetBase) -> Conversation:
        """Inference: the exchange whose user message is ``text``, ending in an assistant turn ``PLACEHOLDER``."""
        raise NotImplementedError

    def prompt_record(self, record: dict, options: DatasetBase) -> Conversation:
        """Inference: a record of this format without its response, as ``prompt`` renders a text."""
        raise NotImplementedError

    def system(self, text: str, options: DatasetBase) -> Conversation:
        """Inference: the turns a system message becomes; text formats trained none, so they refuse it."""
        raise RecordError(f"the run trained on format {self.name!r}, which has no system turn; leave the system "
                          f"message out or put its text into the user message")

    def one(self, record: dict, options: DatasetBase) -> Conversation:
        """The record's one conversation: what a prompt given as a record must render to."""
        conversations = self.conversations(record, options, Counter())
        if len(conversations) != 1:
            raise RecordError(f"the record gives {len(conversations)} conversations; give one prompt per record")
        return conversations[0]


FORMATS: Registry[Format] = Registry("dataset format")


def register(cls: type[Format]) -> type[Format]:
    """Class decorator: registers the format's one instance under its name."""
    FORMATS.register(cls.name)(cls())
    return cls


def require_text(record: Any, field: str, format_name: str, optional: bool = False) -> str:
    """The record's string field, or a RecordError naming what is wrong."""
    if not isinstance(record, dict):
        raise RecordError(f"format {format_name!r} expects each record to be an object, found {type(record).__name__}")
    if field not in record or record[field] is None:
        if optional:
            return ""
        found = ", ".join(sorted(map(str, record))) or "no fields"
        raise RecordError(f"format {format_name!r} needs field {field!r}; the record has {found}")
    value = record[field]
    if not isinstance(value, str):
        raise RecordError(f"format {format_name!r} needs field {field!r} to be text, found {type(value).__name__}")
    return value


def require_list(record: Any, field: str, format_name: str) -> list:
    if not isinstance(record, dict) or not isinstance(record.get(field), list):
        found = type(record.get(field)).__name__ if isinstance(record, dict) and field in record else "nothing"
        raise RecordError(f"format {format_name!r} needs field {field!r} to be a list, found {found}")
    return record[field]


def check_alternation(turns: Conversation, format_name: str) -> None:
    """After an optional system turn, user and assistant alternate, starting with user, ending with assistant."""
    roles = [t.role for t in turns if t.role != "system"]
    if any(t.role == "system" for t in turns[1:]):
        raise RecordError(f"format {format_name!r}: a system turn may only come first")
    expected = ["user", "assistant"] * (len(roles) // 2 + 1)
    if not roles or roles != expected[: len(roles)] or roles[-1] != "assistant":
        raise RecordError(
            f"format {format_name!r}: roles must alternate user, assistant, ... and end with assistant; "
            f"found {', '.join(roles) or 'no turns'}"
        )
