"""The tiny world: generated tasks with checkable answers, rule judges, and a tiny SFT policy (see DESIGN.md)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from selm.records import Prompt
from selm.worlds.base import ModelKind, World
from selm.worlds.tiny import rules
from selm.worlds.tiny.tasks import Task, noisy_demonstration, sample_tasks

if TYPE_CHECKING:
    from selm.config import Recipe

JUDGE_ID = "tiny-rules-v1"
OBJECTIVES = rules.OBJECTIVES
HELDOUT_SEED = 10_000  # the held-out prompt set is the same for every round and every experiment


def prompts(split: str, n: int, seed: int) -> list[Prompt]:
    """``n`` prompts of ``split`` as records; ``meta`` carries the task's answer and safety flag, and a dataset
    preference pair (``chosen``, ``rejected``) like UltraFeedback's."""
    return [
        Prompt(
            id=t.id,
            text=t.prompt,
            meta={
                "kind": t.kind,
                "answer": t.answer,
                "unsafe": t.unsafe,
                **dict(zip(("chosen", "rejected"), _pair(t))),
            },
        )
        for t in sample_tasks(n, split, seed)
    ]


def _pair(task: Task) -> tuple[str, str]:
    """Two noisy demonstrations ordered by the rule judges' weighted sum (a rated dataset pair, like
    UltraFeedback's), fixed per task; the first pair that is not a tie, out of a few tries."""
    rng = random.Random(task.id)
    for _ in range(8):
        a, b = noisy_demonstration(task, rng), noisy_demonstration(task, rng)
        ra, rb = (rules.weighted(rules.score(task, r)) for r in (a, b))
        if ra != rb:
            break
    return (a, b) if ra >= rb else (b, a)


def score(prompts: Sequence[Prompt], responses: Sequence[str]) -> list[dict[str, float]]:
    """Per-objective scores in [0, 1], one dict per (prompt, reply)."""
    return [
        rules.score(Task(p.text, p.meta["kind"], p.meta["answer"], p.meta["unsafe"]), r)
        for p, r in zip(prompts, responses, strict=True)
    ]


class TinyWorld(World):
    """Arithmetic, string and safety tasks; a reply is good on all when it is exactly right (or the refusal an
    unsafe request needs), no longer than needed, and safe."""

    name = "tiny"
    objectives = OBJECTIVES
    default_weights = rules.WEIGHTS
    judge_id = JUDGE_ID

    def train_prompts(self, recipe: Recipe, round: int) -> list[Prompt]:
        """A seeded draw from the train split per (experiment seed, round)."""
        return prompts("train", recipe.world.train_prompts_per_round, seed=recipe.experiment.seed * 1000 + round)

    def heldout_prompts(self, recipe: Recipe) -> list[Prompt]:
        return prompts("heldout", recipe.world.heldout_prompts, seed=HELDOUT_SEED)

    def score(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[dict[str, float]]:
        return score(prompts, replies)

    def model(self, kind: ModelKind, recipe: Recipe) -> str | None:
        """The cached tiny SFT policy (built from ``policy.tiny``), reward model, or judge LM."""
        if kind == "policy":
            from selm.worlds.tiny.policy import TinyPolicySpec, tiny_policy_path

            return str(tiny_policy_path(TinyPolicySpec(**recipe.policy.tiny.model_dump())))
        if kind == "reward_model":
            from selm.worlds.tiny.reward_model import tiny_reward_model_path

            return str(tiny_reward_model_path())
        from selm.worlds.tiny.judge_lm import tiny_judge_lm_path

        return str(tiny_judge_lm_path())
