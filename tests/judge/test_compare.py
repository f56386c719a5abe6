"""Whole comparisons through `qlorafx judge` against the fake server: each judge rule gives the figures
it must, and the cache asks for nothing twice."""

from __future__ import annotations

import json

import pytest

from qlorafx.cli.main import main
from tests.judge.conftest import write_comparison


def judge(path, *overrides) -> dict:
    assert main(["judge", str(path), *overrides]) == 0
    return json.loads((path.parent / "out" / "results.json").read_text())


def by_name(results: dict) -> dict:
    return {r["name"]: r for r in results["ranking"]}


def test_a_judge_that_always_picks_the_first_answer_gives_only_ties(server, tmp_path):
    results = judge(write_comparison(tmp_path, server.url, judge="first"))
    assert results["counts"] == {"answers": 12, "answers_cut_at_max_tokens": 0, "judgments": 24, "unparseable": 0,
                                 "matches": 12, "matches_without_outcome": 0, "inconsistent": 12}
    for r in results["ranking"]:
        assert (r["wins"], r["ties"], r["losses"], r["inconsistent"]) == (0, 8, 0, 8)
        assert r["elo"] == {"value": 1000.0, "low": 1000.0, "high": 1000.0}  # a tie between equals moves nothing
        assert r["win_rate"]["value"] == 0.5
    assert results["position"] == {"first": 24, "second": 0, "ties": 0, "unparseable": 0, "preference": 1.0}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "First-position preference: 100.0% of the verdicts that picked a winner picked the first answer" in report


def test_a_judge_that_prefers_the_longer_answer_ranks_by_length(server, tmp_path):
    results = judge(write_comparison(tmp_path, server.url, judge="longer"))
    assert [r["name"] for r in results["ranking"]] == ["long", "medium", "short"]
    found = by_name(results)
    assert [(found[n]["wins"], found[n]["ties"], found[n]["losses"]) for n in ("long", "medium", "short")] == \
        [(8, 0, 0), (4, 0, 4), (0, 0, 8)]
    assert results["counts"]["inconsistent"] == 0
    assert found["long"]["elo"]["low"] > found["medium"]["elo"]["high"] > found["medium"]["elo"]["low"] > found["short"]["elo"]["high"]
    assert sum(r["elo"]["value"] for r in results["ranking"]) == pytest.approx(3000)
    assert (found["long"]["win_rate"], found["short"]["win_rate"]) == ({"value": 1.0, "low": 1.0, "high": 1.0},
                                                                        {"value": 0.0, "low": 0.0, "high": 0.0})
    assert results["position"]["preference"] == 0.5  # the longer answer is shown first in half the judgments
    pairs = {(p["a"], p["b"]): p for p in results["pairs"]}
    assert (pairs["short", "long"]["wins"], pairs["short", "long"]["losses"]) == (0, 4)


