"""`qlorafx estimate` as a user runs it: a breakdown that adds up, no weights, clear refusals."""

from __future__ import annotations

import re

import pytest

from qlorafx.cli.estimate import size
from qlorafx.cli.main import main
from tests.cli.test_cli import heavy_modules_after
from tests.conftest import REPO
from tests.train.tiny import tiny_recipe


def test_breakdown_adds_up_to_the_peak(tmp_path, capsys):
    assert main(["estimate", str(tiny_recipe(tmp_path)), "training.micro_batch_size=8"]) == 0
    out = capsys.readouterr().out
    assert "4-bit nf4 double-quant base, compute float32; micro_batch_size 8 x max_length 320 tokens" in out
    for part in ("quantized weights (14 layers", "optimizer states (adamw)", "activations (gradient checkpointing off)",
                 "peak", "gradient checkpointing: off"):
        assert part in out, part
    assert not (tmp_path / "run").exists()  # nothing written, no weights built
    off, on = re.search(r"off ([\d.]+ \w+) .*, on ([\d.]+ \w+)", out).groups()
    assert off != on


def test_sizes_read_as_people_write_them():
    assert [size(n) for n in (512, 2048, 5 * 2 ** 20, 3 * 2 ** 30)] == ["512 B", "2.00 KiB", "5.00 MiB", "3.00 GiB"]


def test_lora_options_that_do_not_fit_are_refused(tmp_path, capsys):
    assert main(["estimate", str(tiny_recipe(tmp_path)), "lora.target_modules=[query]"]) == 2
    assert "lora.target_modules [query] matches no linear layer" in capsys.readouterr().err


def test_a_bad_recipe_is_refused_before_torch_is_imported(tmp_path):
    code, heavy = heavy_modules_after(["estimate", str(tiny_recipe(tmp_path)), "lora.r=0"])
    assert code == 2 and heavy == []


def _figure(out: str, label: str) -> float:
    """A row of the breakdown, in GiB."""
    value, unit = re.search(rf"{re.escape(label)}\s+([\d.]+) (\w+)", out).groups()
    return float(value) / {"GiB": 1, "MiB": 2 ** 10, "KiB": 2 ** 20}[unit]


def test_guanaco_65b_plans_a_gpu_run_offline_and_fits_a_48_gb_card(capsys, monkeypatch):
    """The paper's run, estimated from a machine with no network and no GPU: the shipped config, no
    tokenizer, bf16 compute as on the GPU. Every tensor on the GPU it needs more than 48 GiB; with paged
    AdamW's states in CPU memory, as the paper's paged optimizers allow, it fits (docs/estimate.md)."""
    import socket

    reached = []  # recorded, not only raised: qlorafx.hub's probe catches any exception as "unreachable"

    def refuse(*args, **kwargs):
        reached.append(args[:2])
        raise AssertionError(f"estimate reached for the network: {args[:2]}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert main(["estimate", str(REPO / "recipes" / "guanaco" / "guanaco-65b.yaml"), "--device", "cuda"]) == 0
    assert reached == []
    out = capsys.readouterr().out
    assert "(from qlorafx's copy of huggyllama/llama-65b's config.json)" in out
    assert "on cuda: 4-bit nf4 double-quant base, compute bfloat16; micro_batch_size 4 x max_length 512" in out
    assert "trainable parameters (799,539,200, bfloat16" in out  # LoRA r 64 on all 560 linear layers
    assert _figure(out, "their gradients") == pytest.approx(799_539_200 * 2 / 2 ** 30, abs=0.01)
    context = 0.5  # CUDA's own, not in the estimate
    assert _figure(out, "  peak") + context > 48
    assert _figure(out, "peak with the paged optimizer states in CPU memory") + context < 44


def test_auto_compute_is_float32_on_cpu_and_bfloat16_on_cuda(tmp_path, capsys):
    recipe = str(tiny_recipe(tmp_path))
    assert main(["estimate", recipe, "--device", "cpu", "optimizer.name=paged_adamw_32bit"]) == 0
    cpu = capsys.readouterr().out
    assert "on cpu: 4-bit nf4 double-quant base, compute float32" in cpu and "paged" not in cpu.replace("paged_adamw", "")
    assert main(["estimate", recipe, "--device", "cuda", "optimizer.name=paged_adamw_32bit"]) == 0
    cuda = capsys.readouterr().out
    assert "on cuda: 4-bit nf4 double-quant base, compute bfloat16" in cuda
    assert "paged: can move to CPU memory" in cuda and "CUDA context" in cuda
    assert main(["estimate", recipe, "--device", "cuda", "quantization.compute_dtype=float16"]) == 0
    assert "compute float16" in capsys.readouterr().out  # a recipe's own dtype is kept


def test_an_unreachable_hub_fails_in_seconds_with_what_to_do(tmp_path):
    """No HF_HUB_OFFLINE, the hub's address refuses connections: one probe, then the cache only; not
    huggingface_hub's ~50 s of retries."""
    import os
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env |= {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf-home")}  # port 9: nothing listens
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "qlorafx.cli.main", "estimate", str(tiny_recipe(tmp_path)),
                           "model.loader=pretrained", "model.path=qlorafx-tests/not-shipped", "model.config={}"],
                          capture_output=True, text=True, env=env, timeout=120)
    seconds = time.perf_counter() - started
    assert done.returncode == 2 and "Traceback" not in done.stderr and "Retrying" not in done.stderr, done.stderr
    assert done.stderr.startswith(
        "error: model.path 'qlorafx-tests/not-shipped': cannot load its config: it is not a local folder, and the "
        "hub is unreachable (http://127.0.0.1:9: "), done.stderr
    assert done.stderr.rstrip().endswith("with no cached copy; download it once with the hub reachable, or point "
                                         "it at a local folder")
    limit = 20 * max(1.0, min(2.0, os.getloadavg()[0] / (os.cpu_count() or 1)))  # importing torch, not waiting
    assert seconds < limit, f"took {seconds:.0f} s"
