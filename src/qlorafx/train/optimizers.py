"""Optimizers by recipe name. Each entry returns (optimizer class, keyword arguments).

torch and bitsandbytes are imported inside the entries, so registering costs nothing and
validating a recipe never imports them. Paged optimizers page their state to CPU memory
under GPU memory pressure (the QLoRA paper's remedy for spikes); on a CPU-only machine
bitsandbytes runs them unpaged.
"""

from __future__ import annotations

from typing import Any, Callable

from qlorafx.registry import Registry

OptimizerFactory = Callable[[Any], tuple[type, dict[str, Any]]]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")


def _common(cfg) -> dict[str, Any]:
    return {"lr": cfg.lr, "weight_decay": cfg.weight_decay}


def _bnb(class_name: str) -> OptimizerFactory:
    def factory(cfg):
        import bitsandbytes.optim

        return getattr(bitsandbytes.optim, class_name), _common(cfg)

    return factory


@OPTIMIZERS.register("adamw")
def _adamw(cfg):
    import torch

    return torch.optim.AdamW, _common(cfg)


@OPTIMIZERS.register("sgd")
def _sgd(cfg):
    import torch

    return torch.optim.SGD, {**_common(cfg), "momentum": 0.9}


for _name, _cls in {
    "adamw_8bit": "AdamW8bit",
    "paged_adamw_8bit": "PagedAdamW8bit",
    "paged_adamw_32bit": "PagedAdamW32bit",
    "lion_8bit": "Lion8bit",
    "paged_lion_8bit": "PagedLion8bit",
}.items():
    OPTIMIZERS.register(_name)(_bnb(_cls))
