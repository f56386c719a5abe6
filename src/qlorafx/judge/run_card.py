"""A contestant that is a qlorafx run gets the comparison's figures in its run.json and model card.

Each comparison is one entry of run.json's ``judged`` list, keyed by the comparison's output_dir
(a rerun replaces its entry), written atomically; then the run's report is rewritten, and the
card's "Judged comparisons" section shows it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qlorafx.judge.files import write_json
from qlorafx.judge.spec import Comparison, problem, problems_error
from qlorafx.recipe.sources import SourceMap
from qlorafx.run_files import FINISHED_MARKER

RUN_KEY = "judged"


def check_runs(comparison: Comparison, sources: SourceMap) -> None:
    """Every contestant's run is a finished qlorafx run (before any request is made)."""
    from qlorafx.report.run import RunError, read_run

    problems = []
    for i, contestant in enumerate(comparison.contestants):
        if contestant.run is None:
            continue
        try:
            read_run(contestant.run)
        except RunError as err:
            problems.append(problem(sources, f"contestants.{i}.run", str(err)))
    if problems:
        raise problems_error(sources, problems)


def entry(results: dict[str, Any], name: str, output_dir: Path) -> dict[str, Any]:
    ranking = results["ranking"]
    mine = next(r for r in ranking if r["name"] == name)
    return {"comparison": str(output_dir), "description": results["description"], "contestant": name,
            "judge": results["judge"]["model"], "mode": results["judge"]["mode"], "questions": results["questions"]["count"],
            "rank": [r["name"] for r in ranking].index(name) + 1, "of": len(ranking),
            "opponents": [r["name"] for r in ranking if r["name"] != name],
            "elo": mine["elo"], "win_rate": mine["win_rate"], "wins": mine["wins"], "ties": mine["ties"],
            "losses": mine["losses"], "relative_score": mine["relative_score"], "reference": results["settings"]["reference"],
            "unparseable": results["counts"]["unparseable"], "judgments": results["counts"]["judgments"],
            "confidence": results["settings"]["confidence"]}


def record_in_runs(comparison: Comparison, results: dict[str, Any]) -> list[Path]:
    """Add (or replace) this comparison's entry in each contestant run's run.json and rewrite its model card."""
    from qlorafx.report import write_report

    output_dir = Path(comparison.output_dir)
    cards = []
    for contestant in comparison.contestants:
        if contestant.run is None:
            continue
        run_json = Path(contestant.run) / FINISHED_MARKER
        status = json.loads(run_json.read_text(encoding="utf-8"))
        kept = [e for e in status.get(RUN_KEY) or [] if not (e.get("comparison") == str(output_dir)
                                                             and e.get("contestant") == contestant.name)]
        status[RUN_KEY] = [*kept, entry(results, contestant.name, output_dir)]
        write_json(run_json, status)
        cards.append(write_report(contestant.run).card)
    return cards
