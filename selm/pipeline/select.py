"""The select stage: which replies the judge labels — all samples, or the comparisons an acquisition function picks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selm.algorithms import acquisition
from selm.pipeline.components import Components
from selm.pipeline.sample import Samples
from selm.records import Completion


@dataclass
class Selection:
    """What the judge labels this round: all samples, or the comparisons an acquisition function picked."""

    method: str
    completion_ids: list[str]  # replies to judge (``Completion.id``)
    labels: int  # comparisons paid for: one per prompt ("all") or per acquired candidate
    candidates: list[acquisition.Candidate]  # APL only: every candidate comparison, and its scores
    picked: list[int]  # indices into candidates, best first
    entropy: dict[str, float]
    certainty: list[float]  # certainty[k] scores candidates[k]

    def replies(self, samples: Samples) -> list[Completion]:
        """The replies to judge, in selection order."""
        return [samples.by_id[i] for i in self.completion_ids]


def select_comparisons(
    parts: Components, samples: Samples, policy_path: str, reference_path: str, round: int
) -> Selection:
    """Choose which replies go to the judge.

    ``all``: every sample of every prompt (pairs are then best vs worst of n). Otherwise each prompt's first two
    samples form a candidate comparison and ``select.acquisition`` keeps ``select.label_budget`` of them (APL).
    Certainty uses the policy's implicit reward against *its own* reference (``reference_path``, the previous
    round's starting policy); in round 1 the two coincide and every certainty score is 0. Both come from the
    step's models.
    """
    sel, recipe = parts.recipe.select, parts.recipe
    comps = samples.completions
    if sel.acquisition == "all":
        return Selection("all", [c.id for c in comps], len(samples.prompt_tokens), [], [], {}, [])
    cands = acquisition.candidates(comps)
    entropy = acquisition.predictive_entropy(comps)
    cert = certainty_scores(parts, cands, samples, policy_path, reference_path)
    if sel.label_budget is None:  # the recipe requires one with an acquisition function
        raise ValueError(f"select.label_budget is required with select.acquisition = {sel.acquisition!r}")
    picked = acquisition.acquire(
        sel.acquisition,
        cands,
        sel.label_budget,
        entropy=entropy,
        certainty_scores=cert,
        hybrid_factor=sel.hybrid_factor,
        seed=recipe.experiment.seed * 1000 + round,
    )
    ids = [i for k in picked for i in (cands[k].a, cands[k].b)]
    return Selection(sel.acquisition, ids, len(picked), cands, picked, entropy, cert)


def certainty_scores(
    parts: Components, cands: list[acquisition.Candidate], samples: Samples, policy_path: str, reference_path: str
) -> list[float]:
    """|r̂(a) − r̂(b)| of each candidate comparison under the policy's implicit reward against its reference (fp32,
    β = ``train.beta``)."""
    if not cands or Path(policy_path).resolve() == Path(reference_path).resolve():
        return [0.0] * len(cands)  # policy is its own reference: r̂ ≡ 0
    from selm.models.logprobs import batched_sequence_logprobs

    prompts = [samples.prompt_tokens[c.prompt_id] for c in cands for _ in (0, 1)]
    replies = [samples.by_id[i].token_ids for c in cands for i in (c.a, c.b)]
    logps = {}
    for name, path in (("policy", policy_path), ("reference", reference_path)):
        model, tok = parts.models.get(path)
        logps[name] = batched_sequence_logprobs(model, prompts, replies, tok.pad_token_id).tolist()
    pol, ref, beta = logps["policy"], logps["reference"], parts.recipe.train.beta
    return [
        acquisition.certainty(pol[2 * k], ref[2 * k], pol[2 * k + 1], ref[2 * k + 1], beta) for k in range(len(cands))
    ]
