"""The stages of one round as plain functions: what each Metaflow step calls.

sample → judge → select → train → evaluate. Each takes the resolved ``Recipe`` and records, returns records and
metrics, and knows nothing about Metaflow or MLflow, so it is testable and scriptable on its own.
"""

from __future__ import annotations

import math
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from selm import tinyworld
from selm.config import Recipe
from selm.judging import judge
from selm.pairs import best_vs_worst
from selm.records import Completion, Judgment, PreferencePair, Prompt

# torch-heavy modules (sampling, training) are imported inside the stages that need them, so the judge and
# select steps start in a fraction of the time.

HELDOUT_SEED = 10_000  # the held-out prompt set is the same for every round and every experiment


@contextmanager
def timed(metrics: dict, name: str):
    """Adds the wall time of the block to ``metrics[f"time_{name}_s"]``."""
    t0 = time.perf_counter()
    yield
    metrics[f"time_{name}_s"] = round(time.perf_counter() - t0, 3)


def initial_policy_path(recipe: Recipe) -> str:
    """Where round 1 starts: the tiny world's cached SFT policy, or the recipe's path / hub id."""
    if recipe.policy.init == "tiny":
        from selm.tinyworld.policy import TinyPolicySpec, tiny_policy_path

        return str(tiny_policy_path(TinyPolicySpec(**recipe.policy.tiny.model_dump())))
    return recipe.policy.init


def round_dir(recipe: Recipe, experiment_id: str, round: int) -> Path:
    return Path(recipe.experiment.output_dir) / experiment_id / f"round-{round}"


def train_prompts(recipe: Recipe, round: int) -> list[Prompt]:
    """This round's slice of the train split: a seeded draw per (experiment seed, round)."""
    n = recipe.world.train_prompts_per_round
    return tinyworld.prompts("train", n, seed=recipe.experiment.seed * 1000 + round)


def heldout_prompts(recipe: Recipe) -> list[Prompt]:
    return tinyworld.prompts("heldout", recipe.world.heldout_prompts, seed=HELDOUT_SEED)


def _sampler(policy_path: str, batch_size: int, policy_name: str):
    from selm.sampling import HFSampler, load_policy

    model, tokenizer = load_policy(policy_path)
    return HFSampler(model, tokenizer, batch_size=batch_size, policy=policy_name)


@dataclass
class Samples:
    completions: list[Completion]  # n samples per prompt, adjacent
    greedy: list[Completion]  # one greedy reply per prompt: y0 of SELM
    prompt_ids: dict[str, list[int]]  # prompt id → the token ids the replies were conditioned on


def sample(policy_path: str, prompts: list[Prompt], recipe: Recipe, round: int, policy_name: str) -> Samples:
    """n replies per prompt at the recipe's temperature, plus the greedy reply y0 of the same (reference) policy."""
    from selm.chat import encode_prompt

    s = recipe.sampling
    sampler = _sampler(policy_path, s.batch_size, policy_name)
    completions = sampler.sample(
        prompts,
        n=s.n,
        temperature=s.temperature,
        max_new_tokens=s.max_new_tokens,
        round=round,
        desc=f"sample round {round}",
    )
    greedy = sampler.sample(
        prompts, n=1, greedy=True, max_new_tokens=s.max_new_tokens, round=round, desc=f"greedy y0 round {round}"
    )
    return Samples(completions, greedy, {p.id: encode_prompt(sampler.tokenizer, p.text) for p in prompts})


def judge_completions(prompts: list[Prompt], completions: list[Completion], recipe: Recipe) -> list[Judgment]:
    return judge({p.id: p for p in prompts}, completions, tinyworld.score, recipe.judge.weights, tinyworld.JUDGE_ID)


def select_pairs(samples: Samples, judgments: list[Judgment], recipe: Recipe, round: int) -> list[PreferencePair]:
    """Best-vs-worst pairs over each prompt's samples (active selection under a label budget comes later)."""
    greedy = {c.prompt_id: c for c in samples.greedy}
    return best_vs_worst(samples.prompt_ids, samples.completions, judgments, greedy, recipe.pairs.min_margin, round)


def train(policy_path: str, pairs: list[PreferencePair], recipe: Recipe, round: int, save_to: Path):
    """Train the round's policy from ``policy_path`` (which is also the reference) and save it to ``save_to``.

    Returns the ``TrainHistory``."""
    from selm.sampling import load_policy
    from selm.training import train_preferences

    model, tokenizer = load_policy(policy_path)
    return train_preferences(model, tokenizer, pairs, recipe.train, round, recipe.experiment.seed, save_to=save_to)


def mean_and_se(xs: list[float]) -> tuple[float, float]:
    """Mean and its standard error s/√n."""
    m = statistics.fmean(xs)
    return m, (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def evaluate(policy_path: str, recipe: Recipe, round: int, policy_name: str):
    """Held-out reward of the policy: one reply per held-out prompt at ``eval.temperature``.

    Returns (metrics, completions, judgments); metrics hold mean and standard error for every objective and the
    combined reward (``heldout_<objective>`` and ``heldout_<objective>_se``).
    """
    prompts = heldout_prompts(recipe)
    sampler = _sampler(policy_path, recipe.eval.batch_size, policy_name)
    completions = sampler.sample(
        prompts,
        n=1,
        temperature=recipe.eval.temperature,
        max_new_tokens=recipe.sampling.max_new_tokens,
        round=round,
        desc=f"evaluate round {round}",
    )
    judgments = judge_completions(prompts, completions, recipe)
    return reward_metrics(judgments, "heldout"), completions, judgments


def reward_metrics(judgments: list[Judgment], prefix: str) -> dict[str, float]:
    """Mean and standard error of the combined reward and of each objective, named ``<prefix>_<name>[_se]``."""
    out = {}
    columns = {"reward": [j.reward for j in judgments]}
    columns.update({k: [j.scores[k] for j in judgments] for k in judgments[0].scores})
    for name, xs in columns.items():
        out[f"{prefix}_{name}"], out[f"{prefix}_{name}_se"] = mean_and_se(xs)
    return out


def improvement(
    before: dict[str, float],
    after: dict[str, float],
    names=("reward", "correctness", "conciseness", "safety"),
    prefix: str = "heldout",
) -> list[dict]:
    """Per objective: before, after, difference and z = Δ / √(se_before² + se_after²) (independent samples)."""
    rows = []
    for n in names:
        k = f"{prefix}_{n}"
        if k not in before or k not in after:
            continue
        diff = after[k] - before[k]
        se = math.sqrt(before[f"{k}_se"] ** 2 + after[f"{k}_se"] ** 2)
        rows.append(
            {
                "objective": n,
                "before": before[k],
                "after": after[k],
                "delta": diff,
                "se_delta": se,
                "z": diff / se if se > 0 else float("inf"),
            }
        )
    return rows
