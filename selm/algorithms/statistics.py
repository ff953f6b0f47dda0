"""Means, standard errors and the paired before/after comparison of per-prompt metrics."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence


def mean_and_se(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error s/√n."""
    m = statistics.fmean(xs)
    return m, (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def ci95_half_width(se_seeds: float | None, seeds: int, se_prompts: float | None = None) -> float | None:
    """Half-width of a 95 % interval for a difference averaged over ``seeds`` paired seeds: the larger of
    t₀.₉₇₅(seeds − 1)·SE_seeds and z₀.₉₇₅·SE_prompts. The seed SE comes from seeds − 1 degrees of freedom, so
    with 2 or 3 seeds its interval is 12.7 or 4.3 SEs wide, not 1.96: a z = Δ/SE read against a normal
    overstates a few seeds' evidence."""
    from scipy.stats import t

    widths = []
    if se_seeds is not None and se_seeds == se_seeds and seeds > 1:  # se == se: not NaN
        widths.append(float(t.ppf(0.975, seeds - 1)) * se_seeds)
    if se_prompts is not None and se_prompts == se_prompts:
        widths.append(statistics.NormalDist().inv_cdf(0.975) * se_prompts)
    return max(widths, default=None)


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
