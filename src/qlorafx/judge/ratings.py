"""Matches -> figures: wins, ties and losses; win rates with bootstrap intervals; Elo over random
orderings of the matches with intervals; the judge's first-position preference; relative scores.

Elo as in the QLoRA paper: every contestant starts at ``initial``; a match moves the two ratings by
K * (outcome - expected), expected = 1 / (1 + 10 ** ((r_b - r_a) / 400)); since the result depends
on the order of the matches, it is computed over many random orderings and reported as the mean,
with the central ``confidence`` share of the orderings as the interval. A tie is half a win.
Win rate = (wins + ties / 2) / matches. Relative score (mode score) = the contestant's total
score / the reference's total score over the same judgments, both orders included.
Intervals are percentile bootstraps over the QUESTIONS: ``bootstrap_samples`` resamples of the
questions with replacement, each drawn question bringing all its matches. A question's matches are
not independent draws (its two orders are judged on the same two answers; a contestant meets every
opponent on it), so resampling matches one by one would make the intervals too narrow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qlorafx.judge.compare import Judgment, Match
from qlorafx.judge.spec import RatingsSpec

ORDER_CELLS = 4_000_000  # indices held at once by the Elo orderings (16 MB) and the resamples (32 MB)


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Record:
    """Matches of one contestant (or of a against b), outcomes seen from its side."""
    wins: int
    ties: int
    losses: int
    inconsistent: int  # ties that were a flip of the verdict with the order
    errors: int  # matches without an outcome (an unparseable judgment)
    win_rate: Estimate | None  # None without a match that has an outcome


@dataclass(frozen=True)
class Position:
    """How the judge's parseable verdicts fall by position (judgments, not matches)."""
    first: int
    second: int
    ties: int
    unparseable: int
    preference: float | None  # first / (first + second): 0.5 is no bias; None without a decided verdict


def _bounds(confidence: float) -> tuple[float, float]:
    return 50 * (1 - confidence), 50 * (1 + confidence)  # percentiles


