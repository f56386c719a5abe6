"""A recipe value that names a registry entry: checked on validation, listed in the JSON Schema.

``registry_key(BACKENDS)`` is a ``str`` type whose validator refuses names the registry does not
hold (with a did-you-mean) and whose JSON Schema carries ``enum``, so editors complete and check
the names as the user types. The keys are read when the schema is generated, after every module
has registered its entries.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator

from qlorafx.registry import Registry, UnknownKeyError


class _ListsKeys:
    def __init__(self, registry: Registry):
        self.registry = registry

    def __get_pydantic_json_schema__(self, core_schema, handler) -> dict[str, Any]:
        schema = handler(core_schema)
        schema["enum"] = self.registry.keys()
        return schema


def registry_key(registry: Registry) -> Any:
    def check(key: str) -> str:
        if key not in registry:
            raise ValueError(str(UnknownKeyError(registry.kind, key, registry.keys())))
        return key

    return Annotated[str, AfterValidator(check), _ListsKeys(registry)]
