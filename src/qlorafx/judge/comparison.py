"""A comparison, top to bottom: check everything, ask the contestants, ask the judge, rate, report.

    comparison.yaml --load--> Comparison --answers--> cache --judgments--> cache --matches--> ratings --> files

Every check that needs no request comes first (the YAML, the question file, the runs, the API keys),
then one cheap request per endpoint (is it there, does it take the key, does it serve the model),
and only then the paid requests, each cached as it arrives.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from qlorafx.errors import UserError
from qlorafx.judge.answers import Answer, gather_answers, missing_answers
from qlorafx.judge.cache import Cache
from qlorafx.judge.client import Endpoint, api_keys
from qlorafx.judge.compare import Judgment, judge_all, matches, missing_judgments, schedule
from qlorafx.judge.files import write_atomic, write_json, write_jsonl
from qlorafx.judge.questions import Question, read_questions
from qlorafx.judge.ratings import rate
from qlorafx.judge.report import markdown, results as results_of, warnings
from qlorafx.judge.run_card import check_runs, record_in_runs
from qlorafx.judge.spec import Comparison, load_comparison
from qlorafx.run_files import FINISHED_MARKER, RECIPE_FILE

RESULTS, REPORT, PLOT, JUDGMENTS, ANSWERS, RESOLVED, CACHE = (
    "results.json", "report.md", "ratings.png", "judgments.jsonl", "answers", "comparison.yaml", "cache.sqlite")


@dataclass
class Prepared:
    comparison: Comparison
    questions: list[Question]
    keys: dict[str, str | None]
    cache: Cache

    @property
    def output_dir(self) -> Path:
        return Path(self.comparison.output_dir)


def prepare(path: str | Path, overrides: list[str], dry_run: bool = False) -> Prepared:
    """Every check that needs no request; a dry run writes nothing."""
    comparison, sources = load_comparison(path, overrides)
    questions = read_questions(comparison.questions)
    check_runs(comparison, sources)
    keys = api_keys(comparison, sources)
    output_dir = Path(comparison.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"output_dir {output_dir} is a file; give the comparison a folder")
    if (output_dir / RECIPE_FILE).exists() or (output_dir / FINISHED_MARKER).exists():
        raise UserError(f"output_dir {output_dir} holds a qlorafx training run; give the comparison a folder of its own")
    return Prepared(comparison, questions, keys, Cache(Path(comparison.cache or output_dir / CACHE), create=not dry_run))


def plan(p: Prepared) -> str:
    """What a run would ask for, from the cache alone (no request)."""
    c = p.comparison
    total_answers = len(c.contestants) * len(p.questions)
    missing = missing_answers(c, p.questions, p.cache)
    judgments = len(schedule(c, p.questions))
    lines = [f"{len(p.questions)} questions, {len(c.contestants)} contestants, {judgments} judgments "
             f"({'both orders' if c.judge.both_orders else 'one order'}, {c.matches.replace('_', ' ')})",
             f"answers: {total_answers - missing} cached, {missing} to ask for"]
    if missing:
        lines.append(f"judgments: up to {judgments} to ask for (which are cached is known once the answers are)")
    else:
        answers = asyncio.run(gather_answers(c, p.questions, {}, p.cache))  # all cached: no endpoint needed
        todo = missing_judgments(c, p.questions, answers, p.cache)
        lines.append(f"judgments: {judgments - todo} cached, {todo} to ask for")
    return "\n".join(lines)


def _bar(total: int, what: str) -> tuple[Any, Callable[[], None]]:
    from tqdm import tqdm

    bar = tqdm(total=total, desc=what, unit="", disable=None, leave=False)  # disable=None: off when not a terminal
    return bar, lambda: bar.update(1)


async def _ask(p: Prepared) -> tuple[dict[tuple[str, str], Answer], list[Judgment]]:
    c = p.comparison
    endpoints = {name: Endpoint(name, spec, p.keys[name]) for name, spec in c.endpoints.items()}
    try:
        checks = [(c.contestants[i].endpoint, c.contestants[i].served_model, f"contestants.{i}.model")
                  for i in range(len(c.contestants))] + [(c.judge.endpoint, c.judge.model, "judge.model")]
        for name, model, where in dict.fromkeys(checks):
            await endpoints[name].check_model(model, where)
        bar, done = _bar(len(c.contestants) * len(p.questions), "answers")
        with bar:
            answers = await gather_answers(c, p.questions, endpoints, p.cache, done)
        bar, done = _bar(len(schedule(c, p.questions)), "judgments")
        with bar:
            judgments = await judge_all(c, p.questions, answers, endpoints[c.judge.endpoint], p.cache, done)
        return answers, judgments
    finally:
        for endpoint in endpoints.values():
            await endpoint.close()


def write_outputs(p: Prepared, answers: dict[tuple[str, str], Answer], judgments: list[Judgment]) -> dict[str, Any]:
    """Rate the judgments and write every output file, each whole or not at all."""
    import yaml

    from qlorafx.judge.plot import plot_results

    c, out = p.comparison, p.output_dir
    found = matches(c, p.questions, judgments)
    ratings = rate([x.name for x in c.contestants], found, judgments, c.ratings, c.judge.mode)
    res = results_of(c, p.questions, answers, judgments, found, ratings)
    write_atomic(out / RESOLVED, yaml.safe_dump(c.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
    for contestant in c.contestants:
        write_jsonl(out / ANSWERS / f"{contestant.name}.jsonl",
                    [{"question_id": q.id, "question": q.text, "answer": answers[contestant.name, q.id].text,
                      "finish_reason": answers[contestant.name, q.id].finish_reason} for q in p.questions])
    write_jsonl(out / JUDGMENTS, [{"question_id": j.question_id, "first": j.first, "second": j.second,
                                   "winner": j.verdict.winner if j.verdict else None,
                                   "scores": list(j.verdict.scores) if j.verdict and j.verdict.scores else None,
                                   "error": j.error, "text": j.text} for j in judgments])
    plot_results(res, out / PLOT)
    write_json(out / RESULTS, res)
    write_atomic(out / REPORT, markdown(res, PLOT))
    record_in_runs(c, res)
    return res


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped the requests; every reply received is in the cache."""


