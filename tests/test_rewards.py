"""LSC transform, reference points and combination against values computed by hand."""

import math

import pytest

from selm.algorithms.rewards import combine, log_sigmoid, lsc_utility, reference_points
from selm.records import Judgment


def test_reference_point_is_the_interpolated_quantile_by_hand():
    # sorted [1, 2, 4, 10]; q = 0.85 → h = 3·0.85 = 2.55 → 4 + 0.55·(10 − 4) = 7.3; a NaN verdict is no evidence
    js = [Judgment("x", i, {"a": s}, s, "j") for i, s in enumerate([10, 1, math.nan, 4, 2])]
    assert reference_points(js, 0.85)[("x", "a")] == pytest.approx(7.3)
    assert reference_points(js[:1], 0.85)[("x", "a")] == 10


def test_log_sigmoid_and_utility_by_hand():
    assert log_sigmoid(0.0) == pytest.approx(math.log(0.5))
    # log σ(2) = −log(1 + e^−2) = −log(1.1353352832) = −0.1269280110
    assert lsc_utility(3.0, 1.0) == pytest.approx(-0.1269280110, abs=1e-9)
    # log σ(−2) = −2 − log(1 + e^−2) = −2.1269280110
    assert lsc_utility(1.0, 3.0) == pytest.approx(-2.1269280110, abs=1e-9)
    assert log_sigmoid(-800.0) == -800.0 and log_sigmoid(800.0) == 0.0  # no overflow


def J(pid, a, b):
    return Judgment(pid, 0, {"a": a, "b": b}, 0.0, "j")


def test_lsc_combination_is_an_and_raw_sum_is_not():
    """Prompt x with three replies. r_ref (q=0.5, i.e. the median): a → 0.5, b → 0.5.

    y1 = (1.0, 0.0): raw sum 1.0; lsc = log σ(0.5) + log σ(−0.5) = −0.4740769842 − 0.9740769842 = −1.4481539684
    y2 = (0.5, 0.5): raw sum 1.0; lsc = 2·log σ(0) = −1.3862943611
    y3 = (0.0, 1.0): symmetric to y1
    The raw sum ties all three; LSC prefers the reply that is acceptable on both objectives.
    """
    js = [J("x", 1.0, 0.0), J("x", 0.5, 0.5), J("x", 0.0, 1.0)]
    assert reference_points(js, 0.5) == {("x", "a"): 0.5, ("x", "b"): 0.5}
    raw = combine(js, "sum", {"a": 1.0, "b": 1.0})
    assert [j.reward for j in raw] == [1.0, 1.0, 1.0]
    lsc = combine(js, "lsc", {"a": 1.0, "b": 1.0}, q=0.5)
    assert [j.reward for j in lsc] == pytest.approx([-1.4481539684, -1.3862943611, -1.4481539684], abs=1e-9)
    assert js[0].reward == 0.0  # inputs untouched


def test_reference_points_are_per_prompt():
    js = [J("x", 0.0, 0.0), J("x", 1.0, 1.0), J("y", 5.0, 5.0)]
    ref = reference_points(js, 0.85)
    assert ref[("x", "a")] == pytest.approx(0.85) and ref[("y", "a")] == 5.0


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown reward combination"):
        combine([], "product", {})


def test_training_judgments_can_be_ranked_by_lsc():
    from selm.config import load_recipe
    from selm.pipeline.components import Components, objective_weights
    from selm.pipeline.judge import measure, rank
    from selm.records import Completion, number
    from selm.worlds import tiny

    recipe = load_recipe(None, ["judge.combine=lsc", "judge.lsc_quantile=0.5", "judge.cache=off"])
    parts = Components(recipe)
    prompt = tiny.prompts("train", 1, seed=7)[0]
    replies = [prompt.meta["answer"], "I can not help with that.", "The answer is something long and wrong"]
    comps = number([Completion(prompt.id, r, [1], [-1.0], "sample", 1, "r0") for r in replies])
    raw = measure(parts, [prompt], comps)
    lsc = rank(parts, [prompt], comps)
    assert [j.scores for j in raw] == [j.scores for j in lsc]
    assert [j.reward for j in lsc] == [j.reward for j in combine(raw, "lsc", objective_weights(recipe), 0.5)]
    best = max(lsc, key=lambda j: j.reward).completion_id
    assert best == comps[0].id  # the right, short, safe answer ranks first
