"""Conversations kept as training data: one JSON object per line, in the ``chat`` format that
``qlorafx train`` reads (``data.datasets: [{path: chats.jsonl, format: chat}]``)::

    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
     "models": ["alpaca"], "edited": false}

``models`` (who answered) and ``edited`` (an answer was corrected by hand) are provenance; the chat
format reads ``messages`` only. Each conversation is read back through the chat format before it
is written, so a line this file gains is one training accepts.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from qlorafx.errors import UserError


class KeepError(UserError):
    """A conversation that cannot be kept, or a file it cannot be kept in."""


class KeptChats:
    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().resolve()
        self._lock = threading.Lock()  # two browser tabs saving at once still write whole lines

    def check_writable(self) -> None:
        """Refuses, before the page starts, a file that could never be appended to."""
        if self.path.is_dir():
            raise KeepError(f"--keep {self.path} is a folder; give a .jsonl file to append conversations to")
        if self.path.suffix != ".jsonl":
            raise KeepError(f"--keep {self.path}: the file must end in .jsonl, the JSON-lines file train reads")
        if not self.path.parent.is_dir():
            raise KeepError(f"--keep {self.path}: the folder {self.path.parent} does not exist; create it first")
        if not os.access(self.path if self.path.exists() else self.path.parent, os.W_OK):
            raise KeepError(f"--keep {self.path}: not writable; choose a file you can write")
        if self.path.is_file():  # appending chat lines to another format's data would break training on it
            self._check_existing_lines()

    def _check_existing_lines(self) -> None:
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError("not a JSON object")
                    check_trainable(record)
                except (ValueError, KeyError, TypeError, KeepError) as err:
                    raise KeepError(f"--keep {self.path}: line {number} is not a chat-format conversation ({err}); "
                                    f"kept conversations would make a file train cannot read: choose a new file "
                                    f"or one this page wrote") from None

    def append(self, messages: list[dict], models: list[str] = (), edited: bool = False) -> int:
        """Appends one conversation; returns its line number in the file."""
        record = {"messages": messages, "models": list(models), "edited": edited}
        check_trainable(record)
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            existing = self.path.read_bytes() if self.path.exists() else b""
            with open(self.path, "a", encoding="utf-8") as f:
                if existing and not existing.endswith(b"\n"):  # a hand-edited file without its last newline
                    f.write("\n")
                    existing += b"\n"
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        return existing.count(b"\n") + 1


def check_trainable(record: dict) -> None:
    """The record as the chat format reads it for training, or why it cannot be kept."""
    from qlorafx.data.formats import FORMATS, RecordError

    try:
        FORMATS.get("chat").conversations(record)
    except RecordError as err:
        raise KeepError(f"this conversation cannot be kept as training data: {err}") from None
    empty = [m["role"] for m in record["messages"] if not m["content"].strip()]
    if empty:
        raise KeepError(f"this conversation cannot be kept as training data: the {empty[0]} message is empty; "
                        f"write it (edit the answer) or start a new conversation")
