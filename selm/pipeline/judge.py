"""The judge stage: label the selected replies on each objective, combine the objectives into one reward, pair
each prompt's best reply against its worst."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from selm.algorithms import rewards
from selm.algorithms.pairs import best_vs_worst
from selm.judges.base import Judge, JudgeUsage, judge_replies
from selm.judges.cache import JudgmentCache
from selm.pipeline.components import Components
from selm.pipeline.sample import Samples
from selm.pipeline.select import Selection
from selm.records import Completion, Judgment, PreferencePair, Prompt


def judge_completions(
    judge: Judge,
    prompts: Sequence[Prompt],
    completions: Sequence[Completion],
    combine: str = "sum",
    lsc_quantile: float = 0.5,
    cache: JudgmentCache | None = None,
    usage: JudgeUsage | None = None,
) -> list[Judgment]:
    """Each reply judged by ``judge`` (one ``Judgment`` per completion, naming it by id); ``reward`` combines the
    objectives: their weighted sum, or ``combine = "lsc"`` (``selm.algorithms.rewards``)."""
    judgments = judge_replies(judge, prompts, completions, cache, usage)
    if combine == "sum":
        return judgments
    return rewards.combine(judgments, combine, judge.weights, lsc_quantile)


def rank(
    parts: Components, prompts: Sequence[Prompt], completions: Sequence[Completion], usage: JudgeUsage | None = None
) -> list[Judgment]:
    """Training's judgments: the recipe's judge (``judge.backend``, through the judgment cache) and combination
    (``judge.combine``); they rank the replies that become pairs."""
    j = parts.recipe.judge
    return judge_completions(parts.judge, prompts, completions, j.combine, j.lsc_quantile, parts.judgment_cache, usage)


def measure(parts: Components, prompts: Sequence[Prompt], completions: Sequence[Completion]) -> list[Judgment]:
    """Evaluation's judgments: the world's rule judges and the raw weighted sum, so that every method and every
    training judge is measured on the same scale."""
    return judge_completions(parts.rules, prompts, completions)


@dataclass
class Judged:
    judgments: list[Judgment]  # one per selected reply, naming it by ``completion_id``
    pairs: list[PreferencePair]
    usage: dict[str, float]  # JudgeUsage.metrics()
    metrics: dict[str, float]  # reward_metrics of the judged replies, prefix "samples"


def judge_and_pair(
    parts: Components, prompts: list[Prompt], samples: Samples, selection: Selection, round: int
) -> Judged:
    """The judge step: the selected replies ranked (``rank``), then paired best vs worst per prompt."""
    usage = JudgeUsage()
    judgments = rank(parts, prompts, selection.replies(samples), usage)
    greedy = {c.prompt_id: c for c in samples.greedy}
    pairs = best_vs_worst(samples.prompt_tokens, samples.by_id, judgments, greedy, parts.recipe.pairs.min_margin, round)
    return Judged(judgments, pairs, usage.metrics(), parts.reward_metrics(judgments, "samples"))
