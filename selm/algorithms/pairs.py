"""Pair construction: for each prompt, the best reply is ``chosen`` and the worst ``rejected``.

Pairs whose reward gap is zero (ties) or below ``min_margin`` are dropped: they carry no preference signal and
only add noise to the DPO gradient.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

from selm.records import Completion, Judgment, PreferencePair


def best_vs_worst(
    prompt_tokens: Mapping[str, list[int]],
    completions: Mapping[str, Completion],
    judgments: Sequence[Judgment],
    greedy: Mapping[str, Completion],
    min_margin: float = 0.0,
    round: int = 0,
) -> list[PreferencePair]:
    """One pair per prompt with reward(best) − reward(worst) > 0 and ≥ ``min_margin``.

    Each judgment judges ``completions[judgment.completion_id]``; ``prompt_tokens`` maps prompt id → the token ids
    the replies were sampled from; ``greedy`` maps prompt id → the reference's greedy reply (y0).
    Among equal rewards the earlier judgment wins, so the result is deterministic.
    """
    by_prompt: dict[str, list[tuple[Completion, Judgment]]] = defaultdict(list)
    for j in judgments:
        c = completions[j.completion_id]
        if math.isfinite(j.reward):  # NaN: the judge's verdict could not be parsed (counted by the judge)
            by_prompt[c.prompt_id].append((c, j))
    pairs = []
    for pid, group in by_prompt.items():
        if len(group) < 2:
            continue
        best = max(group, key=lambda cj: cj[1].reward)
        worst = min(group, key=lambda cj: cj[1].reward)
        margin = best[1].reward - worst[1].reward
        if margin <= 0 or margin < min_margin:
            continue
        (cw, jw), (cl, jl) = best, worst
        pairs.append(
            PreferencePair(
                prompt_id=pid,
                prompt_ids=list(prompt_tokens[pid]),
                chosen_ids=cw.token_ids,
                rejected_ids=cl.token_ids,
                greedy_ids=greedy[pid].token_ids,
                chosen_text=cw.text,
                rejected_text=cl.text,
                chosen_reward=jw.reward,
                rejected_reward=jl.reward,
                round=round,
                policy=cw.policy,
                judge=jw.judge,
            )
        )
    return pairs
