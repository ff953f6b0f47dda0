"""Exploration diagnostics: how far a round moved the policy from its reference, what became of the reference's own
greedy reply (the y0 SELM's optimism term pushes down), and how varied and how good the sampled replies are.

Pure functions of log-probabilities, token ids and rewards; the evaluate stage computes the inputs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from selm.algorithms.statistics import mean_and_se


def mean_log_ratio(logp_policy: Sequence[float], logp_reference: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error over replies of log πθ(y|x) − log πref(y|x) (sequence log-probabilities).

    On replies sampled from πθ at temperature 1 this is the Monte-Carlo estimate of KL(πθ ‖ πref) =
    E_{y∼πθ}[log πθ(y|x) − log πref(y|x)], unbiased (one estimate can be negative); on the reference's greedy
    replies y0 it is the quantity SELM's optimism term α·β·(log πθ(y0) − log πref(y0)) pushes down."""
    if len(logp_policy) != len(logp_reference):
        raise ValueError(f"{len(logp_policy)} policy log-probs against {len(logp_reference)} reference log-probs")
    if not len(logp_policy):
        return math.nan, math.nan
    return mean_and_se([float(p) - float(r) for p, r in zip(logp_policy, logp_reference)])


def ngrams(tokens: Sequence[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(replies: Sequence[Sequence[int]], n: int) -> float:
    """distinct-n of one prompt's replies (Li et al., 2016): |distinct n-grams| / |n-grams| over all the replies
    together; 1 when no n-gram repeats within or across them; NaN when they hold no n-gram."""
    grams = [g for r in replies for g in ngrams(r, n)]
    return len(set(grams)) / len(grams) if grams else math.nan


def pairwise_overlap(replies: Sequence[Sequence[int]], n: int = 2) -> float:
    """Mean over pairs of one prompt's replies of the Jaccard overlap |A ∩ B| / |A ∪ B| of their n-gram sets: 1 when
    all replies are the same, 0 when no two share an n-gram; two replies without n-grams count as the same."""
    sets = [set(ngrams(r, n)) for r in replies]
    pairs = [len(a & b) / len(a | b) if a | b else 1.0 for a, b in itertools.combinations(sets, 2)]
    return float(np.mean(pairs)) if pairs else math.nan


def best_of_n(rewards: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(mean over prompts of the best reward among its replies, mean over prompts of max − min): what a best-of-n
    pick reaches and how far apart a pair of this policy's replies can be."""
    groups = [np.asarray(r, dtype=float) for r in rewards if len(r)]
    if not groups:
        return math.nan, math.nan
    return float(np.mean([g.max() for g in groups])), float(np.mean([g.max() - g.min() for g in groups]))


def win_share(rewards: Sequence[float], baseline_rewards: Sequence[float]) -> float:
    """Share of prompts whose reply the judge rewards above the baseline reply of the same prompt, ties counting
    ½ (the win rate of a pairwise comparison read from pointwise rewards)."""
    r, b = np.asarray(rewards, dtype=float), np.asarray(baseline_rewards, dtype=float)
    if len(r) != len(b):
        raise ValueError(f"{len(r)} rewards against {len(b)} baseline rewards")
    return float(np.mean((r > b) + 0.5 * (r == b))) if len(r) else math.nan