def _resampled(n: int, samples: int, rng: np.random.Generator):
    """Index arrays of ``samples`` resamples with replacement of n items, a block of rows at a time (bounded memory)."""
    block = max(1, ORDER_CELLS // n)
    for start in range(0, samples, block):
        yield rng.integers(0, n, size=(min(block, samples - start), n))


def _by_question(values: list, questions: list[str]) -> np.ndarray:
    """(questions, columns): the values summed per question, a column per component, and a last column counting them."""
    ids = {q: i for i, q in enumerate(dict.fromkeys(questions))}
    x = np.asarray(values, dtype=float).reshape(len(values), -1)
    sums = np.zeros((len(ids), x.shape[1] + 1))
    np.add.at(sums, [ids[q] for q in questions], np.hstack([x, np.ones((len(x), 1))]))
    return sums


def bootstrap_mean(values: list[float], questions: list[str], spec: RatingsSpec, rng: np.random.Generator) -> Estimate:
    """The mean of ``values`` (each from the question beside it), and the percentile interval of the means over
    resamples of the questions with replacement (a drawn question brings all its values)."""
    per_question = _by_question(values, questions)
    means = np.concatenate([per_question[picks, 0].sum(axis=1) / per_question[picks, 1].sum(axis=1)
                            for picks in _resampled(len(per_question), spec.bootstrap_samples, rng)])
    low, high = np.percentile(means, _bounds(spec.confidence))
    return Estimate(float(np.mean(values)), float(low), float(high))


def record(outcomes: list[tuple[float | None, bool, str]], spec: RatingsSpec, rng: np.random.Generator) -> Record:
    """``outcomes``: (1 win / 0.5 tie / 0 loss / None error, inconsistent, question id) per match."""
    decided = [(o, q) for o, _, q in outcomes if o is not None]
    values = [o for o, _ in decided]
    return Record(wins=values.count(1.0), ties=values.count(0.5), losses=values.count(0.0),
                  inconsistent=sum(1 for o, flip, _ in outcomes if o is not None and flip),
                  errors=len(outcomes) - len(decided),
                  win_rate=bootstrap_mean(values, [q for _, q in decided], spec, rng) if decided else None)


def elo(matches: list[Match], names: list[str], spec: RatingsSpec, rng: np.random.Generator) -> dict[str, Estimate]:
    """Mean Elo over ``spec.elo.orderings`` random orderings of the matches with an outcome, and its interval.

    The orderings run side by side (one row of ratings each; a block of rows at a time, to bound memory):
    each step plays every row's next match."""
    played = [m for m in matches if m.outcome is not None]
    index = {name: i for i, name in enumerate(names)}
    ratings = np.full((spec.elo.orderings, len(names)), float(spec.elo.initial))
    if played:
        a = np.array([index[m.a] for m in played])
        b = np.array([index[m.b] for m in played])
        outcome = np.array([m.outcome for m in played])
        block = max(1, ORDER_CELLS // len(played))
        for start in range(0, spec.elo.orderings, block):
            rows = np.arange(start, min(start + block, spec.elo.orderings))
            order = rng.permuted(np.tile(np.arange(len(played), dtype=np.int32), (len(rows), 1)), axis=1)
            for step in range(len(played)):
                m = order[:, step]
                ra, rb = ratings[rows, a[m]], ratings[rows, b[m]]
                change = spec.elo.k * (outcome[m] - 1 / (1 + 10 ** ((rb - ra) / 400)))
                ratings[rows, a[m]] += change
                ratings[rows, b[m]] -= change
    low, high = np.percentile(ratings, _bounds(spec.confidence), axis=0)
    return {name: Estimate(float(ratings[:, i].mean()), float(low[i]), float(high[i])) for name, i in index.items()}


def relative_score(matches: list[Match], name: str, reference: str, spec: RatingsSpec,
                   rng: np.random.Generator) -> Estimate | None:
    """Total score of ``name`` / total score of ``reference`` over their scored matches; bootstrapped over the
    questions."""
    scored = [m for m in matches if m.scores is not None and {m.a, m.b} == {name, reference}]
    pairs = [(m.scores[0], m.scores[1]) if m.a == name else (m.scores[1], m.scores[0]) for m in scored]
    if not pairs:
        return None
    x = np.asarray(pairs, dtype=float)
    per_question = _by_question(pairs, [m.question_id for m in scored])
    ratios = np.concatenate([per_question[picks, 0].sum(axis=1) / per_question[picks, 1].sum(axis=1)
                             for picks in _resampled(len(per_question), spec.bootstrap_samples, rng)])
    low, high = np.percentile(ratios, _bounds(spec.confidence))
    return Estimate(float(x[:, 0].sum() / x[:, 1].sum()), float(low), float(high))


def position(judgments: list[Judgment]) -> Position:
    winners = [j.verdict.winner for j in judgments if j.verdict is not None]
    first, second = winners.count("first"), winners.count("second")
    return Position(first, second, winners.count("tie"), len(judgments) - len(winners),
                    first / (first + second) if first + second else None)


@dataclass(frozen=True)
class Ratings:
    contestants: dict[str, Record]  # every match of each contestant
    pairs: dict[tuple[str, str], Record]  # a against b, from a's side
    elo: dict[str, Estimate]
    position: Position
    relative: dict[str, Estimate | None]  # against spec.reference (mode score); empty otherwise


def rate(names: list[str], matches: list[Match], judgments: list[Judgment], spec: RatingsSpec, mode: str) -> Ratings:
    rng = np.random.default_rng(spec.seed)
    pair_outcomes: dict[tuple[str, str], list] = {}
    for m in matches:
        pair_outcomes.setdefault((m.a, m.b), []).append((m.outcome, m.inconsistent, m.question_id))
    per_contestant = {
        name: [(m.outcome if m.a == name or m.outcome is None else 1 - m.outcome, m.inconsistent, m.question_id)
               for m in matches if name in (m.a, m.b)]
        for name in names}
    reference = spec.reference
    return Ratings(
        contestants={name: record(outcomes, spec, rng) for name, outcomes in per_contestant.items()},
        pairs={pair: record(outcomes, spec, rng) for pair, outcomes in pair_outcomes.items()},
        elo=elo(matches, names, spec, rng),
        position=position(judgments),
        relative={name: relative_score(matches, name, reference, spec, rng) for name in names if name != reference}
        if mode == "score" and reference else {},
    )
