"""Means, standard errors and the before/after comparison of held-out metrics."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence


def mean_and_se(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error s/√n."""
    m = statistics.fmean(xs)
    return m, (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def improvement(
    before: Mapping[str, float], after: Mapping[str, float], names: Sequence[str], prefix: str = "heldout"
) -> list[dict]:
    """Per metric: before, after, difference and z = Δ / √(se_before² + se_after²) (independent samples)."""
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
