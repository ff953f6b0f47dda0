"""Transformed and combined rewards (Wang et al., 2024, arXiv 2402.00742 — "LSC").

A raw score r(x, y) becomes a utility u(x, y) = log σ(r(x, y) − r_ref(x)), where r_ref(x) is a high quantile
(default 0.85) of the scores of the *reference policy's* samples for the same prompt. u ≈ log P(y beats a typical
good reference reply), so summing utilities over objectives ≈ log P(good on all): a logical AND, in which a reply
cannot buy back a failed objective with a surplus on another. The raw weighted sum Σ w_i r_i is the baseline.

In a round the sampled replies *are* reference-policy samples (the reference is the policy at the round's start),
so r_ref(x) comes from the same round's judgments.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from selm.records import Judgment


def weighted_sum(scores: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Raw combined reward r = Σ_i w_i · s_i (the LSC paper's baseline combination)."""
    return float(sum(w * scores[name] for name, w in weights.items()))


def log_sigmoid(z: float) -> float:
    """log σ(z), computed without overflow for large |z|."""
    return -math.log1p(math.exp(-z)) if z >= 0 else z - math.log1p(math.exp(z))


def lsc_utility(r: float, r_ref: float) -> float:
    """u = log σ(r − r_ref)."""
    return log_sigmoid(r - r_ref)


def reference_points(judgments: Sequence[Judgment], q: float) -> dict[tuple[str, str], float]:
    """r_ref(x) per (prompt id, objective): the q-quantile of that prompt's judged scores on that objective
    (linear interpolation between order statistics, numpy's default)."""
    by_prompt: dict[tuple[str, str], list[float]] = defaultdict(list)
    for j in judgments:
        for name, s in j.scores.items():
            if math.isfinite(s):  # an unparsed LLM verdict (NaN) is no evidence about the reference
                by_prompt[(j.prompt_id, name)].append(s)
    return {key: float(np.quantile(xs, q)) if xs else math.nan for key, xs in by_prompt.items()}


def combine(
    judgments: Sequence[Judgment], method: str, weights: Mapping[str, float], q: float = 0.85
) -> list[Judgment]:
    """Judgments with ``reward`` recomputed by ``method``:

    - ``sum``: r = Σ_i w_i · s_i (raw weighted sum, the baseline);
    - ``lsc``: r = Σ_i log σ(s_i − r_ref,i(x)) over the objectives in ``weights`` (the AND of the LSC paper;
      the weights only select the objectives, the transform does the calibration).
    """
    if method == "sum":
        return [replace(j, reward=weighted_sum(j.scores, weights)) for j in judgments]
    if method != "lsc":
        raise ValueError(f"unknown reward combination {method!r}; use 'sum' or 'lsc'")
    ref = reference_points(judgments, q)
    return [replace(j, reward=sum(lsc_utility(j.scores[k], ref[(j.prompt_id, k)]) for k in weights)) for j in judgments]
