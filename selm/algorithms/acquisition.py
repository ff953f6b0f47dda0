"""Active Preference Learning (Muldrew et al., 2024, arXiv 2402.08114): which comparisons earn a judge label.

A *candidate* is one prompt with two of the policy's sampled replies (a, b). Under a label budget of k
comparisons per round, an acquisition function ranks the candidates and only the top k go to the judge:

- ``random``      — the baseline: k candidates uniformly at random.
- ``entropy``     — prompts where the policy is least sure what to say: predictive entropy
                    Ĥ(y|x) = −(1/n) Σ_i log π(y_i|x), over **that prompt's own** n samples at T = 1.
- ``certainty``   — pairs the policy already separates most: largest |r̂(x,a) − r̂(x,b)| with the implicit DPO
                    reward r̂ = β·(log π − log π_ref) of the current policy against its own reference.
- ``uncertainty`` — the ablation: smallest |r̂(x,a) − r̂(x,b)|.
- ``hybrid``      — entropy keeps the top k·F prompts, certainty keeps k pairs among them.

In round 1 the policy is its own reference, so every certainty score is 0 and ``certainty`` degenerates to the
candidate order; that is the method, not a bug (DESIGN.md).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from selm.records import Completion

METHODS = ("random", "entropy", "certainty", "uncertainty", "hybrid")


@dataclass(frozen=True)
class Candidate:
    """A comparison that could be sent to the judge: two replies, by ``Completion.id``."""

    prompt_id: str
    a: str
    b: str


def candidates(completions: Sequence[Completion]) -> list[Candidate]:
    """One candidate per prompt: its first two replies (its first two samples: a prompt's samples come first)."""
    first: dict[str, list[str]] = defaultdict(list)
    for c in completions:
        if len(first[c.prompt_id]) < 2:
            first[c.prompt_id].append(c.id)
    return [Candidate(pid, *idx) for pid, idx in first.items() if len(idx) == 2]


def predictive_entropy(completions: Sequence[Completion]) -> dict[str, float]:
    """Ĥ(y|x) = −(1/n) Σ_{i=1..n} log π(y_i|x) per prompt, averaging only that prompt's own samples.

    ``log π(y_i|x)`` is the sum of the reply's token log-probs; the samples must be drawn at temperature 1
    (otherwise the estimate is of a different distribution's entropy).
    """
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for c in completions:
        sums[c.prompt_id] -= c.logprob
        counts[c.prompt_id] += 1
    return {pid: sums[pid] / counts[pid] for pid in sums}


def certainty(policy_a: float, ref_a: float, policy_b: float, ref_b: float, beta: float) -> float:
    """|r̂(x,a) − r̂(x,b)| with r̂(x,y) = β·(log π(y|x) − log π_ref(y|x))."""
    return abs(beta * (policy_a - ref_a) - beta * (policy_b - ref_b))


def _top(indices: Sequence[int], score: Mapping[int, float], k: int, largest: bool = True) -> list[int]:
    """The k best indices by score; ties keep the earlier index (deterministic)."""
    order = sorted(indices, key=lambda i: (-score[i] if largest else score[i], i))
    return order[:k]


def acquire(
    method: str,
    cands: Sequence[Candidate],
    budget: int,
    *,
    entropy: Mapping[str, float] | None = None,
    certainty_scores: Sequence[float] | None = None,
    hybrid_factor: int = 4,
    seed: int = 0,
) -> list[int]:
    """Indices of at most ``budget`` candidates to label, best first.

    ``entropy`` maps prompt id → Ĥ (needed by entropy and hybrid); ``certainty_scores[i]`` belongs to
    ``cands[i]`` (needed by certainty, uncertainty and hybrid).
    """
    if method not in METHODS:
        raise ValueError(f"unknown acquisition {method!r}; choose one of {', '.join(METHODS)}")
    if budget < 0:
        raise ValueError(f"label budget must be ≥ 0, got {budget}")
    everything = range(len(cands))
    if method == "random":
        return random.Random(seed).sample(list(everything), min(budget, len(cands)))
    if method in ("entropy", "hybrid") and entropy is None:
        raise ValueError(f"{method} acquisition needs the prompts' predictive entropy")
    if method in ("certainty", "uncertainty", "hybrid") and certainty_scores is None:
        raise ValueError(f"{method} acquisition needs certainty scores")
    by_entropy = {i: entropy[cands[i].prompt_id] for i in everything} if entropy is not None else {}
    if method == "entropy":
        return _top(everything, by_entropy, budget)
    cert = dict(enumerate(certainty_scores or []))
    if method == "certainty":
        return _top(everything, cert, budget)
    if method == "uncertainty":
        return _top(everything, cert, budget, largest=False)
    shortlist = _top(everything, by_entropy, budget * hybrid_factor)
    return _top(shortlist, cert, budget)
