"""A saved PEFT LoRA adapter folder, read without torch: its config, its tensor shapes, its base.

Used before any weight loads, to refuse an adapter that cannot be continued (lora.init_from) or
merged (qlorafx merge): a folder that is not an adapter, a LoRA shape other than the recipe's,
or an adapter trained on another base.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from qlorafx.errors import UserError

CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model."


class AdapterError(UserError):
    """An adapter folder that cannot be used as asked; the message says which and what to do."""


def read_config(folder: Path, what: str) -> dict:
    """The adapter's config; ``what`` names where the folder came from (e.g. 'lora.init_from')."""
    if not folder.is_dir():
        raise AdapterError(f"{what}: {folder} is not a folder; point it at a PEFT adapter folder "
                           f"(one holding {CONFIG} and {WEIGHTS}, e.g. runs/NAME/adapter)")
    missing = [name for name in (CONFIG, WEIGHTS) if not (folder / name).is_file()]
    if missing:
        raise AdapterError(f"{what}: {folder} holds no PEFT adapter ({' and '.join(missing)} missing); "
                           f"point it at a folder written by save_pretrained, e.g. runs/NAME/adapter")
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise AdapterError(f"{what}: {folder / CONFIG} is not readable JSON ({err})") from None
    if config.get("peft_type") != "LORA":
        raise AdapterError(f"{what}: {folder} holds a {config.get('peft_type')} adapter; qlorafx trains and merges "
                           f"LoRA adapters only")
    return config


def tensor_shapes(folder: Path) -> dict[str, list[int]]:
    """Name -> shape of each tensor in the adapter's safetensors file, from its JSON header alone."""
    with open(folder / WEIGHTS, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    return {name: entry["shape"] for name, entry in header.items() if name != "__metadata__"}


def lora_layer_shapes(folder: Path) -> dict[str, tuple[int, int]]:
    """Module name (as in the base model) -> (in_features, out_features) that its LoRA matrices fit."""
    shapes = tensor_shapes(folder)
    found: dict[str, tuple[int, int]] = {}
    for name, shape in shapes.items():
        match = re.fullmatch(r"(.*)\.lora_A(?:\.[^.]+)?\.weight", name)
        if match and len(shape) == 2:
            module = match.group(1).removeprefix(PREFIX)
            b_shape = next((s for n, s in shapes.items() if n.startswith(f"{match.group(1)}.lora_B")), None)
            found[module] = (shape[1], b_shape[0] if b_shape else -1)
    return found


def shape_mismatches(folder: Path, linear_shapes: dict[str, tuple[int, int]]) -> list[str]:
    """Where the adapter does not fit a base whose linear layers have these (in, out) shapes."""
    wrong = []
    for module, (fan_in, fan_out) in sorted(lora_layer_shapes(folder).items()):
        base = linear_shapes.get(module)
        if base is None:
            wrong.append(f"{module} (not in this base)")
        elif (fan_in, fan_out) != base:
            wrong.append(f"{module} (adapter {fan_in}->{fan_out}, base {base[0]}->{base[1]})")
    return wrong


def same_base(recorded: str | None, expected: str) -> bool:
    """Whether the base an adapter recorded (base_model_name_or_path) is the one given: the same hub
    id, or the same local folder."""
    if not recorded:
        return True  # nothing recorded: only the shapes can tell
    if recorded == expected:
        return True
    a, b = Path(recorded).expanduser(), Path(expected).expanduser()
    return a.exists() and b.exists() and a.resolve() == b.resolve()
