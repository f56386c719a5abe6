"""Serving throughput: requests/s and generated tokens/s for 1, 4 and 16 concurrent clients, with
requests batched (--max-batch 16, for each --batch-wait-ms given) and answered one at a time (--max-batch 1).

    .venv/bin/python bench/serve.py [--rounds 2] [--workdir /tmp/qlorafx-bench-serve]

Two tiny runs (a 2-layer Llama, hidden 128, byte tokenizer, 4-bit NF4; an alpaca adapter and a
chatml chat adapter, 8 steps each on the quickstart data) share one base. Both servers are real
`qlorafx serve` processes, started side by side, so the A/B runs interleave: each round measures
every client count on each batched server and then on the one-at-a-time server, which spreads
whatever else the machine is doing over both. Clients (threads with the `openai` client, in this
process) each send requests back to back, cycling over the two adapters and the base, greedy, at
most 32 new tokens each; the tokens counted are those the server reports in usage. Writes its table
into bench/RESULTS.md between the serve markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO / "recipes" / "data" / "quickstart.jsonl"
START, END = "<!-- serve:start -->", "<!-- serve:end -->"
CLIENTS = (1, 4, 16)
MAX_TOKENS = 32
THREADS = 1  # torch threads per server
PROMPTS = ["What color is a leaf?", "Name the sound a duck makes.", "What sound does a cat make?",
           "Which color is the sky?", "Tell me the sound a frog makes.", "What color is snow?"]


def recipe(workdir: Path, name: str, dataset: str) -> Path:
    path = workdir / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        model:
          loader: from_config
          config: {{model_type: llama, hidden_size: 128, intermediate_size: 384, num_hidden_layers: 2,
                    num_attention_heads: 4, num_key_value_heads: 4, max_position_embeddings: 1024,
                    initializer_range: 0.1}}
        lora: {{r: 16, alpha: 32, dropout: 0.0}}
        data:
          datasets: [{dataset}]
          max_length: 320
          val_size: 8
        optimizer: {{name: adamw, lr: 2.0e-2}}
        scheduler: {{name: constant}}
        training: {{max_steps: 8, micro_batch_size: 4}}
        logging: {{every: 4, sample_max_new_tokens: 8, backends: [jsonl]}}
        output_dir: {workdir / name}
        """))
    return path


