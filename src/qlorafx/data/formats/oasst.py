"""OpenAssistant message trees (the oasst1/oasst2 ``*_trees`` exports), flattened to conversations.

Input record (abridged)::

    {"message_tree_id": "t1", "tree_state": "ready_for_export",
     "prompt": {"role": "prompter", "text": "Hi", "lang": "en", "replies": [
         {"role": "assistant", "text": "Hello!", "rank": 0, "replies": []},
         {"role": "assistant", "text": "Hey.", "rank": 1, "replies": []}]}}

follows the best-ranked reply (lowest ``rank``) at each level and renders in Guanaco's text
form, as the QLoRA paper did: the user turn ``### Human: Hi### Assistant: `` and the assistant
turn ``Hello!``. ``all_paths: true`` yields every root-to-leaf path instead. Trees not
``ready_for_export`` (unless ``ready_only: false``), messages deleted or failed in review, and
messages outside ``lang`` are dropped, each counted in the preprocess report. For inference a
prompt is rendered as Guanaco's: a text is one human turn, a record ``{"text": "### Human: ..."}``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import Field

from qlorafx.data.formats.base import PLACEHOLDER, DatasetBase, Format, RecordError, register
from qlorafx.data.formats.guanaco import GUANACO, Guanaco, GuanacoDataset


class OasstDataset(DatasetBase):
    format: Literal["oasst"] = "oasst"
    lang: list[str] | None = Field(None, description="Keep messages in these languages only, e.g. [en, es].")
    all_paths: bool = Field(False, description="Every root-to-leaf path, not only the best-ranked one.")
    ready_only: bool = Field(True, description="Keep only trees whose tree_state is ready_for_export.")


def _rank(message: dict[str, Any]) -> float:
    rank = message.get("rank")
    plain = isinstance(rank, (int, float)) and not isinstance(rank, bool)
    return rank if plain else float("inf")  # unranked replies come last


@register
class Oasst(Format):
    name = "oasst"
    version = "1"
    section = OasstDataset

    def _usable(self, message: dict[str, Any], options: OasstDataset, counts: Counter) -> bool:
        if message.get("deleted"):
            counts["deleted messages"] += 1
        elif message.get("review_result") is False:
            counts["messages failed review"] += 1
        elif options.lang is not None and message.get("lang") not in options.lang:
            counts[f"messages not in lang {', '.join(options.lang)}"] += 1
        else:
            return True
        return False

    def _paths(self, message: dict[str, Any], options: OasstDataset, counts: Counter) -> list[list[dict]]:
        """Paths from this message down, each ending on an assistant message."""
        if not isinstance(message, dict) or "text" not in message or "role" not in message:
            raise RecordError(f"format {self.name!r} needs messages with role and text, found {str(message)[:60]!r}")
        if not self._usable(message, options, counts):
            return []
        replies = message.get("replies") or []
        if not isinstance(replies, list) or not all(isinstance(r, dict) for r in replies):
            raise RecordError(f"format {self.name!r} needs 'replies' to be a list of messages, "
                              f"found {str(replies)[:60]!r}")
        replies = [r for r in replies if self._usable(r, options, counts)]
        replies.sort(key=_rank)
        if not options.all_paths:
            replies = replies[:1]
        below = [path for reply in replies for path in self._paths(reply, options, counts)]
        if below:
            return [[message, *path] for path in below]
        return [[message]] if message["role"] == "assistant" else []

    def conversations(self, record, options=OasstDataset(path=""), counts=None):
        counts = Counter() if counts is None else counts
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), dict):
            raise RecordError(f"format {self.name!r} needs a message tree with a 'prompt' message; "
                              f"found {', '.join(map(str, record)) if isinstance(record, dict) else type(record).__name__}")
        if options.ready_only and record.get("tree_state") != "ready_for_export":
            counts["trees not ready_for_export"] += 1
            return []
        conversations = []
        for path in self._paths(record["prompt"], options, counts):
            roles = [m["role"] for m in path]
            if roles != ["prompter", "assistant"] * (len(roles) // 2):
                raise RecordError(f"format {self.name!r}: roles must alternate prompter, assistant; found {', '.join(roles)}")
            conversations.append(GUANACO.turns([(path[i]["text"], path[i + 1]["text"]) for i in range(0, len(path), 2)]))
        if not conversations:
            counts["trees with no usable conversation"] += 1
        return conversations

    def prompt(self, text, options=None):
        return GUANACO.turns([(text, PLACEHOLDER)])

    def prompt_record(self, record, options=None):
        return Guanaco().prompt_record(record, GuanacoDataset(path=""))
