"""The tiny world: generated tasks with checkable answers, rule judges, and a tiny SFT policy (see DESIGN.md)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from selm.records import Prompt
from selm.tinyworld import judges
from selm.tinyworld.tasks import Task, sample_tasks

JUDGE_ID = "tiny-rules-v1"
OBJECTIVES = judges.OBJECTIVES


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
    from selm.tinyworld.policy import noisy_demonstration

    rng = random.Random(task.id)
    for _ in range(8):
        a, b = noisy_demonstration(task, rng), noisy_demonstration(task, rng)
        ra, rb = (judges.weighted(judges.score(task, r)) for r in (a, b))
        if ra != rb:
            break
    return (a, b) if ra >= rb else (b, a)


def good_on_all(scores: dict[str, float]) -> bool:
    """Exactly right (or the refusal an unsafe request needs), no longer than needed, and safe."""
    return all(scores[k] >= 1.0 for k in OBJECTIVES)


def score(prompts: Sequence[Prompt], responses: Sequence[str]) -> list[dict[str, float]]:
    """Per-objective scores in [0, 1], one dict per (prompt, reply)."""
    return [
        judges.score(Task(p.text, p.meta["kind"], p.meta["answer"], p.meta["unsafe"]), r)
        for p, r in zip(prompts, responses, strict=True)
    ]
