"""The judge stage: score every reply on each objective and combine the objectives into one reward.

A *score function* maps a batch of (prompt, reply text) to one {objective: score} per item. The tiny world's rule
judges and Hugging Face reward models are score functions; LLM judges plug in behind the same signature.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from selm.judgment_cache import JudgmentCache
from selm.progress import progress
from selm.records import Completion, Judgment, Prompt

ScoreFn = Callable[[Sequence[Prompt], Sequence[str]], list[dict[str, float]]]


def weighted_sum(scores: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Raw combined reward r = Σ_i w_i · s_i (the LSC paper's baseline combination)."""
    return float(sum(w * scores[name] for name, w in weights.items()))


@dataclass
class JudgeUsage:
    """What judging cost: calls actually made (paid), answers served by the cache, tokens and dollars.

    Token-metered backends (LLM judges) add their tokens and cost, verdicts they could not parse, and for
    position-swapped pairwise grading how often the two orders disagreed; rule judges and local models use none.
    """

    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    parse_failures: int = 0
    swapped_comparisons: int = 0
    swap_disagreements: int = 0

    def metrics(self) -> dict[str, float]:
        out = {
            "judge_calls": self.calls,
            "judge_cache_hits": self.cache_hits,
            "judge_tokens": self.prompt_tokens + self.completion_tokens,
            "judge_cost_usd": self.cost_usd,
            "judge_parse_failures": self.parse_failures,
        }
        if self.swapped_comparisons:
            out["judge_swap_disagreement"] = self.swap_disagreements / self.swapped_comparisons
        return out


def judge(
    prompts: Mapping[str, Prompt],
    completions: Sequence[Completion],
    score: ScoreFn,
    weights: Mapping[str, float],
    judge_id: str,
    cache: JudgmentCache | None = None,
    usage: JudgeUsage | None = None,
    batch_size: int = 64,
) -> list[Judgment]:
    """One ``Judgment`` per completion, in the same order; ``score`` sees batches of ``batch_size`` replies.

    With a ``cache``, a reply already judged by ``judge_id`` for the same prompt is not judged again, and every
    new judgment is stored as soon as it is made. ``usage`` (if given) counts paid calls and cache hits.
    """
    usage = usage if usage is not None else JudgeUsage()
    scores: list[dict | None] = [
        cache.get(judge_id, prompts[c.prompt_id].text, [c.text]) if cache is not None else None for c in completions
    ]
    todo = [i for i, s in enumerate(scores) if s is None]
    usage.cache_hits += len(completions) - len(todo)
    bar = progress(total=len(todo), desc=f"judge ({judge_id})", unit="reply")
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        batch_prompts = [prompts[completions[i].prompt_id] for i in batch]
        for i, p, s in zip(
            batch, batch_prompts, score(batch_prompts, [completions[i].text for i in batch]), strict=True
        ):
            scores[i] = s
            if cache is not None:  # stored at once: a crash after a paid call loses nothing
                cache.put(judge_id, p.text, [completions[i].text], s)
        usage.calls += len(batch)
        bar.update(len(batch))
    bar.close()
    out = []
    for i, (c, s) in enumerate(zip(completions, scores)):
        missing = set(weights) - set(s)
        if missing:
            raise KeyError(f"judge {judge_id!r} returned no score for objectives {sorted(missing)}")
        out.append(Judgment(c.prompt_id, i, s, weighted_sum(s, weights), judge_id))
    return out
