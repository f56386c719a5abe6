"""qlorafx.environment: the 4-bit check really quantizes and compares, and reports failures as text."""

from __future__ import annotations

import platform
import re
from importlib import metadata

import pytest

from qlorafx.environment import check_4bit, devices, package_versions


def test_4bit_works_on_this_cpu():
    check = check_4bit("cpu")
    assert check.ok, check.detail
    roundtrip = float(re.search(r"round-trip error ([0-9.]+)", check.detail).group(1))
    assert 0.05 < roundtrip < 0.15  # NF4 on Gaussian weights: about 0.09 (fp4 would be about 0.12)


def test_fp4_has_the_larger_roundtrip_error():
    nf4, fp4 = check_4bit("cpu", "nf4"), check_4bit("cpu", "fp4")
    error = lambda c: float(re.search(r"round-trip error ([0-9.]+)", c.detail).group(1))  # noqa: E731
    assert fp4.ok and error(fp4) > error(nf4)


def test_a_layer_that_computes_wrong_is_reported(monkeypatch):
    import bitsandbytes.functional

    real = bitsandbytes.functional.dequantize_4bit
    monkeypatch.setattr(bitsandbytes.functional, "dequantize_4bit", lambda *a, **k: real(*a, **k) * 1.5)
    check = check_4bit("cpu")
    assert not check.ok
    assert check.detail.startswith("nf4 Linear4bit disagrees with its dequantized weight: forward error ")


def test_an_error_is_reported_not_raised(monkeypatch):
    import bitsandbytes.nn

    def broken(*args, **kwargs):
        raise RuntimeError("no 4-bit kernel for this CPU")

    monkeypatch.setattr(bitsandbytes.nn, "Linear4bit", broken)
    check = check_4bit("cpu")
    assert (check.ok, check.detail) == (False, "RuntimeError: no 4-bit kernel for this CPU")


def test_versions_are_the_installed_ones():
    found = package_versions()
    assert found["python"] == platform.python_version()
    for name in ("torch", "transformers", "peft", "bitsandbytes", "accelerate"):
        assert found[name] == metadata.version(name)


def test_devices_list_the_cpu_and_cuda():
    import torch

    seen = devices()
    assert seen[0].startswith("cpu: ") and "cores" in seen[0]
    if not torch.cuda.is_available():
        assert "cuda: none (torch sees no CUDA device)" in seen
    else:
        pytest.skip("CUDA present: the CPU-only line does not apply")
