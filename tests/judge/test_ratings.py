"""Elo, bootstrap intervals, relative scores and position preference against small cases worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from qlorafx.judge.compare import Judgment, Match
from qlorafx.judge.ratings import bootstrap_mean, elo, position, rate, relative_score
from qlorafx.judge.spec import RatingsSpec
from qlorafx.judge.verdicts import Verdict

SPEC = RatingsSpec(bootstrap_samples=10_000, elo={"orderings": 10_000})


def match(a: str, b: str, outcome: float | None, inconsistent: bool = False, scores=None, q: str = "1") -> Match:
    return Match(q, a, b, outcome, inconsistent, scores)


def test_elo_in_one_order_by_hand():
    # A beats B from 1000 each: expected 0.5, A +16. B (984) beats C (1000): expected 1/(1+10^(16/400)) = 0.476994,
    # B +16.736. A (1016) ties C (983.264): expected 1/(1+10^(-32.736/400)) = 0.546972, A -1.503.
    # Played by the real elo(), every ordering in the order given (an rng whose shuffle keeps it).
    class InOrder:
        def permuted(self, x, axis):
            return x

    matches = [match("A", "B", 1.0), match("B", "C", 1.0, q="2"), match("A", "C", 0.5, q="3")]
    found = elo(matches, ["A", "B", "C"], RatingsSpec(elo={"orderings": 3}), InOrder())
    for name, value in {"A": 1014.4969, "B": 1000.7363, "C": 984.7668}.items():
        assert (found[name].value, found[name].low, found[name].high) == pytest.approx((value,) * 3, abs=1e-3)


def test_elo_over_every_order_of_three_matches():
    # The same three matches in their 6 orders, each ~1/6 of 10,000 orderings: the 2.5th and 97.5th percentiles are
    # the lowest and highest of the 6 (A lowest in the order above: 1014.4969), the mean their mean.
    # The 6 orders worked out as above: A 1014.4969 .. 1016.7363, mean 1015.6273; B 999.2299 .. 1000.7701, mean 1000.
    matches = [match("A", "B", 1.0), match("B", "C", 1.0, q="2"), match("A", "C", 0.5, q="3")]
    found = elo(matches, ["A", "B", "C"], SPEC, np.random.default_rng(0))
    assert (found["A"].low, found["A"].high) == pytest.approx((1014.4969, 1016.7363), abs=1e-3)
    assert (found["B"].low, found["B"].high) == pytest.approx((999.2299, 1000.7701), abs=1e-3)
    assert found["A"].value == pytest.approx(1015.6273, abs=0.05) and found["B"].value == pytest.approx(1000, abs=0.05)


def test_elo_over_orderings_by_hand():
    # A beats B, then B beats A: the second winner ends at 984 + 32 * (1 - 1/(1+10^(-32/400))) = 1001.4695,
    # the other at 998.5305. Each order is half the orderings: mean 1000, interval [998.53, 1001.47].
    found = elo([match("A", "B", 1.0), match("A", "B", 0.0, q="2")], ["A", "B"], SPEC, np.random.default_rng(0))
    for name in "AB":
        assert (found[name].low, found[name].high) == pytest.approx((998.5305, 1001.4695), abs=1e-3)
        assert found[name].value == pytest.approx(1000, abs=0.2)


def test_elo_ignores_matches_without_an_outcome_and_keeps_the_total():
    matches = [match("A", "B", 1.0), match("B", "C", None), match("C", "A", 0.5), match("A", "C", 1.0, q="2")]
    found = elo(matches, ["A", "B", "C"], RatingsSpec(elo={"orderings": 500}), np.random.default_rng(1))
    assert sum(e.value for e in found.values()) == pytest.approx(3000)  # Elo moves points, it never makes them
    assert found["A"].value > 1000 > found["B"].value
    assert all(e.low <= e.value <= e.high for e in found.values())


def test_bootstrap_interval_by_hand():
    # Means of 4 draws from {1, 1, 1, 0}: P(mean <= 0) = 0.25^4 = 0.4% and P(mean <= 0.25) = 5.1%, so the
    # 2.5th percentile is 0.25; P(mean < 1) = 1 - 0.75^4 = 68%, so the 97.5th is 1.
    found = bootstrap_mean([1.0, 1.0, 1.0, 0.0], ["1", "2", "3", "4"], SPEC, np.random.default_rng(0))
    assert (found.value, found.low, found.high) == (0.75, 0.25, 1.0)
    assert bootstrap_mean([0.5] * 7, list("1234567"), SPEC, np.random.default_rng(0)) == pytest.approx(
        bootstrap_mean([0.5], ["1"], SPEC, np.random.default_rng(3)))


def test_the_bootstrap_resamples_questions_with_all_their_matches():
    """A meets B and C on 4 questions: it wins both on questions 1-3 and loses both on 4. The questions are the
    draws: means of 4 draws from {1, 1, 1, 0} (the case above): 2.5th percentile 0.25. Resampling the 8 matches
    one by one (as before) takes them for 8 independent draws from {1 x 6, 0 x 2}: P(mean <= 3/8) = 2.7%, so
    its interval started at 0.375, narrower than the data allow."""
    matches = [match("A", rival, 0.0 if q == "4" else 1.0, q=q) for q in "1234" for rival in "BC"]
    found = rate(["A", "B", "C"], matches, [], RatingsSpec(bootstrap_samples=10_000, elo={"orderings": 10}),
                 mode="pairwise").contestants["A"].win_rate
    assert (found.value, found.low, found.high) == (0.75, 0.25, 1.0)


def test_relative_score_by_hand():
    # X scores 6, 8, 4 against the reference's 8, 8, 8: 18 / 24 = 75%. Resampled: the mean of three draws from
    # {6, 8, 4} over 8; all three 4 (1/27 = 3.7% > 2.5%) gives 50%, all three 8 gives 100%.
    matches = [match("X", "R", 1, scores=(6.0, 8.0)), match("R", "X", 1, scores=(8.0, 8.0), q="2"),
               match("X", "R", 0, scores=(4.0, 8.0), q="3"), match("X", "Y", 1, scores=(9.0, 1.0), q="4")]
    found = relative_score(matches, "X", "R", SPEC, np.random.default_rng(0))
    assert (found.value, found.low, found.high) == (0.75, 0.5, 1.0)
    assert relative_score(matches, "Y", "R", SPEC, np.random.default_rng(0)) is None  # never scored against R


def judgment(first: str, second: str, winner: str | None) -> Judgment:
    return Judgment("1", first, second, "text", Verdict(winner) if winner else None, None if winner else "why")


def test_position_preference():
    found = position([judgment("A", "B", "first"), judgment("B", "A", "first"), judgment("A", "B", "second"),
                      judgment("A", "B", "tie"), judgment("A", "B", None)])
    assert (found.first, found.second, found.ties, found.unparseable) == (2, 1, 1, 1)
    assert found.preference == pytest.approx(2 / 3)
    assert position([judgment("A", "B", None)]).preference is None


def test_records_from_each_side():
    matches = [match("A", "B", 1.0), match("B", "C", 0.5, inconsistent=True), match("A", "C", None), match("A", "B", 0.0, q="2")]
    found = rate(["A", "B", "C"], matches, [], RatingsSpec(elo={"orderings": 50}), mode="pairwise")
    a, b, c = (found.contestants[n] for n in "ABC")
    assert (a.wins, a.ties, a.losses, a.errors) == (1, 0, 1, 1)
    assert (b.wins, b.ties, b.losses, b.inconsistent) == (1, 1, 1, 1)
    assert (c.wins, c.ties, c.losses, c.errors, c.inconsistent) == (0, 1, 0, 1, 1)
    assert a.win_rate.value == 0.5 and b.win_rate.value == 0.5 and c.win_rate.value == 0.5
    assert found.pairs["A", "B"].wins == 1 and found.pairs["A", "C"].win_rate is None
    assert found.relative == {}


def test_the_same_seed_gives_the_same_figures():
    matches = [match("A", "B", 1.0, q=str(i)) for i in range(5)] + [match("A", "B", 0.0, q="9")]
    one = rate(["A", "B"], matches, [], RatingsSpec(elo={"orderings": 300}), mode="pairwise")
    two = rate(["A", "B"], matches, [], RatingsSpec(elo={"orderings": 300}), mode="pairwise")
    assert one == two
