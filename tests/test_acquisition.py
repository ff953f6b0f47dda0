"""APL acquisition functions against scores computed by hand on a small fixed example."""

import pytest

from selm.algorithms.acquisition import Candidate, acquire, candidates, certainty, predictive_entropy
from selm.records import Completion, number


def reply(pid, logprob):
    return Completion(pid, "x", [1], [logprob], "sample", 1, "round-0")


# three prompts, three samples each; log π(y|x) per sample
COMPLETIONS = number([reply("p1", -2.0), reply("p1", -4.0), reply("p1", -6.0),
                      reply("p2", -1.0), reply("p2", -1.0), reply("p2", -1.0),
                      reply("p3", -10.0), reply("p3", -2.0), reply("p3", -3.0)])  # fmt: skip


def test_candidates_pair_each_prompts_first_two_samples():
    first_two = [Candidate(p, f"{p}/sample/0", f"{p}/sample/1") for p in ("p1", "p2", "p3")]
    assert candidates(COMPLETIONS) == first_two


def test_entropy_averages_each_prompts_own_samples():
    """p1: (2+4+6)/3 = 4; p2: 1; p3: (10+2+3)/3 = 5. Mixing prompts would give 31/9 for every prompt."""
    assert predictive_entropy(COMPLETIONS) == {"p1": 4.0, "p2": 1.0, "p3": 5.0}


def test_certainty_is_the_absolute_implicit_reward_gap():
    """β=0.1: r̂a = 0.1·(−2+3) = 0.1, r̂b = 0.1·(−4+3) = −0.1 → 0.2."""
    assert certainty(-2.0, -3.0, -4.0, -3.0, beta=0.1) == pytest.approx(0.2)
    assert certainty(-1.0, -1.0, -1.0, -1.5, beta=0.1) == pytest.approx(0.05)
    assert certainty(-5.0, -5.0, -7.0, -7.0, beta=0.1) == 0.0  # policy == reference: uninformative


CANDS = candidates(COMPLETIONS)
ENTROPY = {"p1": 4.0, "p2": 1.0, "p3": 5.0}
CERT = [0.2, 0.05, 0.3]


def test_entropy_certainty_uncertainty_rankings():
    assert acquire("entropy", CANDS, 2, entropy=ENTROPY) == [2, 0]
    assert acquire("certainty", CANDS, 2, certainty_scores=CERT) == [2, 0]
    assert acquire("uncertainty", CANDS, 2, certainty_scores=CERT) == [1, 0]


def test_hybrid_takes_certainty_only_within_the_entropy_shortlist():
    cert = [0.2, 0.9, 0.3]  # the most certain pair (p2) has the lowest entropy
    assert acquire("certainty", CANDS, 1, certainty_scores=cert) == [1]
    # k=1, F=2: entropy keeps p3 and p1, certainty then keeps p3 (0.3 > 0.2)
    assert acquire("hybrid", CANDS, 1, entropy=ENTROPY, certainty_scores=cert, hybrid_factor=2) == [2]


def test_ties_keep_candidate_order():
    assert acquire("certainty", CANDS, 3, certainty_scores=[0.0, 0.0, 0.0]) == [0, 1, 2]


@pytest.mark.parametrize("method", ["random", "entropy", "certainty", "uncertainty", "hybrid"])
@pytest.mark.parametrize("budget", [0, 1, 2, 3, 10])
def test_budget_is_never_exceeded(method, budget):
    picked = acquire(method, CANDS, budget, entropy=ENTROPY, certainty_scores=CERT, hybrid_factor=2, seed=3)
    assert len(picked) == min(budget, len(CANDS)) and len(set(picked)) == len(picked)


def test_random_is_seeded():
    many = [Candidate(f"p{i}", 2 * i, 2 * i + 1) for i in range(50)]
    assert acquire("random", many, 10, seed=1) == acquire("random", many, 10, seed=1)
    assert acquire("random", many, 10, seed=1) != acquire("random", many, 10, seed=2)


