"""The judge stage: label the selected replies on each objective, combine the objectives into one reward, pair
each prompt's best reply against its worst."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from selm import worlds
from selm.algorithms import rewards
from selm.algorithms.pairs import best_vs_worst
from selm.algorithms.statistics import mean_and_se
from selm.config import LLMJudgeConfig, Recipe
from selm.judges.base import Judge, JudgeUsage, RuleJudge, judge_replies
from selm.judges.cache import JudgmentCache
from selm.judges.llm import LLMEndpoint, LLMJudge, load_template
from selm.pipeline.sample import Samples
from selm.pipeline.select import Selection
from selm.records import Completion, Judgment, PreferencePair, Prompt


def objective_weights(recipe: Recipe) -> dict[str, float]:
    """``judge.weights``, or the world's default weights when the recipe sets none."""
    return dict(recipe.judge.weights) or dict(worlds.of(recipe).default_weights)


def build_judge(recipe: Recipe, backend: str | None = None) -> Judge:
    """The judge of ``backend`` (default: the recipe's ``judge.backend``) as the recipe configures it."""
    backend = backend or recipe.judge.backend
    j = recipe.judge
    if backend == "rules":
        world = worlds.of(recipe)
        return RuleJudge(world.score, objective_weights(recipe), world.judge_id)
    if backend == "embedding":
        return _embedding_judge(j.embedding_model, j.reference_key)
    if backend == "reward_model":
        return _reward_model(worlds.model_path("reward_model", j.reward_model, recipe))
    if backend == "llm":
        template = load_template(j.llm.template)
        return LLMJudge(
            llm_endpoint(j.llm, recipe), template, j.llm.swap, j.llm.concurrency, reference_key=j.reference_key
        )
    raise ValueError(f"judge.backend = {backend!r}: no such judge")


@functools.cache
def _embedding_judge(model: str, reference_key: str):
    """One loaded embedding model per process (steps and sweeps call the judge many times)."""
    from selm.judges.embedding import EmbeddingJudge

    return EmbeddingJudge(model, reference_key)


@functools.cache
def _reward_model(path: str):
    """One loaded reward model per process."""
    from selm.judges.reward_model import RewardModelJudge

    return RewardModelJudge(path)


def llm_endpoint(c: LLMJudgeConfig, recipe: Recipe) -> LLMEndpoint:
    """The endpoint of an ``LLMJudgeConfig``; a model a world builds (``model = "tiny"``) is served locally and
    named by its folder."""
    return LLMEndpoint(
        **c.model_dump(include={"base_url", "max_tokens", "temperature", "timeout_s", "max_retries", "backoff_s"}),
        **c.model_dump(include={"price_in_per_mtok", "price_out_per_mtok"}),
        model=worlds.model_path("judge_lm", c.model, recipe),
        api_key_env=c.api_key_env or None,
    )


def judgment_cache(recipe: Recipe) -> JudgmentCache | None:
    if recipe.judge.cache == "off":
        return None
    if recipe.judge.cache == "auto":
        from selm.cache import cache_dir

        return JudgmentCache(cache_dir() / "judgments.sqlite")
    return JudgmentCache(recipe.judge.cache)


def judge_completions(
    prompts: list[Prompt],
    completions: list[Completion],
    recipe: Recipe,
    cache: JudgmentCache | None = None,
    usage: JudgeUsage | None = None,
    training: bool = False,
) -> list[Judgment]:
    """Judge each reply; ``reward`` combines the objectives.

    With ``training`` the recipe's judge (``judge.backend``) and combination (``judge.combine``) rank the replies
    that become pairs. Otherwise (evaluation) the world's rule judges and the raw weighted sum measure them, so
    every method and every judge is measured on the same scale.
    """
    judge = build_judge(recipe, None if training else "rules")
    combine = recipe.judge.combine if training else "sum"
    judgments = judge_replies(judge, prompts, completions, cache, usage)
    if combine == "sum":
        return judgments
    return rewards.combine(judgments, combine, judge.weights, recipe.judge.lsc_quantile)


@dataclass
class Judged:
    judgments: list[Judgment]  # judgments[i] judges the i-th selected reply
    pairs: list[PreferencePair]
    usage: dict[str, float]  # JudgeUsage.metrics()
    metrics: dict[str, float]  # reward_metrics of the judged replies, prefix "train"


def judge_and_pair(prompts: list[Prompt], samples: Samples, selection: Selection, recipe: Recipe, round: int) -> Judged:
    """The judge step: the selected replies judged (cached) by the recipe's judge, then paired best vs worst."""
    usage = JudgeUsage()
    judged = [samples.completions[i] for i in selection.completion_indices]
    judgments = judge_completions(prompts, judged, recipe, judgment_cache(recipe), usage, training=True)
    pairs = make_pairs(samples, selection, judgments, recipe, round)
    return Judged(judgments, pairs, usage.metrics(), reward_metrics(judgments, "train", recipe))


def make_pairs(
    samples: Samples, selection: Selection, judgments: list[Judgment], recipe: Recipe, round: int
) -> list[PreferencePair]:
    """Best-vs-worst pairs over each prompt's judged replies; ``judgments[i]`` judges the i-th selected reply."""
    greedy = {c.prompt_id: c for c in samples.greedy}
    judged = [samples.completions[i] for i in selection.completion_indices]
    return best_vs_worst(samples.prompt_tokens, judged, judgments, greedy, recipe.pairs.min_margin, round)


def reward_metrics(judgments: list[Judgment], prefix: str, recipe: Recipe) -> dict[str, float]:
    """Mean and standard error of the combined reward, of each objective, and — for the world's rule judgments —
    of ``good_all`` (the share of replies good on every objective at once), named ``<prefix>_<name>[_se]``."""
    if not judgments:
        return {}
    world = worlds.of(recipe)
    columns = {"reward": [j.reward for j in judgments]}
    columns.update({k: [j.scores[k] for j in judgments] for k in judgments[0].scores})
    if judgments[0].judge == world.judge_id:
        columns["good_all"] = [float(world.good_on_all(j.scores)) for j in judgments]
    out = {}
    for name, xs in columns.items():
        out[f"{prefix}_{name}"], out[f"{prefix}_{name}_se"] = mean_and_se(xs)
    return out


def metric_names(recipe: Recipe) -> tuple[str, ...]:
    """What ``reward_metrics`` reports for the world's rule judgments: reward, each objective, good_all."""
    objectives = worlds.of(recipe).objectives
    return ("reward", *objectives, "good_all") if objectives else ("reward",)
