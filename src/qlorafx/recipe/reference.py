"""The recipe reference (docs/reference.md), generated from the recipe's JSON Schema, so it says
exactly what the code accepts: every key, its type and limits, its default, its description.

    python -m qlorafx.recipe.reference > docs/reference.md

tests/recipe/test_reference.py fails when docs/reference.md differs from what this prints.
"""

from __future__ import annotations

import json
from typing import Any

from qlorafx.recipe.json_schema import recipe_json_schema

COMMAND = "python -m qlorafx.recipe.reference > docs/reference.md"
SCALARS = {"string": "string", "integer": "int", "number": "float", "boolean": "bool", "null": "null",
           "object": "mapping"}
LIMITS = (("exclusiveMinimum", ">"), ("minimum", ">="), ("exclusiveMaximum", "<"), ("maximum", "<="),
          ("minItems", "items >="))


def _ref_name(node: dict[str, Any]) -> str | None:
    ref = node.get("$ref")
    return ref.rsplit("/", 1)[-1] if ref else None


def _type(node: dict[str, Any]) -> str:
    if "const" in node:
        return f"`{node['const']}`"
    if "enum" in node:
        return " | ".join(f"`{v}`" for v in node["enum"])
    if _ref_name(node):
        return "section"
    if "anyOf" in node or "oneOf" in node:
        return " or ".join(_type(choice) for choice in node.get("anyOf") or node["oneOf"])
    kind = node.get("type")
    if kind == "array":
        items = node.get("items", {})
        text = "list of sections" if (_ref_name(items) or "oneOf" in items) else f"list of {_type(items)}"
    else:
        text = SCALARS.get(kind, "any")
    limits = [f"{sign} {node[key]}" for key, sign in LIMITS if key in node]
    return f"{text} ({', '.join(limits)})" if limits else text


def _default(node: dict[str, Any], required: bool) -> str:
    if "default" not in node:
        return "**required**" if required else ""
    value = node["default"]
    if isinstance(value, dict):
        return "see below"
    return f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _sections(schema: dict[str, Any], defs: dict[str, Any], path: str, out: list[str], heading: str | None = None,
              condition: dict[str, Any] | None = None) -> None:
    """One table for the section at ``path``, then one for each section inside it (depth first).

    ``condition``: the required keys json_schema.py lifted out of merged sections (see there)."""
    condition = condition or {}
    title = heading or (f"`{path}`" if path else "Top level")
    out += [f"## {title}", ""]
    if schema.get("description") and path:
        out += [schema["description"].strip(), ""]
    out += ["| key | type | default | description |", "|---|---|---|---|"]
    required = set(schema.get("required", [])) | set(condition.get("required", []))
    nested: list[tuple[str, dict[str, Any], str | None, dict[str, Any]]] = []
    for key, node in schema.get("properties", {}).items():
        dotted = f"{path}.{key}" if path else key
        target = defs.get(_ref_name(node) or "")
        description = node.get("description") or (target or {}).get("description", "")
        if target and not path:  # a top-level section: point to its table
            description = description or f"See [`{key}`](#{key}) below."
        out.append(f"| `{key}` | {_cell(_type(node))} | {_cell(_default(node, key in required))} | {_cell(description.strip())} |")
        if target:
            nested.append((dotted, target, None, condition.get("properties", {}).get(key, {})))
        items = node.get("items", {}) if node.get("type") == "array" else {}
        variants = [defs[_ref_name(c)] for c in items.get("oneOf", []) if _ref_name(c)]
        if _ref_name(items):
            variants = [defs[_ref_name(items)]]
        for variant in variants:
            tag = variant.get("properties", {}).get("format", {}).get("const")
            label = f"`{dotted}[]` with `format: {tag}`" if tag and len(variants) > 1 else f"`{dotted}[]`"
            nested.append((f"{dotted}[]", variant, label, {}))
    out.append("")
    for dotted, sub, label, inner in nested:
        _sections(sub, defs, dotted, out, label, inner)


def reference_markdown() -> str:
    schema = recipe_json_schema()
    out = ["# Recipe reference", "",
           f"Generated from the recipe schema by `{COMMAND}`; do not edit by hand",
           "(a test fails when this file is stale). [recipes.md](recipes.md) explains how recipes load",
           "(extends, overrides, paths); `qlorafx show RECIPE` prints a recipe with every default filled in;",
           "`qlorafx schema` prints the JSON Schema this page is made from ([editors.md](editors.md)).",
           "A **required** key may also come from a file the recipe `extends`.",
           "Cross-field rules (such as `epochs` or `max_steps`, not both) are in the descriptions and",
           "are checked by `qlorafx validate`.", ""]
    _sections(schema, schema.get("$defs", {}), "", out, condition=schema.get("then"))
    return "\n".join(out).rstrip("\n") + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