def runs(workdir: Path) -> list[Path]:
    """The two finished runs (trained once, reused by later bench runs)."""
    workdir.mkdir(parents=True, exist_ok=True)
    chat = workdir / "chat.jsonl"
    records = [json.loads(line) for line in DATA.read_text().splitlines()]
    chat.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": r["instruction"] + (f"\n{r['input']}" if r["input"] else "")},
        {"role": "assistant", "content": r["output"]}]}) + "\n" for r in records))
    made = []
    for name, dataset in (("alpaca", f"{{path: {DATA}, format: alpaca}}"),
                          ("chat", f"{{path: {chat}, format: chat, chat_template: chatml}}")):
        if not (workdir / name / "run.json").is_file():
            print(f"bench serve: training the {name} run", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, "-m", "qlorafx.cli.main", "train", str(recipe(workdir, name, dataset)),
                            "--overwrite"], check=True, capture_output=True)
        made.append(workdir / name)
    return made


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(run_dirs: list[Path], max_batch: int, wait_ms: float = 50.0):
    import httpx

    port = free_port()
    # One torch thread per server: on a small shared machine, OpenMP threads of several processes
    # spinning against each other made the same run 4x slower from one minute to the next.
    process = subprocess.Popen([sys.executable, "-m", "qlorafx.cli.main", "serve", *map(str, run_dirs), "--port",
                                str(port), "--max-batch", str(max_batch), "--batch-wait-ms", str(wait_ms)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": str(THREADS)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"bench serve: the server (--max-batch {max_batch}) did not start")
        time.sleep(0.5)


def one_level(url: str, clients: int, requests_each: int) -> dict:
    """``clients`` threads, each sending ``requests_each`` requests back to back."""
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600)
    models = ("alpaca", "chat", "base_model")
    tokens, latencies, lock = [], [], threading.Lock()

    def work(worker: int) -> None:
        for i in range(requests_each):
            model, prompt = models[(worker + i) % 3], PROMPTS[(worker * 7 + i) % len(PROMPTS)]
            began = time.perf_counter()
            answer = client.completions.create(model=model, prompt=prompt, max_tokens=MAX_TOKENS, temperature=0)
            with lock:
                latencies.append(time.perf_counter() - began)
                tokens.append(answer.usage.completion_tokens)

    import httpx

    threads = [threading.Thread(target=work, args=(w,)) for w in range(clients)]
    counted = httpx.get(f"{url}/health").json()
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    now = httpx.get(f"{url}/health").json()
    return {"requests": len(tokens), "wall_s": wall, "requests_per_s": len(tokens) / wall,
            "tokens_per_s": sum(tokens) / wall, "latency_s": statistics.median(latencies),
            "rows_per_batch": (now["rows"] - counted["rows"]) / max(1, now["batches"] - counted["batches"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-wait-ms", type=float, nargs="+", default=[50.0],
                        help="one batched server for each value (default: the server's default, 50)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/qlorafx-bench-serve"))
    args = parser.parse_args()
    run_dirs = runs(args.workdir)
    servers = {f"batched, wait {ms:g} ms": start(run_dirs, 16, ms) for ms in args.batch_wait_ms}
    servers["one at a time"] = start(run_dirs, 1)
    results: dict[tuple[str, int], list[dict]] = {}
    try:
        for _, url in servers.values():  # warm-up: first requests pay for lazy initialisation
            one_level(url, 3, 1)
        for round_ in range(args.rounds):
            for clients in CLIENTS:
                for mode, (_, url) in servers.items():  # interleaved: A then B, level by level
                    requests_each = {1: 12, 4: 6, 16: 3}[clients]
                    result = one_level(url, clients, requests_each)
                    results.setdefault((mode, clients), []).append(result)
                    print(f"bench serve: round {round_ + 1} {mode:14} {clients:2} clients: "
                          f"{result['requests_per_s']:.2f} req/s {result['tokens_per_s']:.0f} tok/s "
                          f"{result['rows_per_batch']:.1f} rows/batch", file=sys.stderr,
                          flush=True)
    finally:
        for process, _ in servers.values():
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
    write(results, args.rounds, list(servers))
    return 0


def write(results: dict, rounds: int, modes: list[str]) -> None:
    load = os.getloadavg()[0]
    lines = [START, "## Serving: batched vs one request at a time", "",
             f"`.venv/bin/python bench/serve.py --rounds {rounds} --batch-wait-ms "
             f"{' '.join(m.split('wait ')[1].split(' ms')[0] for m in modes if 'wait' in m)}` on {date.today()}, "
             f"{platform.machine()} CPU, "
             f"{os.cpu_count()} cores, load average {load:.1f} at the end (the machine was shared: the two "
             f"servers' runs were interleaved so that other work weighs on both alike; each server runs torch on "
             f"{THREADS} thread).", "",
             textwrap.dedent(__doc__.split("\n\n", 2)[2]).strip().split("Writes its table")[0].strip(), "",
             f"Median over {rounds} rounds; each round sends 12 requests from 1 client, 6 from each of 4, 3 from "
             f"each of 16.", "",
             "| clients | mode | requests/s | generated tokens/s | median latency (s) | rows per batch "
             "| tokens/s vs one at a time |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for clients in CLIENTS:
        single = statistics.median(r["tokens_per_s"] for r in results[("one at a time", clients)])
        for mode in modes:
            rows = results[(mode, clients)]
            tokens = statistics.median(r["tokens_per_s"] for r in rows)
            lines.append(f"| {clients} | {mode} | {statistics.median(r['requests_per_s'] for r in rows):.2f} | "
                         f"{tokens:.0f} | {statistics.median(r['latency_s'] for r in rows):.2f} | "
                         f"{statistics.median(r['rows_per_batch'] for r in rows):.1f} | {tokens / single:.2f}x |")
    lines += ["", "`wait`: --batch-wait-ms, how long the first waiting request waits for others to join its batch."]
    lines.append(END)
    section = "\n".join(lines)
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.is_file() else ""
    if START in text and END in text:
        text = text[:text.index(START)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section + "\n"
    path.write_text(text)
    print(section)


if __name__ == "__main__":
    sys.exit(main())
