"""The select stage: which replies the judge labels — all samples, or the comparisons an acquisition function picks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from selm.algorithms import acquisition
from selm.config import Recipe
from selm.pipeline.sample import Samples

if TYPE_CHECKING:  # torch loads with selm.models: only the steps that compute pay for it
    from selm.models.cache import ModelCache


@dataclass
class Selection:
    """What the judge labels this round: all samples, or the comparisons an acquisition function picked."""

    method: str
    completion_indices: list[int]  # replies to judge (indices into Samples.completions)
    labels: int  # comparisons paid for: one per prompt ("all") or per acquired candidate
    candidates: list[acquisition.Candidate]  # APL only: every candidate comparison, and its scores
    picked: list[int]  # indices into candidates, best first
    entropy: dict[str, float]
    certainty: list[float]


def select_comparisons(
    samples: Samples,
    recipe: Recipe,
    policy_path: str,
    reference_path: str,
    round: int,
    models: ModelCache | None = None,
) -> Selection:
    """Choose which replies go to the judge.

    ``all``: every sample of every prompt (pairs are then best vs worst of n). Otherwise each prompt's first two
    samples form a candidate comparison and ``select.acquisition`` keeps ``select.label_budget`` of them (APL).
    Certainty uses the policy's implicit reward against *its own* reference (``reference_path``, the previous
    round's starting policy); in round 1 the two coincide and every certainty score is 0. Both come from the
    step's ``models``.
    """
    sel = recipe.select
    comps = samples.completions
    if sel.acquisition == "all":
        return Selection("all", list(range(len(comps))), len(samples.prompt_tokens), [], [], {}, [])
    cands = acquisition.candidates(comps)
    entropy = acquisition.predictive_entropy(comps)
    cert = certainty_scores(cands, samples, policy_path, reference_path, recipe.train.beta, models)
    picked = acquisition.acquire(
        sel.acquisition,
        cands,
        sel.label_budget,
        entropy=entropy,
        certainty_scores=cert,
        hybrid_factor=sel.hybrid_factor,
        seed=recipe.experiment.seed * 1000 + round,
    )
    indices = [i for k in picked for i in (cands[k].a, cands[k].b)]
    return Selection(sel.acquisition, indices, len(picked), cands, picked, entropy, cert)


def certainty_scores(
    cands, samples: Samples, policy_path: str, reference_path: str, beta: float, models: ModelCache | None = None
) -> list[float]:
    """|r̂(a) − r̂(b)| of each candidate comparison under the policy's implicit reward against its reference (fp32)."""
    if not cands or Path(policy_path).resolve() == Path(reference_path).resolve():
        return [0.0] * len(cands)  # policy is its own reference: r̂ ≡ 0
    from selm.models.cache import ModelCache
    from selm.models.logprobs import batched_sequence_logprobs

    models = models or ModelCache()
    prompts = [samples.prompt_tokens[c.prompt_id] for c in cands for _ in (0, 1)]
    replies = [samples.completions[i].token_ids for c in cands for i in (c.a, c.b)]
    logps = {}
    for name, path in (("policy", policy_path), ("reference", reference_path)):
        model, tok = models.get(path)
        logps[name] = batched_sequence_logprobs(model, prompts, replies, tok.pad_token_id).tolist()
    pol, ref = logps["policy"], logps["reference"]
    return [
        acquisition.certainty(pol[2 * k], ref[2 * k], pol[2 * k + 1], ref[2 * k + 1], beta) for k in range(len(cands))
    ]
