"""Which LoRA options peft can run on which base, decided from the recipe alone (no torch here).

Each rule was found by running peft 0.21 with bitsandbytes 0.50; tests/model/test_lora_support.py
runs every combination again and checks that each refused one really fails in peft and each
allowed one trains.
"""

from __future__ import annotations

import re

# init_lora_weights values qlorafx runs, and what each does (peft's names).
INITS = {
    True: "A random (Kaiming), B zero: the adapter starts as a no-op (peft's default)",
    False: "A and B random: the adapter changes the model from step 0 (for debugging)",
    "gaussian": "A Gaussian with std 1/r, B zero",
    "olora": "A and B from a QR decomposition of each weight; the base keeps the residual",
    "pissa": "A and B from each weight's top-r singular vectors; the base keeps the residual",
    "pissa_niter_N": "PiSSA with a fast randomized SVD of N iterations (e.g. pissa_niter_4)",
    "orthogonal": "A and B from orthogonal random matrices (needs an even r)",
    "eva": "data-driven: A from an SVD of each layer's inputs on training batches, ranks redistributed",
    "mica": "B from each weight's smallest singular directions and frozen, A zero (only A trains)",
}
# These mutate the base weights, so the saved adapter is converted to plain LoRA of rank 2r that
# applies to the original base (peft's path_initial_model_for_weight_conversion). The conversion
# carries only the A and B matrices: DoRA magnitudes, modules_to_save and trained biases would be lost.
MUTATE_BASE = ("olora", "pissa")
# peft computes these from the full-precision weight and refuses (or, for orthogonal, builds
# integer LoRA weights) on a bitsandbytes layer.
FULL_PRECISION_ONLY = ("pissa", "orthogonal", "mica")
# Options peft has that qlorafx does not run, and why.
NOT_RUN = {
    "loftq": "peft's LoftQ on a 4-bit base runs on CUDA only, and on a 16-bit base needs a separate "
             "quantize-and-save step",
    "corda": "it needs peft's preprocess_corda pass over calibration data first",
    "lora_ga": "it needs peft's preprocess_loraga gradient pass first",
}


def init_name(value) -> str:
    """The INITS key of a value: 'pissa_niter_8' -> 'pissa_niter_N'."""
    if isinstance(value, str) and re.fullmatch(r"pissa_niter_\d+", value):
        return "pissa_niter_N"
    return value


def check_init(value):
    """A pydantic field check: the value or a ValueError saying what is accepted."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if isinstance(value, str) and value in NOT_RUN:
        raise ValueError(f"{value!r} is not run by qlorafx: {NOT_RUN[value]}; use one of {_listing()}")
    if init_name(value) not in INITS:
        raise ValueError(f"unknown init {value!r}: expected one of {_listing()}")
    return value


def _listing() -> str:
    return ", ".join("true" if k is True else "false" if k is False else k for k in INITS)


def incompatibilities(lora, quantization) -> list[tuple[str, str]]:
    """(key, message) for each LoRA option the chosen base cannot run."""
    found = []
    bits, init = quantization.bits, lora.init_lora_weights
    if lora.use_dora and bits == 8:
        found.append(("lora.use_dora", "DoRA on an 8-bit base fails inside bitsandbytes' int8 matmul (its scale "
                                       "state is lost); use quantization.bits: 4 or 16, or use_dora: false"))
    family = init_name(init).split("_niter_")[0] if isinstance(init, str) else None
    if family in FULL_PRECISION_ONLY and bits != 16:
        found.append(("lora.init_lora_weights", f"{init!r} is computed from full-precision weights, which the {bits}-bit "
                                                f"base does not have; use quantization.bits: 16, or an init that works on "
                                                f"a quantized base: true, false, gaussian, olora, eva"))
    if lora.init_from is not None and init is not True:
        found.append(("lora.init_lora_weights", f"lora.init_from continues an existing adapter, whose weights replace "
                                                f"any init; remove init_lora_weights ({init!r}) or init_from"))
    if init == "orthogonal" and lora.r % 2:
        found.append(("lora.init_lora_weights", f"orthogonal init needs an even rank, but lora.r is {lora.r}"))
    if mutates_base(init):
        kept = [k for k, on in (("use_dora", lora.use_dora), ("modules_to_save", lora.modules_to_save),
                                ("bias", lora.bias != "none")) if on]
        if kept:
            found.append(("lora.init_lora_weights", f"{init!r} changes the base, so the saved adapter is converted to "
                                                    f"plain LoRA on the original base, which cannot carry "
                                                    f"{', '.join('lora.' + k for k in kept)}; drop them or use another init"))
    by_key: dict[str, list[str]] = {}
    for key, message in found:
        by_key.setdefault(key, []).append(message)
    return [(key, "; also, ".join(messages)) for key, messages in by_key.items()]


def mutates_base(init) -> bool:
    return isinstance(init, str) and init_name(init).split("_niter_")[0] in MUTATE_BASE
