"""Preference losses, one function each, on *sequence* log-probs (sums over response tokens).

Each takes the policy's log πθ(y|x) and the reference's log πref(y|x) (the previous round's policy, fixed for the
whole round) of the chosen yw, rejected yl and — for SELM — greedy y0 replies, as ``Logps``, and returns
(per-pair loss, r̂(x, yw), r̂(x, yl)) with DPO's implicit reward r̂ = β·(log πθ − log πref); the trainer takes the
mean of the loss and logs the rewards. ``LOSSES`` holds the functions ``train.loss`` names; ``selm.config.LOSS_SPECS``
says what each reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


@dataclass(frozen=True)
class Logps:
    """Sequence log-probs of a batch of pairs, one value per pair each."""

    chosen: Tensor
    rejected: Tensor
    greedy: Tensor | None = None  # y0, the reference's greedy reply (SELM only)


def implicit_reward(policy_logps: Tensor, ref_logps: Tensor, beta: float) -> Tensor:
    """DPO's implicit reward r̂(x, y) = β · (log πθ(y|x) − log πref(y|x))."""
    return beta * (policy_logps - ref_logps)


def dpo_loss(policy: Logps, ref: Logps, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    """DPO (Rafailov et al., 2023):

    L = −log σ( β · [ (log πθ(yw) − log πref(yw)) − (log πθ(yl) − log πref(yl)) ] ) = −log σ(r̂(yw) − r̂(yl))
    """
    h = (policy.chosen - ref.chosen) - (policy.rejected - ref.rejected)
    rewards = implicit_reward(policy.chosen, ref.chosen, beta), implicit_reward(policy.rejected, ref.rejected, beta)
    return -F.logsigmoid(beta * h), *rewards


def ipo_loss(policy: Logps, ref: Logps, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    """IPO (Azar et al., 2023, arXiv 2310.12036), on sequence log-probs:

    L = ( h − 1/(2β) )²,  h = (log πθ(yw) − log πref(yw)) − (log πθ(yl) − log πref(yl))

    β plays the role of the paper's τ: the margin h is regressed to 1/(2τ) instead of pushed to infinity. The
    log-probs are sums over reply tokens, as in the paper's definition and like every loss here; TRL's
    ``loss_type="ipo"`` divides each by the reply's length first, which rescales h, so the same τ is not the same
    regularisation in the two tools.
    """
    h = (policy.chosen - ref.chosen) - (policy.rejected - ref.rejected)
    rewards = implicit_reward(policy.chosen, ref.chosen, beta), implicit_reward(policy.rejected, ref.rejected, beta)
    return (h - 1 / (2 * beta)) ** 2, *rewards


def selm_loss(policy: Logps, ref: Logps, beta: float, alpha: float) -> tuple[Tensor, Tensor, Tensor]:
    """SELM (Zhang et al., 2024, arXiv 2405.19332): DPO plus an optimism term that explores away from y0:

    L = −log σ(β·[(log πθ(yw) − log πref(yw)) − (log πθ(yl) − log πref(yl))]) + α·β·(log πθ(y0) − log πref(y0))

    where y0 is the reference policy's greedy reply to the same prompt.
    """
    if policy.greedy is None or ref.greedy is None:
        raise ValueError("selm_loss needs the greedy reply y0's log-probs (Logps.greedy) of the policy and reference")
    loss, rw, rl = dpo_loss(policy, ref, beta)
    return loss + alpha * beta * (policy.greedy - ref.greedy), rw, rl


#: ``train.loss`` → the loss, called as ``LOSSES[name](policy, ref, **train.loss_hyperparameters())``; what each
#: reads (y0, its hyperparameters) is ``selm.config.LOSS_SPECS``, whose keys these are
LOSSES: dict[str, Callable[..., tuple[Tensor, Tensor, Tensor]]] = {"dpo": dpo_loss, "ipo": ipo_loss, "selm": selm_loss}
