"""The sample stage: n replies per prompt from the policy, and its greedy reply y0."""

from __future__ import annotations

from dataclasses import dataclass, field

from selm.pipeline.components import Components
from selm.records import Completion, Prompt, by_id, number


@dataclass
class Samples:
    completions: list[Completion]  # n samples per prompt, adjacent; then dataset replies (pairs.dataset_candidates)
    greedy: list[Completion]  # one greedy reply per prompt: y0 of SELM
    prompt_tokens: dict[str, list[int]]  # prompt id → the token ids the replies were conditioned on
    by_id: dict[str, Completion] = field(init=False, repr=False)  # every completion and y0 by ``Completion.id``

    def __post_init__(self):
        self.by_id = by_id([*self.completions, *self.greedy])


def sample(parts: Components, policy_path: str, prompts: list[Prompt], round: int, policy_name: str) -> Samples:
    """n replies per prompt at the recipe's temperature, plus the greedy reply y0 of the same (reference) policy,
    from the step's sampler."""
    from selm.models.chat import encode_prompt

    s, recipe = parts.recipe.sampling, parts.recipe
    draw = parts.sampler(policy_path, s.batch_size, policy_name)
    completions = draw.sample(
        prompts,
        n=s.n,
        temperature=s.temperature,
        max_new_tokens=s.max_new_tokens,
        round=round,
        desc=f"sample round {round}",
        seed=recipe.experiment.seed * 1000 + round,
    )
    greedy = draw.sample(
        prompts, n=1, greedy=True, max_new_tokens=s.max_new_tokens, round=round, desc=f"greedy y0 round {round}"
    )
    if recipe.pairs.dataset_candidates:
        completions += dataset_completions(prompts, draw.tokenizer, round)
    return Samples(completions, greedy, {p.id: encode_prompt(draw.tokenizer, p.text) for p in prompts})


def dataset_completions(prompts: list[Prompt], tokenizer, round: int) -> list[Completion]:
    """Each prompt's dataset ``chosen`` and ``rejected`` replies as completions (kind "dataset") to be ranked with
    the policy's samples — the three-way {policy, chosen, rejected} ranking of the SELM paper. Ids
    ``<prompt id>/dataset/0`` (chosen) and ``/1`` (rejected)."""
    from selm.models.chat import encode_response

    missing = [p.id for p in prompts if not {"chosen", "rejected"} <= set(p.meta)]
    if missing:
        raise ValueError(
            f"pairs.dataset_candidates: {len(missing)} of {len(prompts)} prompts carry no dataset chosen/rejected "
            f"replies (first: {missing[0]})"
        )
    dataset = [
        Completion(
            prompt_id=p.id,
            text=p.meta[k],
            token_ids=encode_response(tokenizer, p.meta[k]),
            token_logprobs=[],
            kind="dataset",
            round=round,
            policy=f"dataset:{k}",
        )
        for p in prompts
        for k in ("chosen", "rejected")
    ]
    return number(dataset)
