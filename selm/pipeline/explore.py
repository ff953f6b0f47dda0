"""Exploration diagnostics of a round (``explore/*`` metrics): does the new policy leave its reference, and what
did the round's samples look like. Definitions: ``selm.algorithms.exploration`` and the README (Exploration).

On the held-out prompts, the new policy πθ against the round's reference πref (the policy the round started from):
- ``explore/kl`` ± ``_se``: Monte-Carlo KL(πθ ‖ πref) from the held-out replies (sampled from πθ); only when they
  were sampled at temperature 1, where they are draws from πθ itself;
- ``explore/y0_log_ratio`` ± ``_se``: log πθ(y0) − log πref(y0), y0 the reference's greedy reply (what SELM's
  optimism term pushes down);
- ``explore/win_over_y0``: share of prompts where the held-out judges reward πθ's reply above y0 (ties ½).
On the round's training samples (drawn from πref, n per prompt):
- ``explore/distinct_1``, ``explore/distinct_2``: distinct-n of each prompt's replies, averaged over prompts;
- ``explore/self_overlap``: mean pairwise bigram Jaccard overlap of each prompt's replies;
- ``explore/best_of_n_reward``, ``explore/reward_spread``: per prompt the best judged reward and max − min.
"""

from __future__ import annotations

import math
from collections import defaultdict

from selm.algorithms import exploration
from selm.pipeline.components import Components
from selm.pipeline.judge import measure
from selm.pipeline.sample import Samples
from selm.records import Completion, Judgment


def diagnostics(
    parts: Components,
    policy_path: str,
    reference_path: str,
    samples: Samples,
    judgments: list[Judgment],
    heldout: tuple[list[Completion], list[Judgment]],
    round: int,
) -> dict[str, float]:
    """All ``explore/*`` metrics of the round from its samples, their judgments (each names its reply by id) and the
    new policy's held-out replies and judgments (the evaluate stage's); the held-out ones only when the world has a
    held-out set; {} when ``eval.diagnostics`` is off. Models come from the step's ``parts.models``."""
    if not parts.recipe.eval.diagnostics:
        return {}
    return sample_diagnostics(samples, judgments) | heldout_diagnostics(
        parts, policy_path, reference_path, *heldout, round
    )


def sample_diagnostics(samples: Samples, judgments: list[Judgment]) -> dict[str, float]:
    """Diversity of the round's n samples per prompt and the spread of their judged rewards."""
    replies: dict[str, list[list[int]]] = defaultdict(list)
    for c in samples.completions:
        if c.kind == "sample":
            replies[c.prompt_id].append(c.token_ids)
    rewards: dict[str, list[float]] = defaultdict(list)
    for j in judgments:
        if samples.by_id[j.completion_id].kind == "sample":
            rewards[j.prompt_id].append(j.reward)
    best, spread = exploration.best_of_n(list(rewards.values()))
    return {
        "explore/distinct_1": _mean(exploration.distinct_n(r, 1) for r in replies.values()),
        "explore/distinct_2": _mean(exploration.distinct_n(r, 2) for r in replies.values()),
        "explore/self_overlap": _mean(exploration.pairwise_overlap(r, 2) for r in replies.values() if len(r) > 1),
        "explore/best_of_n_reward": best,
        "explore/reward_spread": spread,
    }


def heldout_diagnostics(
    parts: Components,
    policy_path: str,
    reference_path: str,
    completions: list[Completion],
    judgments: list[Judgment],
    round: int,
) -> dict[str, float]:
    """KL to the reference, the reference's greedy reply y0 under both models, and the new replies' win share over
    y0, on the held-out prompts: one greedy pass of the reference, and one fp32 scoring pass under each model that
    reads each prompt once, with y0 and the held-out reply behind it (``batched_shared_logprobs``). (At temperature
    1, with neither top-k nor top-p, the replies are draws from πθ; they are re-scored rather than taken from the
    sampler so that both sides of the log-ratio come from the same precision — the sampler may run in bf16,
    ``sampling.dtype``.)"""
    from selm.models.chat import encode_prompt
    from selm.models.logprobs import batched_shared_logprobs

    recipe = parts.recipe
    prompts = parts.world.heldout_prompts(recipe)
    if not prompts or not completions:
        return {}
    if [c.prompt_id for c in completions] != [p.id for p in prompts]:
        raise ValueError(f"round {round}: the held-out replies do not answer the held-out prompts one by one")
    draw = parts.sampler(reference_path, recipe.eval.batch_size, f"round-{round - 1}")
    y0 = draw.sample(
        prompts, n=1, greedy=True, max_new_tokens=recipe.sampling.max_new_tokens, round=round, desc="greedy y0 held-out"
    )
    y0_reward = {j.prompt_id: j.reward for j in measure(parts, prompts, y0)}  # greedy: one reply per prompt
    prompt_ids = [encode_prompt(draw.tokenizer, p.text) for p in prompts]
    kl = recipe.eval.temperature == 1.0  # otherwise the held-out replies are not draws from πθ
    replies = [[c.token_ids for c in y0], *([[c.token_ids for c in completions]] if kl else [])]
    logps = {}
    for name, path in (("policy", policy_path), ("reference", reference_path)):
        model, tok = parts.models.get(path)  # fp32
        logps[name] = batched_shared_logprobs(model, prompt_ids, replies, tok.pad_token_id).tolist()
    ratio = exploration.mean_log_ratio(logps["policy"][0], logps["reference"][0])
    out = dict(zip(("explore/y0_log_ratio", "explore/y0_log_ratio_se"), ratio))
    if kl:
        kl_estimate = exploration.mean_log_ratio(logps["policy"][1], logps["reference"][1])
        out |= dict(zip(("explore/kl", "explore/kl_se"), kl_estimate))
    out["explore/win_over_y0"] = exploration.win_share(
        [j.reward for j in judgments], [y0_reward[j.prompt_id] for j in judgments]
    )
    return out


def _mean(values) -> float:
    xs = [v for v in values if not math.isnan(v)]
    return sum(xs) / len(xs) if xs else math.nan
