"""The paired before/after comparison of per-prompt scores, against hand computation."""

import math

import pytest

from selm.algorithms.statistics import ci95_half_width, mean_and_se, paired_improvement


def test_mean_and_standard_error_by_hand():
    m, se = mean_and_se([1.0, 2.0, 3.0, 6.0])  # mean 3; deviations -2 -1 0 3: s² = 14/3
    assert m == 3.0 and se == pytest.approx(math.sqrt(14 / 3) / 2)
    assert math.isnan(mean_and_se([5.0])[1])


def test_paired_improvement_uses_the_prompts_both_scored():
    before = {"acc": {"a": 0.0, "b": 1.0, "c": 0.0, "d": 0.0, "gone": 1.0}, "only_before": {"a": 1.0, "b": 1.0}}
    after = {"acc": {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0, "new": 0.0}}
    [row] = paired_improvement(before, after)
    # common prompts a b c d; differences 1 0 1 0: mean 0.5, s² = 1/3, SE = √(1/3)/2
    se = math.sqrt(1 / 3) / 2
    assert row == pytest.approx(
        {"metric": "acc", "n": 4, "before": 0.25, "after": 0.75, "delta": 0.5, "se_delta": se, "z": 0.5 / se}
    )


def test_pairing_removes_the_prompts_own_difficulty():
    """Every prompt gains 0.5 while prompts differ wildly: the paired SE is 0 and z infinite; the unpaired SEs of the
    two means are large."""
    before = {"r": {str(i): float(i) for i in range(10)}}
    after = {"r": {str(i): i + 0.5 for i in range(10)}}
    [row] = paired_improvement(before, after)
    assert row["delta"] == 0.5 and row["se_delta"] == pytest.approx(0, abs=1e-12)
    assert row["z"] == math.inf and mean_and_se(list(before["r"].values()))[1] > 0.9
    assert paired_improvement({"r": {"x": 1.0}}, {"r": {"x": 2.0}}) == []  # one common prompt: no SE


def test_a_prompt_drawn_twice_is_two_paired_observations():
    """The tiny world's held-out set repeats prompts: each draw keeps its own key, so n is the set's size and the mean
    over the keys is the logged held-out metric."""
    from selm.pipeline.evaluate import per_prompt
    from selm.records import Judgment

    judgments = [
        Judgment("p", 0, {"ok": 1.0}, 1.0, "rules"),
        Judgment("q", 1, {"ok": 0.0}, 0.0, "rules"),
        Judgment("p", 2, {"ok": 0.0}, 0.5, "rules"),
    ]
    scores = per_prompt(judgments)
    assert scores == {
        "heldout/reward": {"p": 1.0, "q": 0.0, "p#2": 0.5},
        "heldout/ok": {"p": 1.0, "q": 0.0, "p#2": 0.0},
    }


def test_the_95_interval_over_a_few_seeds_is_students_t():
    # t(0.975) with 1, 2 and 9 degrees of freedom: 12.706, 4.303, 2.262 (any t table); the normal's is 1.960
    assert math.isclose(ci95_half_width(1.0, 2), 12.7062, rel_tol=1e-4)
    assert math.isclose(ci95_half_width(1.0, 3), 4.3027, rel_tol=1e-4)
    assert math.isclose(ci95_half_width(1.0, 10), 2.2622, rel_tol=1e-4)
    # the prompts' SE wins where it is the wider interval; a single seed has no seed interval
    assert math.isclose(ci95_half_width(0.1, 10, se_prompts=1.0), 1.95996, rel_tol=1e-4)
    assert math.isclose(ci95_half_width(float("nan"), 1, se_prompts=0.5), 0.97998, rel_tol=1e-4)
    assert ci95_half_width(None, 1) is None
