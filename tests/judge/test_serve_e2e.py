"""End to end: `qlorafx serve` (a real process) serves two tiny finetunes and their base; they are the
contestants, and one of them is the judge. A tiny random-weight model cannot follow the verdict format,
so most verdicts are unparseable: the report must say so, and the comparison still completes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from qlorafx.cli.main import main
from tests.infer.finished import finished_chat_run, finished_run
from tests.judge.conftest import write_questions


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`qlorafx serve alpaca=RUN chat=RUN` on a free loopback port, until the module's tests are done."""
    runs = {"alpaca": finished_run(tmp_path_factory), "chat": finished_chat_run(tmp_path_factory)}
    # the judge writes into its contestants' run.json and model card: these runs are shared, so put them back after
    kept = {path: path.read_bytes() for run in runs.values() for path in (run / "run.json", run / "README.md")}
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "qlorafx.cli.main", "serve", *(f"{n}={r}" for n, r in runs.items()),
                                "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 180
    while True:
        assert process.poll() is None, process.communicate()[0][-3000:]
        try:
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "qlorafx serve did not start"
        time.sleep(0.5)
    yield f"{url}/v1", runs
    process.terminate()
    process.wait(timeout=60)
    for path, data in kept.items():
        path.write_bytes(data)


@pytest.mark.slow
def test_tiny_served_contestants_and_judge(served, tmp_path, capsys):
    url, runs = served
    write_questions(tmp_path / "questions.jsonl", 2)
    path = tmp_path / "comparison.yaml"
    path.write_text(textwrap.dedent(f"""\
        questions: questions.jsonl
        endpoints:
          serve: {{base_url: "{url}", concurrency: 4, max_retries: 1}}
        contestants:
          - {{name: alpaca, endpoint: serve, model: alpaca, run: {runs['alpaca']}}}
          - {{name: chat, endpoint: serve, model: chat, run: {runs['chat']}}}
          - {{name: base, endpoint: serve, model: base_model, api: completions,
             prompt_template: "### Instruction:\\n{{question}}\\n\\n### Response:\\n"}}
        generation: {{max_tokens: 8, temperature: 0}}
        judge:                  # a prompt short enough for the tiny model's 512 positions
          endpoint: serve
          model: chat
          max_tokens: 8
          prompt: {{user: "Q: {{question}}\\nA: {{answer_a}}\\nB: {{answer_b}}\\nBetter, [[A]] or [[B]]?"}}
        ratings: {{elo: {{orderings: 200}}, bootstrap_samples: 200}}
        output_dir: {tmp_path / 'out'}
        """))
    assert main(["judge", str(path)]) == 0
    out = capsys.readouterr().out
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    counts = results["counts"]
    assert (counts["answers"], counts["judgments"], counts["matches"]) == (6, 12, 6)
    assert counts["answers_cut_at_max_tokens"] == 6  # 8 tokens: every answer is cut
    assert counts["unparseable"] > counts["judgments"] / 2
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"**Most of the judge's verdicts were unparseable: {counts['unparseable']} of 12" in report
    assert "Most of the judge's verdicts were unparseable" in out
    cut = [u for u in results["unparseable"] if u["reason"].endswith("the reply stopped at judge.max_tokens, before its verdict: raise it")]
    assert cut  # 8 tokens: the tiny judge is cut off, and the report says so
    answers = [json.loads(l) for l in (tmp_path / "out" / "answers" / "alpaca.jsonl").read_text().splitlines()]
    assert len(answers) == 2 and all(a["finish_reason"] == "length" and a["answer"] for a in answers)
    for name, run in runs.items():  # each run's card shows the comparison, unparseable share included
        [entry] = json.loads((run / "run.json").read_text())["judged"]
        assert entry["contestant"] == name and entry["unparseable"] == counts["unparseable"]
        assert f"{counts['unparseable']} of 12 verdicts unparseable" in (run / "README.md").read_text()
