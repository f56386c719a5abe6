"""Reading one YAML file safely, remembering the line of every key.

Only YAML's plain data types load (the safe loader): a tag that would build a Python object
is refused, not run. Duplicate keys, which PyYAML would silently resolve to the last one,
are problems. A document whose aliases expand past MAX_NODES (a "billion laughs" bomb) is
refused before anything expands it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qlorafx.errors import Problem

MAX_NODES = 100_000
MAX_BYTES = 1_000_000
MAX_DIGITS = 4_000  # Python refuses to read integers past 4,300 digits
INT_TAG = "tag:yaml.org,2002:int"


@dataclass
class YamlSource:
    path: Path
    data: dict[str, Any]
    lines: dict[str, int] = field(default_factory=dict)  # dotted path -> 1-based line
    atomic: set[str] = field(default_factory=set)  # paths holding lists or scalars (replaced whole on merge)

    def where(self, dotted: str) -> str:
        return f"{self.path}:{self.lines[dotted]}" if dotted in self.lines else str(self.path)


class _Walk:
    """Collects key lines and problems from a composed node tree, counting nodes as it goes."""

    def __init__(self, path: Path):
        self.path, self.lines, self.atomic, self.problems, self.nodes = path, {}, set(), [], 0
        self.unreadable = False  # holds a value the loader cannot construct

    def check_number(self, node: yaml.Node, dotted: str) -> None:
        if isinstance(node, yaml.ScalarNode) and node.tag == INT_TAG and len(node.value) > MAX_DIGITS:
            self.unreadable = True
            self.problems.append(Problem(dotted, f"a number of {len(node.value):,} digits: too long to read; "
                                                 "write a smaller number", f"{self.path}:{node.start_mark.line + 1}"))

    def visit(self, node: yaml.Node, dotted: str) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise OverflowError
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                child = f"{dotted}.{key}" if dotted else key
                if key in seen:
                    self.problems.append(Problem(child, "duplicate key: it is set twice in this mapping; keep one",
                                                 f"{self.path}:{key_node.start_mark.line + 1}"))
                seen.add(key)
                self.check_number(key_node, child)
                self.lines[child] = key_node.start_mark.line + 1
                self.visit(value_node, child)
        else:
            if dotted:
                self.atomic.add(dotted)
            self.check_number(node, dotted)
            if isinstance(node, yaml.SequenceNode):
                for index, item in enumerate(node.value):
                    child = f"{dotted}.{index}"
                    self.lines[child] = item.start_mark.line + 1
                    self.visit(item, child)


def _yaml_problem(path: Path, err: yaml.YAMLError) -> Problem:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"{path}:{mark.line + 1}" if mark else str(path)
    text = str(getattr(err, "problem", None) or err)
    if isinstance(err, yaml.constructor.ConstructorError) and "tag" in text:
        tag = text.split("tag", 1)[1].strip(" '")
        return Problem("", f"YAML tag {tag} is not allowed: recipes hold plain data only "
                           "(strings, numbers, booleans, lists, mappings); remove the tag", where)
    return Problem("", f"not valid YAML: {text}; check the indentation and quoting on this line", where)


def read_yaml(path: Path) -> tuple[YamlSource | None, list[Problem]]:
    """The file's data and key lines, or None and the problems that stop it loading."""
    if not path.is_file():
        return None, [Problem("", "file not found" if not path.exists() else "not a file", str(path))]
    raw = path.read_bytes()
    if len(raw) > MAX_BYTES:
        return None, [Problem("", f"file is {len(raw):,} bytes; a recipe is at most {MAX_BYTES:,}", str(path))]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, [Problem("", f"not UTF-8 text (byte {err.start}); save the recipe as UTF-8", str(path))]
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        walk = _Walk(path)
        if root is not None:
            walk.visit(root, "")
        if walk.unreadable:
            return None, walk.problems
        data = yaml.safe_load(text)
    except (OverflowError, RecursionError):
        return None, [Problem("", f"more than {MAX_NODES:,} YAML nodes (aliases expanding?); "
                                  "a recipe is small: remove the anchors and aliases", str(path))]
    except yaml.YAMLError as err:
        return None, [_yaml_problem(path, err)]
    if data is None:
        return None, [Problem("", "the file is empty; a recipe is a mapping of sections (model, data, ...)", str(path))]
    if not isinstance(data, dict):
        return None, [Problem("", f"expected a mapping of sections at the top, found a {type(data).__name__}", str(path))]
    return YamlSource(path, data, walk.lines, walk.atomic), walk.problems
