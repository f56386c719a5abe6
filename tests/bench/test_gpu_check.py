"""bench/gpu.py, the GPU check, run as a user runs it but on a tiny model (--tiny): it trains through
qlorafx with gradient checkpointing on and off, compares packed and unpacked losses, trains the
qlora.py-style baseline, and writes its results page. On CPU here; on a GPU machine it is the same code
at Llama 3.1 8B's shape."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_the_gpu_check_runs_end_to_end_on_a_tiny_model(tmp_path):
    out = tmp_path / "RESULTS-gpu.md"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    page = out.read_text()
    rows = [line for line in page.splitlines() if line.startswith(("| qlorafx", "| Trainer"))]
    assert [r.split(" | ")[:2] for r in rows] == [["| qlorafx, packed", "on"], ["| qlorafx, packed", "off"],
                                                  ["| Trainer, padded (qlora.py)", "on"]]
    for row in rows:  # tokens a step and tokens/s measured, positive
        tokens_per_step, tokens_per_s = (float(x) for x in row.split(" | ")[3:5])
        assert tokens_per_step > 0 and tokens_per_s > 0, row
    assert re.search(r"- sdpa: EQUAL: summed loss [\d.]+ unpacked, [\d.]+ packed .*; targets (\d+) and \1", page), page
    assert "- flash_attention_2: " in page


def test_without_a_gpu_the_full_check_says_where_to_run_it():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no CUDA GPU here: run on a GPU machine, or --tiny" in done.stderr
