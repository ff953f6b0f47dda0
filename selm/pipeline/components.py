"""What a step builds from the recipe, once: the world, the judges, the judgment cache, the benchmark grader, the
samplers and the models (``Components``); and the factories that build them.

A stage receives a ``Components`` and asks it for what it needs — it never looks a world or a judge up itself, so
following a round from ``RoundFlow.start`` to ``evaluate`` stays in ``selm.pipeline``. Everything is built on first
use: the judge step never imports torch, the sample step never builds a judge.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

from selm import worlds
from selm.algorithms.statistics import mean_and_se
from selm.config import LLMJudgeConfig, Recipe
from selm.judges.base import Judge, RuleJudge
from selm.judges.cache import JudgmentCache
from selm.judges.llm import LLMEndpoint, LLMJudge, load_template
from selm.records import Judgment
from selm.worlds.base import World

if TYPE_CHECKING:  # torch loads with selm.models: only the steps that compute pay for it
    from selm.benchmarks.graders import LLMGrader, ProxyGrader
    from selm.models.cache import ModelCache
    from selm.models.sampling import Sampler


class Components:
    """The recipe's parts for one step, each built once: ``world``, ``judge`` (the recipe's, for training pairs),
    ``rules`` (the world's rule judges, for evaluation), ``judgment_cache``, ``grader`` (the benchmarks'),
    ``models`` (the step's ``ModelCache``: each model once, on the step's device) and ``sampler(path, ...)``;
    ``store``: the experiment's store URI when its tasks share no disk (``selm.storage``), "" when they do."""

    def __init__(self, recipe: Recipe, models: ModelCache | None = None, store: str = ""):
        self.recipe, self.store = recipe, store
        self._models = models
        self._samplers: dict[tuple[str, int, str], Sampler] = {}

    @functools.cached_property
    def world(self) -> World:
        return worlds.of(self.recipe)

    @functools.cached_property
    def judge(self) -> Judge:
        """The recipe's judge (``judge.backend``): it ranks the replies that become pairs."""
        return build_judge(self.recipe)

    @functools.cached_property
    def rules(self) -> Judge:
        """The world's rule judges with the objective weights: every method is measured on this one scale."""
        return build_judge(self.recipe, "rules")

    @functools.cached_property
    def judgment_cache(self) -> JudgmentCache | None:
        return judgment_cache(self.recipe, self.store)

    @functools.cached_property
    def grader(self) -> LLMGrader | ProxyGrader:
        """MT-Bench's and AlpacaEval's grader (``eval.judge``): the offline proxy or an LLM judge."""
        from selm.benchmarks.graders import LLMGrader, ProxyGrader

        j = self.recipe.eval.judge
        if j.backend == "llm":
            return LLMGrader(llm_endpoint(j.llm, self.recipe), j.llm.concurrency)
        return ProxyGrader(j.embedding_model)

    @property
    def models(self) -> ModelCache:
        """The step's model cache, made on first use (importing it loads torch)."""
        if self._models is None:
            from selm.models.cache import ModelCache

            self._models = ModelCache()
        return self._models

    def sampler(self, policy_path: str, batch_size: int, policy_name: str) -> Sampler:
        """The recipe's sampling backend on the policy at ``policy_path`` (``policy_name`` labels its replies),
        one per (path, batch size, name), its model from ``models``."""
        key = (policy_path, batch_size, policy_name)
        if key not in self._samplers:
            from selm.models.sampling import make_sampler

            s = self.recipe.sampling
            self._samplers[key] = make_sampler(s.backend, policy_path, batch_size, policy_name, s.dtype, self.models)
        return self._samplers[key]

    def reward_metrics(self, judgments: list[Judgment], prefix: str) -> dict[str, float]:
        """``reward_metrics`` in this recipe's world."""
        return reward_metrics(judgments, prefix, self.world)


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
def _embedding_judge(model: str, reference_key: str) -> Judge:
    """One loaded embedding model per process (steps and sweeps call the judge many times)."""
    from selm.judges.embedding import EmbeddingJudge

    return EmbeddingJudge(model, reference_key)


@functools.cache
def _reward_model(path: str) -> Judge:
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


def judgment_cache(recipe: Recipe, store: str = "") -> JudgmentCache | None:
    """``judge.cache``: off, the shared cache folder's database (auto), or a file; mirrored under the experiment's
    ``store`` (``<store>/judgments``) when its tasks share no disk."""
    if recipe.judge.cache == "off":
        return None
    mirror = f"{store}/judgments" if store else ""
    if recipe.judge.cache == "auto":
        from selm.cache import cache_dir

        return JudgmentCache(cache_dir() / "judgments.sqlite", mirror)
    return JudgmentCache(recipe.judge.cache, mirror)


def reward_metrics(judgments: list[Judgment], prefix: str, world: World) -> dict[str, float]:
    """Mean and standard error of the combined reward, of each objective, and — for the world's rule judgments —
    of ``good_all`` (the share of replies good on every objective at once), named ``<prefix>/<name>[_se]``.

    Over the replies that have a score: one whose every verdict failed to parse has none (NaN; the judge counts it in
    ``judge/parse_failures``) and is left out rather than guessed."""
    if not judgments:
        return {}
    columns = {"reward": [j.reward for j in judgments]}
    columns.update({k: [j.scores[k] for j in judgments] for k in judgments[0].scores})
    if judgments[0].judge == world.judge_id:
        columns["good_all"] = [float(world.good_on_all(j.scores)) for j in judgments]
    out = {}
    for name, values in columns.items():
        xs = [x for x in values if not math.isnan(x)]
        if xs:
            out[f"{prefix}/{name}"], out[f"{prefix}/{name}_se"] = mean_and_se(xs)
    return out


def metric_names(recipe: Recipe) -> tuple[str, ...]:
    """What ``reward_metrics`` reports for the world's rule judgments: reward, each objective, good_all."""
    objectives = worlds.of(recipe).objectives
    return ("reward", *objectives, "good_all") if objectives else ("reward",)
