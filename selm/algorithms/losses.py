"""Preference losses, one function each, on *sequence* log-probs (sums over response tokens).

Arguments named ``policy_*`` are log πθ(y|x) of the policy being trained, ``ref_*`` are log πref(y|x) of the
reference (the previous round's policy, fixed for the whole round). All return the per-pair loss; the trainer
takes the mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def implicit_reward(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's implicit reward r̂(x, y) = β · (log πθ(y|x) − log πref(y|x))."""
    return beta * (policy_logps - ref_logps)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """DPO (Rafailov et al., 2023):

    L = −log σ( β · [ (log πθ(yw) − log πref(yw)) − (log πθ(yl) − log πref(yl)) ] )
    """
    logits = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * logits)


def selm_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    policy_greedy: torch.Tensor,
    ref_greedy: torch.Tensor,
    beta: float,
    alpha: float,
) -> torch.Tensor:
    """SELM (Zhang et al., 2024, arXiv 2405.19332): DPO plus an optimism term that explores away from y0:

    L = −log σ(β·[(log πθ(yw) − log πref(yw)) − (log πθ(yl) − log πref(yl))]) + α·β·(log πθ(y0) − log πref(y0))

    where y0 is the reference policy's greedy reply to the same prompt.
    """
    optimism = alpha * beta * (policy_greedy - ref_greedy)
    return dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta) + optimism
