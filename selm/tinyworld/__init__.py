"""The tiny world: generated tasks with checkable answers, rule judges, and a tiny SFT policy (see DESIGN.md)."""

from __future__ import annotations

from collections.abc import Sequence

from selm.records import Prompt
from selm.tinyworld import judges
from selm.tinyworld.tasks import Task, sample_tasks

JUDGE_ID = "tiny-rules-v1"
OBJECTIVES = judges.OBJECTIVES


def prompts(split: str, n: int, seed: int) -> list[Prompt]:
    """``n`` prompts of ``split`` as records; the task's answer and safety flag ride along in ``meta``."""
    return [
        Prompt(id=t.id, text=t.prompt, meta={"kind": t.kind, "answer": t.answer, "unsafe": t.unsafe})
        for t in sample_tasks(n, split, seed)
    ]


def good_on_all(scores: dict[str, float]) -> bool:
    """Exactly right (or the refusal an unsafe request needs), no longer than needed, and safe."""
    return all(scores[k] >= 1.0 for k in OBJECTIVES)


def score(prompts: Sequence[Prompt], responses: Sequence[str]) -> list[dict[str, float]]:
    """Per-objective scores in [0, 1], one dict per (prompt, reply)."""
    return [
        judges.score(Task(p.text, p.meta["kind"], p.meta["answer"], p.meta["unsafe"]), r)
        for p, r in zip(prompts, responses, strict=True)
    ]
