"""What ``qlorafx env`` reports for a bug report: versions, the devices torch sees, and whether
4-bit quantization really works here (a tiny bitsandbytes Linear4bit is quantized, run forward
and backward, and compared with the same layer computed from its dequantized weight).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Any

from qlorafx.train.run_dir import versions

PACKAGES = ("qlorafx", "torch", "transformers", "peft", "bitsandbytes", "accelerate", "pydantic")


@dataclass
class FourBitCheck:
    device: str
    ok: bool
    detail: str  # what was measured, or the error


def package_versions() -> dict[str, Any]:
    found = versions({})
    return {"python": found["python"], **{name: found.get(name) for name in PACKAGES}}


def cpu_name() -> str:
    try:  # Linux names the model here; platform.processor() is often empty
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def devices() -> list[str]:
    import torch

    seen = [f"cpu: {cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            seen.append(f"cuda:{i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}, "
                        f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
        seen.append(f"CUDA {torch.version.cuda}")
    else:
        seen.append("cuda: none (torch sees no CUDA device)")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        seen.append("mps: available")
    return seen


def check_4bit(device: str, quant_type: str = "nf4") -> FourBitCheck:
    """Quantize a 64->32 layer, run it forward and backward as QLoRA training does; never raises."""
    try:
        import torch
        import bitsandbytes as bnb
        from bitsandbytes.functional import dequantize_4bit

        from qlorafx.model.quantize import keep_weights_trainable_on_cpu

        torch.manual_seed(0)
        weight = torch.randn(32, 64) * 0.05
        layer = bnb.nn.Linear4bit(64, 32, bias=False, compute_dtype=torch.float32, quant_type=quant_type,
                                  compress_statistics=True)
        layer.weight = bnb.nn.Params4bit(weight.clone(), requires_grad=False, quant_type=quant_type,
                                         compress_statistics=True)
        layer = layer.to(device)  # bitsandbytes quantizes on this move
        keep_weights_trainable_on_cpu(layer)  # the layout training uses (see model/quantize.py)
        if not getattr(layer.weight, "bnb_quantized", False):
            return FourBitCheck(device, False, "the weight was not quantized on .to(device)")
        x = torch.randn(4, 64, device=device, requires_grad=True)
        y = layer(x)
        y.sum().backward()
        dequantized = dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
        want = x.detach() @ dequantized.t()
        forward_err = ((y.detach() - want).norm() / want.norm()).item()
        grad_err = ((x.grad - dequantized.sum(0).expand_as(x.grad)).norm() / x.grad.norm()).item()
        roundtrip = ((dequantized.cpu() - weight).norm() / weight.norm()).item()
        if forward_err > 1e-3 or grad_err > 1e-3:
            return FourBitCheck(device, False, f"{quant_type} Linear4bit disagrees with its dequantized weight: "
                                               f"forward error {forward_err:.2e}, gradient error {grad_err:.2e}")
        return FourBitCheck(device, True, f"{quant_type} Linear4bit (double quant) forward and backward agree with "
                                          f"its dequantized weight; round-trip error {roundtrip:.3f}")
    except Exception as err:  # the point is to report any failure, whatever raised it
        return FourBitCheck(device, False, f"{type(err).__name__}: {err}")


def report() -> dict[str, Any]:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    check = check_4bit(device)
    return {"versions": package_versions(), "platform": platform.platform(), "devices": devices(),
            "4bit": {"device": check.device, "ok": check.ok, "detail": check.detail}}
