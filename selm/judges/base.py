"""What a judge is: it scores replies on one or more objectives, and its weights combine them into one reward.

Every backend — the world's rule judges, a reward model, a sentence-embedding similarity, an LLM judge — is a
``Judge``: ``judge(prompts, completions)`` returns one {objective: score} per completion, and a judge sees all the
replies of a prompt in one call, so a pairwise judge can rank them as a group. ``judge_replies`` turns the scores
into ``Judgment`` records with the weighted-sum reward.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from selm.algorithms.rewards import weighted_sum
from selm.judges.cache import JudgmentCache
from selm.progress import progress
from selm.records import Completion, Judgment, Prompt


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

    def metrics(self, group: str = "judge") -> dict[str, float]:
        """``<group>/calls``, ``cache_hits``, ``tokens``, ``cost_usd``, ``parse_failures`` and, after position-swapped
        grading, ``swap_disagreement`` (``judge`` for the training judge, ``eval_judge`` for the benchmarks' grader)."""
        out = {
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "tokens": self.prompt_tokens + self.completion_tokens,
            "cost_usd": self.cost_usd,
            "parse_failures": self.parse_failures,
        }
        if self.swapped_comparisons:
            out["swap_disagreement"] = self.swap_disagreements / self.swapped_comparisons
        return {f"{group}/{k}": v for k, v in out.items()}


class Judge(ABC):
    #: names what decides a verdict (model, rules, template): the judgment cache's key
    id: str
    #: the objectives the reward combines, with their weights (r = Σ_i w_i · s_i)
    weights: Mapping[str, float]

    @abstractmethod
    def judge(
        self,
        prompts: Mapping[str, Prompt],
        completions: Sequence[Completion],
        cache: JudgmentCache | None = None,
        usage: JudgeUsage | None = None,
    ) -> list[dict[str, float]]:
        """One {objective: score} per completion, in order (NaN where a verdict could not be had). ``prompts`` maps
        prompt id → prompt; a ``cache`` keeps every paid verdict; ``usage`` counts calls, cache hits and cost."""


class ReplyJudge(Judge):
    """A judge that scores each reply on its own (``score``), in batches, with one cache entry per (prompt, reply)."""

    batch_size = 64

    @abstractmethod
    def score(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[dict[str, float]]:
        """{objective: score} per (prompt, reply)."""

    def judge(self, prompts, completions, cache=None, usage=None) -> list[dict[str, float]]:
        """``score`` sees batches of ``batch_size`` replies not yet in the cache; every new verdict is stored as
        soon as it is made."""
        usage = usage if usage is not None else JudgeUsage()
        scores: list[dict | None] = [
            cache.get(self.id, prompts[c.prompt_id].text, [c.text]) if cache is not None else None for c in completions
        ]
        todo = [i for i, s in enumerate(scores) if s is None]
        usage.cache_hits += len(completions) - len(todo)
        bar = progress(total=len(todo), desc=f"judge ({self.id})", unit="reply")
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            batch_prompts = [prompts[completions[i].prompt_id] for i in batch]
            verdicts = self.score(batch_prompts, [completions[i].text for i in batch])
            for i, s in zip(batch, verdicts, strict=True):
                scores[i] = s
            if cache is not None:  # stored at once, the batch as one: a crash after a paid call loses nothing
                cache.put_many(self.id, [(p.text, [completions[i].text], s)
                                         for i, p, s in zip(batch, batch_prompts, verdicts, strict=True)])  # fmt: skip
            usage.calls += len(batch)
            bar.update(len(batch))
        bar.close()
        return [s for s in scores if s is not None]  # every one filled: the cached, then the judged


class RuleJudge(ReplyJudge):
    """A world's rule judges (``World.score``) as a judge, weighted by ``weights``."""

    def __init__(
        self,
        score: Callable[[Sequence[Prompt], Sequence[str]], list[dict[str, float]]],
        weights: Mapping[str, float],
        judge_id: str,
    ):
        self._score, self.weights, self.id = score, dict(weights), judge_id

    def score(self, prompts, replies):
        return self._score(prompts, replies)


def judge_replies(
    judge: Judge,
    prompts: Sequence[Prompt],
    completions: Sequence[Completion],
    cache: JudgmentCache | None = None,
    usage: JudgeUsage | None = None,
) -> list[Judgment]:
    """One ``Judgment`` per completion, in the same order, naming it by ``Completion.id``, with the weighted-sum
    reward of its scores."""
    scores = judge.judge({p.id: p for p in prompts}, completions, cache, usage)
    out = []
    for c, s in zip(completions, scores, strict=True):
        missing = set(judge.weights) - set(s)
        if missing:
            raise KeyError(f"judge {judge.id!r} returned no score for objectives {sorted(missing)}")
        out.append(
            Judgment(c.prompt_id, completion_id=c.id, scores=s, reward=weighted_sum(s, judge.weights), judge=judge.id)
        )
    return out