async def _ask_until_stopped(p: Prepared) -> tuple[dict[tuple[str, str], Answer], list[Judgment]]:
    """_ask, with SIGINT and SIGTERM cancelling it from inside the event loop.

    A KeyboardInterrupt raised by a Python-level handler lands in whatever task is running, which keeps
    it as its exception and, never awaited, prints its traceback at exit; cancelling the main task lets
    every request stop in order and the interruption come out as one Interrupted."""
    loop, task, caught, installed = asyncio.get_running_loop(), asyncio.current_task(), [], {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous = signal.getsignal(signum)
            loop.add_signal_handler(signum, lambda s=signum: (caught.append(s), task.cancel()))
            installed[signum] = previous
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread, or no such signals here
            pass
    try:
        return await _ask(p)
    except asyncio.CancelledError:
        if caught:
            raise Interrupted(signal.Signals(caught[0]).name) from None
        raise
    finally:
        for signum, previous in installed.items():
            loop.remove_signal_handler(signum)
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)


def run_comparison(p: Prepared) -> dict[str, Any]:
    answers, judgments = asyncio.run(_ask_until_stopped(p))
    try:
        return write_outputs(p, answers, judgments)
    except OSError as err:  # each file is whole or absent; what was paid for is in the cache
        where = f"{err.filename}: " if err.filename else ""
        raise UserError(f"cannot write the comparison's results in {p.output_dir} ({where}{err.strerror or err}); "
                        f"the answers and judgments received are cached: fix it and rerun") from None


def summary(res: dict[str, Any]) -> str:
    """The ranking in a few terminal lines, with the report's warnings."""
    lines = [f"{'contestant':<24} {'Elo':>6} {'interval':>13} {'W/T/L':>12} {'win rate':>9}"]
    for r in res["ranking"]:
        e, w = r["elo"], r["win_rate"]
        interval = f"[{e['low']:.0f}, {e['high']:.0f}]"
        record = f"{r['wins']}/{r['ties']}/{r['losses']}"
        rate = f"{w['value']:.1%}" if w else "n/a"
        lines.append(f"{r['name'][:24]:<24} {e['value']:>6.0f} {interval:>13} {record:>12} {rate:>9}")
    pos = res["position"]["preference"]
    lines.append(f"first-position preference: {'n/a' if pos is None else f'{pos:.1%}'}; "
                 f"unparseable verdicts: {res['counts']['unparseable']} of {res['counts']['judgments']}")
    return "\n".join([*lines, *(w.replace("**", "") for w in warnings(res))])
