"""`make bench`: the data-path benchmark. Runs each set-up in its own process, writes RESULTS.md.

Needs ../shared/data (the Alpaca sample and the LLaMA-2 tokenizer); says so and stops without it.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

import common

HERE = Path(__file__).resolve().parent
LABELS = {
    "qlorafx": "qlorafx (default batching: packing)",
    "trainer_padding": "transformers Trainer, pad to longest, random order (qlora.py set-up)",
    "trl_sft": "TRL SFTTrainer, defaults",
}


def main() -> int:
    if not common.ALPACA.is_file() or not (common.LLAMA2 / "tokenizer.model").is_file():
        print(f"bench: needs {common.ALPACA} and {common.LLAMA2}; not found, nothing run", file=sys.stderr)
        return 1
    results = []
    for name in LABELS:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, str(HERE / "setups.py"), name], capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"bench: {results[-1]}", file=sys.stderr, flush=True)
    baseline = next(r for r in results if r["setup"] == "trainer_padding")
    lines = [
        "# Data-path benchmark",
        "",
        f"`make bench` on {date.today()}, {platform.machine()} CPU ({platform.processor() or 'unknown'}), "
        f"{common.os.cpu_count()} cores, Python {platform.python_version()}.",
        "",
        common.__doc__.strip(),
        "",
        "Each set-up trains one epoch with about 8 examples (or one 1,024-token packed row) per optimizer step.",
        "",
        "| set-up | wall time (s) | steps | non-padding tokens/s | vs qlora.py set-up | padding | peak RSS (MB) | final loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {LABELS[r['setup']]} | {r['wall_s']} | {r['steps']} | {r['tokens_per_s']:.0f} | "
                     f"{r['tokens_per_s'] / baseline['tokens_per_s']:.2f}x | {r['padding']:.1%} | {r['peak_rss_mb']} | "
                     f"{r['final_loss']:.4f} |")
    previous = (HERE / "RESULTS.md").read_text() if (HERE / "RESULTS.md").is_file() else ""
    serve = previous[previous.index("<!-- serve:start -->"):] if "<!-- serve:start -->" in previous else ""
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n" + (f"\n{serve}" if serve else ""))  # bench/serve.py's
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
