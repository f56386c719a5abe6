"""Packing examples into rows of at most max_length tokens, first-fit-decreasing.

Longest examples first, each into the first row with room (a segment tree over the rows'
free space finds it in log time). The rows then follow the order of the examples they were
given (each row placed by its earliest example, its examples in their order), so a run that does
not shuffle (data.shuffle: false) trains in the order qlorafx drew, not longest first. Rows
remember where each example starts, so the collator can keep packed examples from attending to
each other and restart their positions.

An example's first token is never a target: nothing of its own comes before it. In a row it
follows the previous example's last token, which must not learn to predict it, so its label is
masked (as transformers' DataCollatorWithFlattening does). Alone, the shift drops that label
anyway: a packed example trains on exactly the tokens it trains on alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from qlorafx.data.collate import IGNORE_INDEX


@dataclass(frozen=True)
class Row:
    input_ids: list[int]
    labels: list[int]
    lengths: tuple[int, ...]  # of the examples packed into it, in order

    def as_features(self) -> dict:
        return {"input_ids": self.input_ids, "labels": self.labels, "lengths": list(self.lengths)}


class _FreeSpace:
    """Max-segment tree over the rows' free space; rows open lazily, each with ``capacity``."""

    def __init__(self, max_rows: int, capacity: int):
        self.size = 1
        while self.size < max_rows:
            self.size *= 2
        self.tree = [capacity] * (2 * self.size)

    def first_fit(self, need: int) -> int:
        node = 1
        while node < self.size:
            node = 2 * node if self.tree[2 * node] >= need else 2 * node + 1
        return node - self.size

    def take(self, row: int, amount: int) -> None:
        node = row + self.size
        self.tree[node] -= amount
        while node > 1:
            node //= 2
            self.tree[node] = max(self.tree[2 * node], self.tree[2 * node + 1])


def without_first_target(labels: list[int]) -> list[int]:
    """An example's labels as they go into a row shared with others: its first token no target."""
    return [IGNORE_INDEX, *labels[1:]] if labels else []


def pack(examples: list[dict], max_length: int) -> list[Row]:
    """Rows in the order of their earliest example; every example lands in exactly one row."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    space = _FreeSpace(max(len(examples), 1), max_length)
    rows: list[list[int]] = []
    for i in order:
        need = len(examples[i]["input_ids"])
        row = space.first_fit(need)
        if row == len(rows):
            rows.append([])
        rows[row].append(i)
        space.take(row, need)
    rows = sorted((sorted(row) for row in rows), key=lambda row: row[0])
    return [
        Row([t for i in row for t in examples[i]["input_ids"]],
            [t for i in row for t in without_first_target(examples[i]["labels"])],
            tuple(len(examples[i]["input_ids"]) for i in row))
        for row in rows
    ]