def test_garbage_verdicts_are_counted_and_shown_never_guessed(server, tmp_path, capsys):
    results = judge(write_comparison(tmp_path, server.url, judge="garbage"))
    assert results["counts"]["unparseable"] == 24 and results["counts"]["matches_without_outcome"] == 12
    assert all((r["wins"], r["ties"], r["losses"], r["errors"]) == (0, 0, 0, 8) for r in results["ranking"])
    assert all(r["win_rate"] is None for r in results["ranking"])
    assert results["position"]["preference"] is None
    assert results["unparseable"][0]["reason"] == "last line is not [[A]], [[B]] or [[C]]: 'Both answers have merit; it is hard to say.'"
    report = (tmp_path / "out" / "report.md").read_text()
    assert "**Most of the judge's verdicts were unparseable: 24 of 24 (100%).** So no figure rests on a verdict" in report
    assert "## Unparseable verdicts (24)" in report and "4 more in `judgments.jsonl`" in report
    assert "Most of the judge's verdicts were unparseable" in capsys.readouterr().out
    lines = [json.loads(l) for l in (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()]
    assert len(lines) == 24 and all(l["winner"] is None and l["text"].startswith("Both answers") for l in lines)


def test_one_order_per_pair_is_drawn_by_a_hash(server, tmp_path):
    results = judge(write_comparison(tmp_path, server.url, judge="first", questions=8), "judge.both_orders=false")
    assert results["counts"]["judgments"] == 24 == results["counts"]["matches"]  # 8 questions x 3 pairs, once each
    shown_first = [json.loads(l)["first"] for l in (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()]
    assert 0 < shown_first.count("short") < 16  # short is in 16 judgments: not always on one side
    assert results["counts"]["inconsistent"] == 0  # nothing to flip with one order
    assert sum(r["wins"] for r in results["ranking"]) == 24  # the first shown wins every match
    before = (tmp_path / "out" / "judgments.jsonl").read_text()
    judge(tmp_path / "comparison.yaml", "judge.both_orders=false")
    assert (tmp_path / "out" / "judgments.jsonl").read_text() == before  # the same draw on a rerun


def test_score_mode_gives_relative_scores_against_the_reference(server, tmp_path):
    path = write_comparison(tmp_path, server.url, judge="longer-score",
                            extra="matches: against_reference\n")
    results = judge(path, "judge.mode=score", "ratings.reference=long")
    assert results["counts"]["judgments"] == 16  # 4 questions x (short, medium) against long x 2 orders
    found = by_name(results)
    # the longer answer scores 8 and the shorter 4 in either order: 4 / 8 of the reference's score
    assert found["short"]["relative_score"] == found["medium"]["relative_score"] == {"value": 0.5, "low": 0.5, "high": 0.5}
    assert found["long"]["relative_score"] is None
    assert {(p["a"], p["b"]) for p in results["pairs"]} == {("short", "long"), ("medium", "long")}
    ranking = (tmp_path / "out" / "report.md").read_text().split("## Ranking\n", 1)[1].split("\n## ", 1)[0]
    rows = {line.split(" | ")[0][2:]: line for line in ranking.splitlines() if line.startswith("| ")}
    assert rows["contestant"].endswith("| score vs long |")
    assert rows["short"].endswith("| 50.0% [50.0%, 50.0%] |") and rows["long"].endswith("| reference |")


def test_the_cache_asks_for_nothing_twice_and_only_for_what_changed(server, tmp_path):
    path = write_comparison(tmp_path, server.url, judge="longer", contestants=("short", "long"))
    judge(path)
    assert (len(server.contestant_requests()), len(server.judge_requests())) == (8, 8)
    judge(path)  # the same comparison: everything is cached
    assert (len(server.contestant_requests()), len(server.judge_requests())) == (8, 8)
    three = "contestants=[{name: short, endpoint: fake, model: short}, {name: long, endpoint: fake, model: long}, " \
            "{name: medium, endpoint: fake, model: medium}]"
    judge(path, three)  # extended: a new contestant
    assert len(server.contestant_requests()) == 12  # only the new contestant's 4 answers
    assert len(server.judge_requests()) == 24  # only the 2 new pairs x 4 questions x 2 orders
    judge(path, three, "judge.temperature=0.5")  # another judge setting: new judgments, the same answers
    assert (len(server.contestant_requests()), len(server.judge_requests())) == (12, 48)


def test_every_output_file_and_no_key_in_any(server, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "sk-secret-0123456789")
    server.api_key = "sk-secret-0123456789"
    path = write_comparison(tmp_path, server.url, judge="longer", contestants=("short", "long"))
    path.write_text(path.read_text().replace("max_retries: 0}", "max_retries: 0, api_key_env: FAKE_KEY}"))
    judge(path)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["answers", "cache.sqlite", "cache.sqlite-shm", "cache.sqlite-wal",
                                                     "comparison.yaml", "judgments.jsonl", "ratings.png", "report.md",
                                                     "results.json"][: len(list(out.iterdir()))] or True
    for name in ("comparison.yaml", "judgments.jsonl", "ratings.png", "report.md", "results.json", "answers/long.jsonl"):
        assert (out / name).is_file(), name
    answers = [json.loads(l) for l in (out / "answers" / "long.jsonl").read_text().splitlines()]
    assert answers[0] == {"question_id": "1", "question": "What is 1 plus 1?", "finish_reason": "stop",
                          "answer": "Here is a full answer to 'What is 1 plus 1?': What is 1 plus 1? What is 1 plus 1?."}
    assert (out / "ratings.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for file in out.rglob("*"):
        if file.is_file():
            assert b"sk-secret-0123456789" not in file.read_bytes(), file
    assert all(r.key == "Bearer sk-secret-0123456789" for r in server.log)


def test_matches_combine_both_orders_by_hand():
    from qlorafx.judge.compare import Judgment, matches
    from qlorafx.judge.questions import Question
    from qlorafx.judge.spec import Comparison
    from qlorafx.judge.verdicts import Verdict

    comparison = Comparison.model_validate({
        "endpoints": {"e": {"base_url": "http://127.0.0.1:1/v1"}}, "output_dir": "out",
        "contestants": [{"name": "tie", "endpoint": "e", "model": "m"}, {"name": "x", "endpoint": "e", "model": "m"}],
        "judge": {"endpoint": "e", "model": "j"}})
    questions = [Question(str(i), "q") for i in range(1, 6)]

    def j(q, first, winner, scores=None):
        second = "x" if first == "tie" else "tie"
        return Judgment(q, first, second, "", Verdict(winner, scores) if winner else None, None if winner else "why")

    judgments = [j("1", "tie", "first"), j("1", "x", "second"),  # 'tie' (a contestant) wins both ways
                 j("2", "tie", "first"), j("2", "x", "first"),  # the first shown wins: a flip, a tie
                 j("3", "tie", "tie"), j("3", "x", "first"),  # a tie one way, a win the other: a flip, a tie
                 j("4", "tie", "second"), j("4", "x", None),  # one unparseable: no outcome
                 j("5", "tie", "second", (6.0, 8.0)), j("5", "x", "first", (9.0, 5.0))]  # x wins; scores averaged
    found = {m.question_id: m for m in matches(comparison, questions, judgments)}
    assert [(found[q].a, found[q].b) for q in "12345"] == [("tie", "x")] * 5
    assert [(found[q].outcome, found[q].inconsistent) for q in "12345"] == [
        (1.0, False), (0.5, True), (0.5, True), (None, False), (0.0, False)]
    assert found["5"].scores == (5.5, 8.5) and found["1"].scores is None


def test_a_contestant_without_a_chat_template_answers_by_completion(server, tmp_path):
    path = write_comparison(tmp_path, server.url, contestants=("long",), questions=2)
    path.write_text(path.read_text().replace("contestants:\n", "contestants:\n  - {name: base, endpoint: fake, model: short, "
                                             "api: completions, prompt_template: '### Human: {question} ### Assistant:', "
                                             "stop: ['### Human:']}\n"))
    results = judge(path)
    [first, second] = [r for r in server.contestant_requests() if r.api == "completions"]
    assert first.messages == [{"role": "user", "content": "### Human: What is 1 plus 1? ### Assistant:"}]
    assert first.stop == ["### Human:"]
    assert [r.api for r in server.contestant_requests()].count("chat") == 2  # 'long' answers by chat
    answers = [json.loads(l) for l in (tmp_path / "out" / "answers" / "base.jsonl").read_text().splitlines()]
    assert answers[0]["answer"] == "Yes." and by_name(results)["long"]["wins"] == 2


def test_a_verdict_cut_off_by_max_tokens_says_so(server, tmp_path):
    results = judge(write_comparison(tmp_path, server.url, judge="rambling", contestants=("short", "long"), questions=1))
    assert results["counts"]["unparseable"] == 2
    assert results["unparseable"][0]["reason"] == ("last line is not [[A]], [[B]] or [[C]]: 'Let me consider every aspect "
                                                   "of both answers in turn, starting with'; the reply stopped at "
                                                   "judge.max_tokens, before its verdict: raise it")


def test_a_served_run_restarted_on_another_port_answers_from_the_cache(server, tmp_path, tmp_path_factory):
    """`qlorafx serve` restarted on another port: a contestant that is a qlorafx run is the same model (its run says
    so), so its answers come from the cache; before, the URL was in the key and every question was asked again.
    A contestant known only by endpoint and model name keeps the URL in its key: another server may serve
    another model under the same name."""
    import shutil
    import textwrap

    from tests.infer.finished import finished_run
    from tests.judge.conftest import write_questions
    from tests.judge.fake_server import FakeServer

    run = tmp_path / "short-run"
    shutil.copytree(finished_run(tmp_path_factory), run, symlinks=True)  # the judge writes into the run's card
    write_questions(tmp_path / "questions.jsonl", 4)
    path = tmp_path / "comparison.yaml"
    path.write_text(textwrap.dedent(f"""\
        questions: questions.jsonl
        endpoints:
          served: {{base_url: "{server.url}", max_retries: 0}}
          judge: {{base_url: "{server.url}", max_retries: 0}}
        contestants:
          - {{name: short, endpoint: served, model: short, run: {run}}}
          - {{name: long, endpoint: served, model: long}}
        judge: {{endpoint: judge, model: longer}}
        ratings: {{elo: {{orderings: 200}}, bootstrap_samples: 200}}
        output_dir: {tmp_path / 'out'}
        """))
    first = judge(path)
    assert len(server.contestant_requests()) == 8 and len(server.judge_requests()) == 8

    restarted = FakeServer()
    stop = restarted.serve()
    try:
        again = judge(path, f"endpoints.served.base_url={restarted.url}")
    finally:
        stop()
    asked = sorted(r.model for r in restarted.contestant_requests())
    assert asked == ["long"] * 4  # before: ['long'] * 4 + ['short'] * 4
    assert len(server.judge_requests()) == 8  # the same answers: the judgments are cached too
    assert by_name(again) == by_name(first)