def test_missing_inputs_and_unknown_method_are_clear_errors():
    with pytest.raises(ValueError, match="needs the prompts' predictive entropy"):
        acquire("hybrid", CANDS, 1, certainty_scores=CERT)
    with pytest.raises(ValueError, match="needs certainty scores"):
        acquire("certainty", CANDS, 1)
    with pytest.raises(ValueError, match="unknown acquisition 'bald'"):
        acquire("bald", CANDS, 1)


# ---------------------------------------------------------------- on the real tiny policy


@pytest.fixture(scope="module")
def two_policies(tiny_policy_dir, tmp_path_factory):
    """The quick SFT policy and one round of DPO on it: a policy that differs from its reference."""
    from selm.config import load_recipe
    from selm.pipeline.runtime import STAGES, Components, begin, run_round

    recipe = load_recipe(None, ["world.train_prompts_per_round=64", "judge.cache=off", "train.epochs=1"])
    ref = str(tiny_policy_dir)
    out = tmp_path_factory.mktemp("round1")
    state = run_round(begin(Components(recipe), 1, "apl", ref, ref, out), recipe, STAGES[:4])  # up to train
    return state.policy_out, ref


@pytest.mark.parametrize("method", ["random", "entropy", "certainty", "uncertainty", "hybrid"])
def test_selection_on_real_samples_respects_the_budget(two_policies, method, tmp_path):
    from selm.config import load_recipe
    from selm.judges.base import JudgeUsage
    from selm.pipeline.judge import judge_and_pair, judge_completions
    from selm.pipeline.runtime import Components
    from selm.pipeline.sample import sample
    from selm.pipeline.select import select_comparisons

    policy, reference = two_policies
    recipe = load_recipe(
        None,
        [
            "world.train_prompts_per_round=40",
            f"select.acquisition={method}",
            "select.label_budget=10",
            "select.hybrid_factor=2",
            f"judge.cache={tmp_path}/j.db",
        ],
    )
    parts = Components(recipe)
    prompts = parts.world.train_prompts(recipe, 2)
    samples = sample(parts, policy, prompts, 2, "round-1")
    sel = select_comparisons(parts, samples, policy, reference, 2)
    assert sel.labels == len(sel.picked) == 10 and len(sel.completion_ids) == 20
    assert len(sel.candidates) == len(samples.prompt_tokens)
    if method != "random":
        assert any(c > 0 for c in sel.certainty)  # policy ≠ reference: implicit rewards are informative
    picked_prompts = {sel.candidates[k].prompt_id for k in sel.picked}
    assert {c.prompt_id for c in sel.replies(samples)} == picked_prompts

    # the judge is called for the acquired replies only, and a repeated round pays for nothing
    judged = judge_and_pair(parts, prompts, samples, sel, 2)
    assert judged.usage["judge/calls"] + judged.usage["judge/cache_hits"] == 20
    assert [j.completion_id for j in judged.judgments] == sel.completion_ids
    usage = JudgeUsage()
    again = judge_completions(parts.judge, prompts, sel.replies(samples), cache=parts.judgment_cache, usage=usage)
    assert again == judged.judgments and (usage.calls, usage.cache_hits) == (0, 20)
    assert len(judged.pairs) <= 10 and {p.prompt_id for p in judged.pairs} <= picked_prompts


def test_round_one_certainty_is_zero(tiny_policy_dir):
    from selm.config import load_recipe
    from selm.pipeline.runtime import Components
    from selm.pipeline.sample import sample
    from selm.pipeline.select import select_comparisons

    recipe = load_recipe(
        None, ["world.train_prompts_per_round=16", "select.acquisition=certainty", "select.label_budget=4"]
    )
    parts, policy = Components(recipe), str(tiny_policy_dir)
    samples = sample(parts, policy, parts.world.train_prompts(recipe, 1), 1, "sft")
    sel = select_comparisons(parts, samples, policy, policy, 1)
    assert set(sel.certainty) == {0.0} and sel.picked == [0, 1, 2, 3]
