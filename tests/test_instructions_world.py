"""The instructions world: constraints drawn from lm-eval's IFEval registry, scored by lm-eval's own checks."""

import random

import pytest

from conftest import SHARED_DATA
from selm.records import Prompt
from selm.worlds import instructions
from selm.worlds.instructions import brevity, draw_constraints, following, quality, with_constraints

needs_data = pytest.mark.skipif(not (SHARED_DATA / "ifeval").is_dir(), reason=f"no IFEval data under {SHARED_DATA}")


ENGLISH = "apples grow on trees in the orchard and they taste sweet in the autumn"  # langdetect needs a sentence


def constrained(*constraints: tuple[str, dict]) -> Prompt:
    meta = {"instruction_id_list": [i for i, _ in constraints], "kwargs": [k for _, k in constraints]}
    return Prompt("p", "Write about apples.", meta)


@pytest.mark.parametrize(
    "constraint, meets, breaks",
    [
        (("punctuation:no_comma", {}), "Apples are red and sweet.", "Apples are red, and sweet."),
        (("change_case:english_lowercase", {}), ENGLISH, ENGLISH.capitalize()),
        (("keywords:existence", {"keywords": ["orchard"]}), "An orchard of apples.", "A tree of apples."),
        (("detectable_format:number_bullet_lists", {"num_bullets": 2}), "* red\n* green", "* red"),
        (
            ("length_constraints:number_sentences", {"relation": "less than", "num_sentences": 3}),
            "Apples are red. They are sweet.",
            "Apples are red. They are sweet. I like them.",  # (punkt reads "A. B. C." as initials: one sentence)
        ),
        (("startend:end_checker", {"end_phrase": "Any other questions?"}), "Red. Any other questions?", "Red."),
        (("detectable_format:title", {}), "<<Apples>>\nThey are red.", "Apples\nThey are red."),
    ],
)
def test_each_constraint_type_is_met_or_broken_as_ifeval_says(constraint, meets, breaks):
    prompt = constrained(constraint)
    assert following(prompt, meets) == (1.0, 1.0)
    assert following(prompt, breaks)[0] == 0.0


def test_share_of_constraints_and_the_loose_variant():
    prompt = constrained(("punctuation:no_comma", {}), ("change_case:english_lowercase", {}))
    assert following(prompt, ENGLISH.replace("trees", "trees,")) == (0.5, 0.5)
    # strict fails on the capitalised first line; loose also tries the reply without it, as IFEval's loose metric
    assert following(prompt, "Sure\n" + ENGLISH) == (0.5, 1.0)


def test_brevity():
    assert brevity("word " * 50) == 1.0 and brevity("word " * 100) == pytest.approx(0.5)


def test_quality_is_closeness_to_the_chosen_reply():
    chosen = "Apples are rich in fibre and vitamin C, and they keep for months in a cool cellar."
    near, far, same = quality(
        [
            "Apples have fibre and vitamin C and store well when kept cool.",
            "The stock market fell sharply today.",
            chosen,
        ],
        [chosen] * 3,
    )
    assert same == pytest.approx(1.0, abs=1e-5) and near > 0.6 > far >= 0.0


def test_the_world_scores_every_objective_of_a_constrained_prompt():
    world = instructions.InstructionsWorld()
    prompt = constrained(("punctuation:no_comma", {}))
    prompt.meta["chosen"] = ENGLISH
    [scores] = world.score([prompt], [ENGLISH])
    assert set(scores) == set(world.objectives) == set(world.default_weights)
    assert scores == pytest.approx({"following_strict": 1, "following_loose": 1, "quality": 1, "brevity": 1}, abs=1e-5)
    assert world.good_on_all(scores)


def test_the_default_weights_rank_a_reply_that_meets_one_more_constraint_first():
    """Following decides: a reply that meets one more of the prompt's constraints outranks one that is on topic
    (the dataset's own answer) and shorter but meets fewer — the first real run's pairs were decided the other way."""
    world = instructions.InstructionsWorld()
    prompt = constrained(("punctuation:no_comma", {}), ("change_case:english_lowercase", {}))
    prompt.meta["chosen"] = "Apples grow on trees, and they taste sweet."
    follows = " ".join(["the weather today is grey and cold and the buses run late in the rain"] * 4)  # 60 words
    on_topic = "Apples grow on trees and they taste sweet."  # the dataset's answer without its comma: 1 of 2
    scores = world.score([prompt, prompt], [follows, on_topic])
    reward = [sum(w * s[k] for k, w in world.default_weights.items()) for s in scores]
    assert [s["following_strict"] for s in scores] == [1.0, 0.5]
    assert scores[0]["quality"] < scores[1]["quality"] and scores[0]["brevity"] < scores[1]["brevity"]
    assert reward[0] > reward[1]


def test_drawn_constraints_are_seeded_and_respect_the_conflict_table():
    from lm_eval.tasks.ifeval import instructions_registry as registry

    conflicts = registry.conflict_make({k: set(v) for k, v in registry.INSTRUCTION_CONFLICTS.items()})
    seen = set()
    for seed in range(300):
        drawn = draw_constraints(random.Random(seed), 3)
        assert drawn == draw_constraints(random.Random(seed), 3)  # the same arguments for the same seed
        ids = [i for i, _, _ in drawn]
        assert len(ids) == len(set(ids)) and not set(ids) & instructions.EXCLUDED
        assert all(b not in conflicts[a] for a in ids for b in ids if a != b)
        seen |= set(ids)
    assert len(seen) >= 20  # every kind of constraint gets drawn


@needs_data
def test_training_prompts_never_are_ifeval_test_prompts():
    from selm.data import load_prompt_file

    official = instructions.ifeval_prompts()
    assert len(official) == 541
    for name in ("ultrafeedback_sample_train_1000.jsonl", "ultrafeedback_sample_eval_200.jsonl"):
        for base in load_prompt_file(f"prompt_pool/{name}")[:200]:
            p = with_constraints(base, seed=0)
            assert p.text.strip() not in official and 1 <= len(p.meta["instruction_id_list"]) <= 3
            assert p.text.startswith(base.text.strip()) and p.meta["chosen"] == base.meta["chosen"]
            assert with_constraints(base, seed=0) == p
