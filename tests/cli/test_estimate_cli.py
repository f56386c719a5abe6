"""`qlorafx estimate` as a user runs it: a breakdown that adds up, no weights, clear refusals."""

from __future__ import annotations

import re

from qlorafx.cli.estimate import size
from qlorafx.cli.main import main
from tests.cli.test_cli import heavy_modules_after
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
    assert "lora.target_modules ['query'] matches no linear layer" in capsys.readouterr().err


def test_a_bad_recipe_is_refused_before_torch_is_imported(tmp_path):
    code, heavy = heavy_modules_after(["estimate", str(tiny_recipe(tmp_path)), "lora.r=0"])
    assert code == 2 and heavy == []
