"""Peak tensor memory of the output head and the loss alone, forward and backward: the plain head then
cross_entropy (what the unfused path computes) against the fused product and loss (train/fused_cross_entropy.py).

    .venv/bin/python bench/head_memory.py [ROWS HIDDEN VOCAB]     # default: the bench's 1871 256 32000

Measured with torch.profiler's memory events (every allocation and free of torch's CPU allocator), as
tests/estimate/test_peak.py measures a run's peak.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from qlorafx.train.fused_cross_entropy import cross_entropy  # noqa: E402


def peak_mib(loss_of) -> float:
    hidden = torch.randn(ROWS, HIDDEN, requires_grad=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        loss_of(hidden).backward()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns())
    running = highest = 0
    for event in events:
        running += event.nbytes()
        highest = max(highest, running)
    return highest / 2**20


ROWS, HIDDEN, VOCAB = (int(x) for x in sys.argv[1:4]) if len(sys.argv) > 3 else (1871, 256, 32000)

if __name__ == "__main__":
    torch.manual_seed(0)
    weight = torch.randn(VOCAB, HIDDEN) * 0.05
    targets = torch.randint(0, VOCAB, (ROWS,))
    plain = peak_mib(lambda h: torch.nn.functional.cross_entropy(
        torch.nn.functional.linear(h, weight).float(), targets, reduction="sum") / ROWS)
    fused = peak_mib(lambda h: cross_entropy(h, weight, targets, ROWS, torch.float32))
    print(f"{ROWS} rows, hidden {HIDDEN}, vocabulary {VOCAB}: peak MiB unfused {plain:.0f}, fused {fused:.0f} "
          f"({plain / fused:.1f}x less)")
