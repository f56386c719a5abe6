"""The one Registry class, and the one way a recipe value names a registry entry.

Recipes name components by key, never by import path. Each registry lives next to what it
registers (formats in ``data/formats``, optimizers in ``train/optimizers.py``, ...). Registering
must stay cheap: modules that register components import torch and friends inside the registered
functions, not at the top, so that validating a recipe never imports torch.

``registry_key(OPTIMIZERS)`` is the type of every recipe value that names an entry: a ``str``
whose validator refuses names the registry does not hold (with a did-you-mean) and whose JSON
Schema carries ``enum``, so editors complete and check the names as the user types, and the
generated reference lists them. The keys are read when the schema is generated, after every
module has registered its entries.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Callable, Generic, Iterator, TypeVar

from pydantic import AfterValidator

T = TypeVar("T")


class UnknownKeyError(KeyError):
    """A recipe named a component that is not registered."""

    def __init__(self, kind: str, key: str, available: list[str]):
        self.kind, self.key, self.available = kind, key, available
        close = difflib.get_close_matches(key, available, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown {kind} {key!r}: expected one of {', '.join(available)}{hint}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, key: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = entry
            return entry

        return add

    def get(self, key: str) -> T:
        try:
            return self._entries[key]
        except KeyError:
            raise UnknownKeyError(self.kind, key, self.keys()) from None

    def keys(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


class _ListsKeys:
    def __init__(self, registry: Registry):
        self.registry = registry

    def __get_pydantic_json_schema__(self, core_schema, handler) -> dict[str, Any]:
        schema = handler(core_schema)
        schema["enum"] = self.registry.keys()
        return schema


def registry_key(registry: Registry) -> Any:
    """The type of a recipe value naming an entry of ``registry``: checked, and listed as the JSON Schema's enum."""
    def check(key: str) -> str:
        if key not in registry:
            raise ValueError(str(UnknownKeyError(registry.kind, key, registry.keys())))
        return key

    return Annotated[str, AfterValidator(check), _ListsKeys(registry)]
