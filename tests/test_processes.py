"""Which process this is under torchrun: read from the environment in one module, nowhere else."""

from __future__ import annotations

import re

from qlorafx import processes
from tests.conftest import REPO


def test_a_single_process_is_rank_0_of_1(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert (processes.rank(), processes.local_rank(), processes.world_size()) == (0, 0, 1)
    assert processes.is_main() and not processes.launched()


def test_torchrun_s_variables(monkeypatch):
    monkeypatch.setenv("RANK", "5")  # second machine, second GPU
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert (processes.rank(), processes.local_rank(), processes.world_size()) == (5, 1, 8)
    assert not processes.is_main() and processes.launched()


def test_no_other_module_reads_them():
    pattern = re.compile(r"""["'](RANK|LOCAL_RANK|WORLD_SIZE)["']""")
    readers = sorted(str(path.relative_to(REPO)) for path in (REPO / "src" / "qlorafx").rglob("*.py")
                     if pattern.search(path.read_text(encoding="utf-8")))
    assert readers == ["src/qlorafx/processes.py"]
