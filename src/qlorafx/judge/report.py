"""The comparison's results, as data (results.json) and as a page (report.md), both from one dict.

results.json holds every figure; report.md shows the ranking (Elo, win rate, relative score), each
pair's wins/ties/losses, the judge's first-position preference, and every unparseable verdict's
reason, with a warning at the top when the judge could not be read for a large share of them.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from qlorafx.judge.answers import Answer
from qlorafx.judge.compare import Judgment, Match
from qlorafx.judge.questions import Question
from qlorafx.judge.ratings import Estimate, Ratings, Record
from qlorafx.judge.spec import Comparison

SHOWN_UNPARSEABLE = 20  # verdicts quoted in report.md; results.json and judgments.jsonl hold all
QUOTE = 300
MOSTLY = 0.5  # above this share of unparseable verdicts, the report says the figures rest on few judgments


def _estimate(e: Estimate | None) -> dict[str, float] | None:
    return None if e is None else asdict(e)


def _record(r: Record) -> dict[str, Any]:
    return {**asdict(r), "win_rate": _estimate(r.win_rate)}


def results(comparison: Comparison, questions: list[Question], answers: dict[tuple[str, str], Answer],
            judgments: list[Judgment], matches: list[Match], ratings: Ratings) -> dict[str, Any]:
    j, r = comparison.judge, comparison.ratings
    ranking = sorted(comparison.contestants, key=lambda c: -ratings.elo[c.name].value)
    unparseable = [x for x in judgments if x.verdict is None]
    return {
        "description": comparison.description,
        "questions": {"path": comparison.questions or "bundled", "count": len(questions)},
        "judge": {"base_url": comparison.endpoints[j.endpoint].base_url, "model": j.model, "mode": j.mode,
                  "verdict_format": j.verdict_format if j.mode == "pairwise" else "scores",
                  "both_orders": j.both_orders, "custom_prompt": j.prompt is not None},
        "contestants": [{"name": c.name, "model": c.served_model, "base_url": comparison.endpoints[c.endpoint].base_url,
                         "run": c.run} for c in comparison.contestants],
        "counts": {"answers": len(answers), "answers_cut_at_max_tokens": sum(a.finish_reason == "length" for a in answers.values()),
                   "judgments": len(judgments), "unparseable": len(unparseable), "matches": len(matches),
                   "matches_without_outcome": sum(m.outcome is None for m in matches),
                   "inconsistent": sum(m.inconsistent for m in matches)},
        "ranking": [{"name": c.name, "elo": _estimate(ratings.elo[c.name]), **_record(ratings.contestants[c.name]),
                     "relative_score": _estimate(ratings.relative.get(c.name))} for c in ranking],
        "pairs": [{"a": a, "b": b, **_record(rec)} for (a, b), rec in ratings.pairs.items()],
        "position": asdict(ratings.position),
        "settings": {"elo": r.elo.model_dump(), "bootstrap_samples": r.bootstrap_samples, "confidence": r.confidence,
                     "seed": r.seed, "reference": r.reference, "matches": comparison.matches},
        "unparseable": [{"question_id": x.question_id, "first": x.first, "second": x.second, "reason": x.error,
                         "text": x.text[:QUOTE]} for x in unparseable],
    }


def _interval(e: dict | None, percent: bool = False) -> str:
    if e is None:
        return "n/a"
    if percent:
        return f"{e['value']:.1%} [{e['low']:.1%}, {e['high']:.1%}]"
    return f"{e['value']:.0f} [{e['low']:.0f}, {e['high']:.0f}]"


def warnings(res: dict[str, Any]) -> list[str]:
    counts, found = res["counts"], []
    if counts["judgments"] and counts["unparseable"]:
        share = counts["unparseable"] / counts["judgments"]
        if share > MOSTLY:
            rest = ("no figure rests on a verdict" if share == 1 else
                    f"the figures rest on the {counts['judgments'] - counts['unparseable']} it gave")
            found.append(f"**Most of the judge's verdicts were unparseable: {counts['unparseable']} of "
                         f"{counts['judgments']} ({share:.0%}).** So {rest}; use a judge that follows the verdict "
                         f"format, or a prompt it follows.")
        else:
            found.append(f"{counts['unparseable']} of {counts['judgments']} verdicts ({share:.0%}) were unparseable; "
                         f"their matches count as errors, not as results (see below).")
    if counts["answers_cut_at_max_tokens"]:
        found.append(f"{counts['answers_cut_at_max_tokens']} of {counts['answers']} answers stopped at "
                     f"generation.max_tokens; the judge saw them cut.")
    return found


def markdown(res: dict[str, Any], plot_name: str | None) -> str:
    j, s = res["judge"], res["settings"]
    lines = [f"# Judged comparison: {', '.join(r['name'] for r in res['ranking'])}", ""]
    if res["description"]:
        lines += [res["description"], ""]
    lines += [f"Judge `{j['model']}` ({j['base_url']}), mode {j['mode']}, "
              f"{'both orders' if j['both_orders'] else 'one order per pair'}; {res['questions']['count']} questions "
              f"({res['questions']['path']}); {res['counts']['judgments']} judgments, {res['counts']['matches']} matches.", ""]
    lines += [f"> {w}" for w in warnings(res)] + ([""] if warnings(res) else [])
    confidence = f"{s['confidence']:.0%}"
    relative = any(r["relative_score"] for r in res["ranking"])
    head = ["contestant", f"Elo [{confidence}]", "wins", "ties (flips)", "losses", "errors", f"win rate [{confidence}]"]
    lines += ["## Ranking", "", "| " + " | ".join(head + ([f"score vs {s['reference']}"] if relative else [])) + " |",
              "|" + "---|" * (len(head) + relative)]
    for r in res["ranking"]:
        cells = [r["name"], _interval(r["elo"]), str(r["wins"]), f"{r['ties']} ({r['inconsistent']})", str(r["losses"]),
                 str(r["errors"]), _interval(r["win_rate"], percent=True)]
        if relative:
            cells.append(_interval(r["relative_score"], percent=True) if r["name"] != s["reference"] else "reference")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Elo: K={s['elo']['k']:g}, start {s['elo']['initial']:g}, mean over {s['elo']['orderings']:,} random "
                  f"orderings of the matches. Intervals: {confidence} of the orderings (Elo), percentile bootstrap over "
                  f"the questions with {s['bootstrap_samples']:,} resamples (rates; a question's matches drawn together). A tie is half a win; a verdict that "
                  f"flips with the order is a tie (flips).", ""]
    if plot_name:
        lines += [f"![Elo and win rates]({plot_name})", ""]
    lines += ["## Pairs", "", "| A | B | A wins | ties (flips) | B wins | errors | A's win rate |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {p['a']} | {p['b']} | {p['wins']} | {p['ties']} ({p['inconsistent']}) | {p['losses']} | {p['errors']} "
              f"| {_interval(p['win_rate'], percent=True)} |" for p in res["pairs"]]
    pos = res["position"]
    preference = ("none can be given: no verdict picked a winner" if pos["preference"] is None else
                  f"{pos['preference']:.1%} of the verdicts that picked a winner picked the first answer (50% is no bias)")
    lines += ["", "## The judge's position preference", "",
              f"Of {pos['first'] + pos['second'] + pos['ties'] + pos['unparseable']} judgments, the answer shown first "
              f"won {pos['first']}, the one shown second {pos['second']}, ties {pos['ties']}, unparseable "
              f"{pos['unparseable']}. First-position preference: {preference}.", ""]
    if res["unparseable"]:
        lines += [f"## Unparseable verdicts ({len(res['unparseable'])})", "",
                  "| question | first | second | why |", "|---|---|---|---|"]
        lines += [f"| {u['question_id']} | {u['first']} | {u['second']} | {_cell(u['reason'])} |"
                  for u in res["unparseable"][:SHOWN_UNPARSEABLE]]
        more = len(res["unparseable"]) - SHOWN_UNPARSEABLE
        lines += ["", (f"{more} more in " if more > 0 else "All replies in full in ") + "`judgments.jsonl`.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")
