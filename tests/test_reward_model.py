"""The reward-model judge on a real (tiny, locally trained) sequence-classification model."""

import pytest

from conftest import QUICK_BUILD
from selm.worlds import tiny
from selm.worlds.tiny.tasks import REFUSAL

QUICK_RM = dict(pairs=3000, steps=150)


@pytest.fixture(scope="module")
def reward_model_dir(tiny_policy_dir):
    from selm.worlds.tiny.policy import TinyPolicySpec
    from selm.worlds.tiny.reward_model import TinyRewardSpec, tiny_reward_model_path

    return tiny_reward_model_path(TinyRewardSpec(**QUICK_RM), TinyPolicySpec(**QUICK_BUILD))


def test_reward_model_prefers_better_replies_on_held_out_prompts(reward_model_dir):
    from selm.judges.reward_model import OBJECTIVE, RewardModelJudge

    judge = RewardModelJudge(reward_model_dir).score
    prompts = [p for p in tiny.prompts("heldout", 200, seed=5) if not p.meta["unsafe"]]
    good = judge(prompts, [p.meta["answer"] for p in prompts])
    verbose = judge(prompts, [f"The answer is {p.meta['answer']}. I hope this helps you!" for p in prompts])
    refused = judge(prompts, [REFUSAL for _ in prompts])
    assert set(good[0]) == {OBJECTIVE}
    wins = [g[OBJECTIVE] > max(v[OBJECTIVE], r[OBJECTIVE]) for g, v, r in zip(good, verbose, refused)]
    assert sum(wins) / len(wins) > 0.7  # learned, so imperfect — but far better than chance (1/3)


def test_batching_and_padding_do_not_change_scores(reward_model_dir):
    from selm.judges.reward_model import RewardModelJudge

    judge = RewardModelJudge(reward_model_dir).score
    prompts = tiny.prompts("heldout", 6, seed=6)
    replies = ["5", "The answer is 12345. I hope this helps you!", REFUSAL, "a", "tac", "1 2 3"]
    together = judge(prompts, replies)
    alone = [judge([p], [r])[0] for p, r in zip(prompts, replies)]
    for t, a in zip(together, alone):
        assert t["reward_model"] == pytest.approx(a["reward_model"], abs=1e-4)


def test_reward_model_ranks_training_pairs_and_evaluation_stays_on_the_rules(reward_model_dir, tiny_policy_dir):
    from selm.config import load_recipe
    from selm.pipeline.judge import judge_and_pair, measure
    from selm.pipeline.runtime import Components
    from selm.pipeline.sample import sample
    from selm.pipeline.select import select_comparisons

    recipe = load_recipe(
        None,
        [
            "judge.backend=reward_model",
            f"judge.reward_model={reward_model_dir}",
            "world.train_prompts_per_round=24",
            "judge.cache=off",
        ],
    )
    parts, policy = Components(recipe), str(tiny_policy_dir)
    prompts = parts.world.train_prompts(recipe, 1)
    samples = sample(parts, policy, prompts, 1, "sft")
    judged = judge_and_pair(parts, prompts, samples, select_comparisons(parts, samples, policy, policy, 1), 1)
    ranked = judged.judgments
    assert {j.judge for j in ranked} == {f"rm:{reward_model_dir.resolve()}"}
    assert all(set(j.scores) == {"reward_model"} and j.reward == j.scores["reward_model"] for j in ranked)
    assert judged.pairs and all(p.chosen_reward > p.rejected_reward for p in judged.pairs)
    measured = measure(parts, prompts, samples.completions)  # evaluation: the world's rules
    assert set(measured[0].scores) == {"correctness", "conciseness", "safety"}
    assert "samples/good_all" not in judged.metrics and "samples/reward_model" in judged.metrics
