"""The quickstart's dataset, written by the project itself: small facts a tiny model can visibly learn.

Each record asks for an animal's sound or a thing's color, in several phrasings, with and
without an ``input`` field (so both Alpaca templates appear). A model that learns it answers
held-out phrasings with the right fact: "A cow says moo."
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SOUNDS = {
    "cow": "moo", "dog": "woof", "cat": "meow", "duck": "quack", "sheep": "baa", "pig": "oink",
    "horse": "neigh", "owl": "hoot", "lion": "roar", "snake": "hiss", "frog": "croak", "bee": "buzz",
    "mouse": "squeak", "crow": "caw", "goat": "bleat", "wolf": "howl",
}
COLORS = {
    "banana": "yellow", "grass": "green", "sky": "blue", "snow": "white", "coal": "black",
    "tomato": "red", "carrot": "orange", "plum": "purple", "cloud": "grey", "chocolate": "brown",
    "lemon": "yellow", "leaf": "green", "cherry": "red", "ocean": "blue", "milk": "white", "soot": "black",
}
SOUND_ASKS = ["What sound does a {x} make?", "Which sound does the {x} make?", "Tell me the sound a {x} makes."]
COLOR_ASKS = ["What color is a {x}?", "Which color does a {x} have?", "Tell me the color of a {x}."]


def quickstart_records(seed: int = 0) -> list[dict[str, str]]:
    records = []
    for facts, asks, answer, ask_with_input in (
        (SOUNDS, SOUND_ASKS, "A {x} says {y}.", "Name the sound this animal makes."),
        (COLORS, COLOR_ASKS, "A {x} is {y}.", "Name the color of this thing."),
    ):
        for x, y in facts.items():
            output = answer.format(x=x, y=y)
            records += [{"instruction": ask.format(x=x), "input": "", "output": output} for ask in asks]
            records.append({"instruction": ask_with_input, "input": x, "output": output})
    random.Random(seed).shuffle(records)
    return records


def write_jsonl(records: list[dict[str, str]], path: Path) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


if __name__ == "__main__":  # python -m qlorafx.data.synthetic recipes/data/quickstart.jsonl
    import sys

    write_jsonl(quickstart_records(), Path(sys.argv[1]))
