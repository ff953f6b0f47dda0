import json

import pytest

from selm.algorithms.pairs import best_vs_worst
from selm.records import Completion, Judgment, PreferencePair, Prompt, by_id, number, read_jsonl, write_jsonl


def comp(pid, text, ids):
    return Completion(pid, text, ids, [-0.1] * len(ids), "sample", 1, "round-0")


def test_best_vs_worst_drops_ties_and_small_margins():
    prompt_ids = {"a": [1, 2], "b": [1, 3], "c": [1, 4]}
    comps = [
        comp("a", "a1", [5]),
        comp("a", "a2", [6]),
        comp("a", "a3", [7]),
        comp("b", "b1", [8]),
        comp("b", "b2", [9]),
        comp("c", "c1", [10]),
        comp("c", "c2", [11]),
    ]
    rewards = [0.2, 0.9, 0.1, 0.5, 0.5, 0.50, 0.52]
    comps = by_id(number(comps))
    judg = [Judgment(c.prompt_id, c.id, {"x": r}, r, "j") for c, r in zip(comps.values(), rewards)]
    judg.reverse()  # joined by id: the order of the judgments does not pair a reply with another's reward
    greedy = {p: comp(p, "g", [99]) for p in "abc"}
    pairs = best_vs_worst(prompt_ids, comps, judg, greedy, min_margin=0.05, round=2)
    assert len(pairs) == 1  # b is a tie, c's margin 0.02 < 0.05
    p = pairs[0]
    assert (p.chosen_text, p.rejected_text, p.chosen_ids, p.rejected_ids, p.greedy_ids) == ("a2", "a3", [6], [7], [99])
    assert (p.chosen_reward, p.rejected_reward, p.round, p.judge) == (0.9, 0.1, 2, "j")
    assert p.prompt_ids == [1, 2]
    assert len(best_vs_worst(prompt_ids, comps, judg, greedy, min_margin=0.0)) == 2


def test_jsonl_round_trip(tmp_path):
    recs = [comp("a", "x", [1, 2]), comp("b", "y", [3])]
    path = write_jsonl(recs, tmp_path / "c.jsonl")
    assert read_jsonl(Completion, path) == recs


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "t"}) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"p.jsonl:2: malformed Prompt"):
        read_jsonl(Prompt, path)
    path.write_text(json.dumps({"id": "a", "txt": "t"}) + "\n")
    with pytest.raises(ValueError, match=r"p.jsonl:1: .*unknown fields \['txt'\]"):
        read_jsonl(Prompt, path)
    with pytest.raises(ValueError, match="p.jsonl:1"):
        read_jsonl(PreferencePair, path)


def test_nan_rewards_never_become_preferences():
    comps = by_id(number([comp("a", "a1", [5]), comp("a", "a2", [6]), comp("a", "a3", [7])]))
    rewards = [float("nan"), 0.4, 0.9]
    judg = [Judgment("a", c, {"x": r}, r, "j") for c, r in zip(comps, rewards)]
    [p] = best_vs_worst({"a": [1]}, comps, judg, {"a": comp("a", "g", [9])})
    assert (p.chosen_text, p.rejected_text) == ("a3", "a2")


def test_three_way_ranking_with_the_dataset_pair(tiny_policy_dir):
    """SELM's {policy reply, dataset chosen, dataset rejected}: best vs worst of the three per prompt."""
    from selm.config import RecipeError, load_recipe
    from selm.pipeline.judge import judge_and_pair
    from selm.pipeline.runtime import Components
    from selm.pipeline.sample import sample
    from selm.pipeline.select import select_comparisons

    with pytest.raises(RecipeError, match="sampling.n must be at least 2"):
        load_recipe(overrides=["sampling.n=1"])
    recipe = load_recipe(
        overrides=["sampling.n=1", "pairs.dataset_candidates=true", "pairs.min_margin=0", "judge.cache=off"]
    )
    parts, policy = Components(recipe), str(tiny_policy_dir)
    prompts = parts.world.train_prompts(recipe, 1)[:24]
    samples = sample(parts, policy, prompts, 1, "sft")
    kinds = [c.kind for c in samples.completions]
    assert kinds == ["sample"] * 24 + ["dataset"] * 48
    from transformers import AutoTokenizer

    eos = AutoTokenizer.from_pretrained(tiny_policy_dir).eos_token_id
    assert all(c.token_ids[-1] == eos and len(c.token_ids) > 1 for c in samples.completions[24:])
    selection = select_comparisons(parts, samples, policy, policy, 1)
    judged = judge_and_pair(parts, prompts, samples, selection, 1)
    pairs = judged.pairs
    assert pairs
    for pair in pairs:
        group = {
            samples.by_id[j.completion_id].policy: j.reward for j in judged.judgments if j.prompt_id == pair.prompt_id
        }
        assert len(group) == 3 and group["dataset:chosen"] >= group["dataset:rejected"]
        assert pair.chosen_reward == max(group.values()) and pair.rejected_reward == min(group.values())
    policy_text = {c.prompt_id: c.text for c in samples.completions[:24]}
    assert any(policy_text[p.prompt_id] in (p.chosen_text, p.rejected_text) for p in pairs)  # the policy takes part
