"""`make bench`: qlorafx against the qlora.py set-up and TRL, on issue 15's reference set-up.

    .venv/bin/python bench/run.py [--rounds N] [--only a,b] [--compare-src PATH] [--no-record]

Each set-up runs in its own process (bench/setups.py), in the same order every round; with several
rounds the figures are medians. --compare-src runs qlorafx's set-ups a second time from another
checkout's src/ (e.g. a worktree of an older commit) right after each of this checkout's, so the two
are measured in alternation under the same load: the A/B the issue's speed claims rest on.
Appends the table, with the date, the commit and the load average, to bench/RESULTS.md.
Needs ../shared/data (the Alpaca sample and the LLaMA-2 tokenizer); says so and stops without it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import common

HERE = Path(__file__).resolve().parent
LABELS = {
    "qlorafx_packed": "qlorafx, packing (default)",
    "qlorafx_padded": "qlorafx, padded batches (packing: false)",
    "trainer_padding": "transformers Trainer, pad to longest (qlora.py set-up)",
    "trl_sft": "TRL SFTTrainer, defaults",
}
BASELINE = "trainer_padding"


def _commit(src: Path) -> str:
    done = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def _run(name: str, base: Path, src: Path | None) -> dict:
    env = dict(os.environ)
    if src is not None:  # the other checkout's qlorafx first on the path (PYTHONPATH precedes the venv's)
        env["PYTHONPATH"] = str(src)
    done = subprocess.run([sys.executable, str(HERE / "setups.py"), name, str(base)], capture_output=True, text=True,
                          env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_to_loss(curve: list, target: float) -> float | None:
    """Training seconds until the held-out loss first reaches target, linear between evaluations."""
    for (t0, _, l0), (t1, _, l1) in zip(curve, curve[1:]):
        if l1 <= target:
            return t0 + (t1 - t0) * ((l0 - target) / (l0 - l1) if l0 > target else 0.0)
    return None


def summarise(runs: list[dict]) -> dict:
    """Medians over rounds."""
    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    return {"train_s": med("train_s"), "train_cpu_s": med("train_cpu_s"), "steps": runs[0]["steps"],
            "loss_tokens": runs[0]["loss_tokens"], "first_step_s": med("first_step_s"),
            "peak_rss_mb": med("peak_rss_mb"), "final_loss": med("final_loss"),
            "to_target_s": statistics.median(r["to_target_s"] for r in runs) if all(r["to_target_s"] for r in runs) else None,
            "rounds": len(runs), "all_train_s": [r["train_s"] for r in runs],
            "all_train_cpu_s": [r["train_cpu_s"] for r in runs]}


def table(results: dict[str, dict], target: float) -> list[str]:
    base = results.get(BASELINE)
    lines = ["| set-up | train s | CPU s | steps | loss tokens/s | vs qlora.py | time to held-out "
             f"{target:.3f} (s) | final held-out | peak RSS MB | start to step 1 (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, r in results.items():
        name, _, commit = key.partition(" @")
        shown = LABELS.get(name, name) + (f" @{commit}" if commit else "")
        rate = r["loss_tokens"] / r["train_s"]
        versus = f"{rate / (base['loss_tokens'] / base['train_s']):.2f}x" if base else "-"
        reach = f"{r['to_target_s']:.1f}" if r["to_target_s"] is not None else "not reached"
        lines.append(f"| {shown} | {r['train_s']:.1f} | {r['train_cpu_s']:.1f} | {r['steps']} | {rate:.0f} | {versus} | "
                     f"{reach} | {r['final_loss']:.4f} | {r['peak_rss_mb']:.0f} | {r['first_step_s']:.1f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", default=",".join(LABELS), help="comma-separated set-ups")
    parser.add_argument("--compare-src", type=Path, help="another checkout's src/ for an A/B of qlorafx's set-ups")
    parser.add_argument("--no-record", action="store_true", help="print only; leave RESULTS.md as it is")
    args = parser.parse_args()
    if not common.ALPACA.is_file() or not (common.LLAMA2 / "tokenizer.model").is_file():
        print(f"bench: needs {common.ALPACA} and {common.LLAMA2}; not found, nothing run", file=sys.stderr)
        return 1
    names = [n.strip() for n in args.only.split(",")]
    here = HERE.parent / "src"
    plan = []  # (row label, set-up, src or None)
    for name in names:
        plan.append((name, name, None))
        if args.compare_src and name.startswith("qlorafx"):
            plan.append((f"{name} @{_commit(args.compare_src)}", name, args.compare_src.resolve()))
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {label: [] for label, _, _ in plan}
    with tempfile.TemporaryDirectory() as tmp:
        base = common.prepare_base(Path(tmp))
        for round_ in range(args.rounds):
            finals = []
            order = list(plan)
            if round_ % 2 and args.compare_src:  # every other round the older checkout goes first in each pair
                for i in range(len(order) - 1):
                    if order[i + 1][2] is not None and order[i][1] == order[i + 1][1]:
                        order[i], order[i + 1] = order[i + 1], order[i]
            for label, name, src in order:
                print(f"bench: round {round_ + 1}/{args.rounds} {label} ...", file=sys.stderr, flush=True)
                r = _run(name, base, src)
                r["final_loss"] = r["curve"][-1][2]
                runs[label].append(r)
                finals.append(r["final_loss"])
                print(f"bench: {json.dumps(r)}", file=sys.stderr, flush=True)
            target = max(finals)  # the loss every set-up reaches within its epoch
            for label, _, _ in plan:
                runs[label][-1]["to_target_s"] = time_to_loss(runs[label][-1]["curve"], target)
    load_after = os.getloadavg()
    results = {label: summarise(r) for label, r in runs.items()}
    threads = "/".join(str(t) for t in sorted({r["threads"] for rs in runs.values() for r in rs}))
    target = max(r["final_loss"] for r in results.values())
    lines = [f"## {date.today()}, commit {_commit(HERE.parent)}"
             + (f" vs {_commit(args.compare_src)} (rows marked @)" if args.compare_src else ""),
             "",
             f"{platform.machine()}, {os.cpu_count()} cores, {threads} torch threads "
             f"({'BENCH_THREADS' if os.environ.get('BENCH_THREADS') else 'torch default'}), "
             f"Python {platform.python_version()}; load average {load_before[0]:.1f} before, "
             f"{load_after[0]:.1f} after; {args.rounds} round(s), medians. Set-up: bench/common.py. Command: `{' '.join(['bench/run.py', *sys.argv[1:]])}`.",
             "", *table(results, target), ""]
    if args.rounds > 1:
        lines += ["train s per round: " + "; ".join(f"{k}: {v['all_train_s']}" for k, v in results.items()), "",
                  "CPU s per round: " + "; ".join(f"{k}: {v['all_train_cpu_s']}" for k, v in results.items()), ""]
    print("\n".join(lines))
    if not args.no_record:
        record(lines)
    return 0


def record(lines: list[str]) -> None:
    """Newest first under the header; the history below stays."""
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.is_file() else ""
    marker = "<!-- history: newest first -->"
    if marker not in text:
        text = f"# Benchmark results\n\n{common.__doc__.strip()}\n\n{marker}\n\n" + text
    head, history = text.split(marker, 1)
    path.write_text(head + marker + "\n\n" + "\n".join(lines) + "\n" + history)


if __name__ == "__main__":
    sys.exit(main())
