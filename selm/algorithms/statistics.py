"""Means, standard errors and the paired before/after comparison of per-prompt metrics."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence


def mean_and_se(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error s/√n."""
    m = statistics.fmean(xs)
    return m, (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def paired_improvement(
    before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]]
) -> list[dict]:
    """Per metric scored prompt by prompt in both (``{metric: {prompt id: value}}``), over the prompts both scored:
    before, after, Δ = mean(after_i − before_i), its paired standard error sd(after_i − before_i)/√n and z = Δ / SE.

    Two policies answering the same prompts share each prompt's difficulty, so the paired SE is the honest (and
    usually much smaller) uncertainty of their difference."""
    rows = []
    for metric in [m for m in before if m in after]:
        ids = [i for i in before[metric] if i in after[metric]]
        if len(ids) < 2:
            continue
        diffs = [after[metric][i] - before[metric][i] for i in ids]
        delta, se = mean_and_se(diffs)
        rows.append(
            {
                "metric": metric,
                "n": len(ids),
                "before": statistics.fmean(before[metric][i] for i in ids),
                "after": statistics.fmean(after[metric][i] for i in ids),
                "delta": delta,
                "se_delta": se,
                "z": delta / se if se > 0 else (0.0 if delta == 0 else math.copysign(math.inf, delta)),
            }
        )
    return rows
