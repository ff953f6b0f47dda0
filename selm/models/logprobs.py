"""Sequence log-probabilities: log π(y|x) = Σ_t log π(y_t | x, y_<t), summed over response tokens only."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pack(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int):
    """Right-pad prompt+response sequences to the longest in the batch.

    Returns ``input_ids``, ``attention_mask`` and ``response_mask`` (1 on response tokens), all [B, T].
    """
    seqs = [list(p) + list(r) for p, r in zip(prompts, responses)]
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), T), dtype=torch.long)
    resp = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, (p, s) in enumerate(zip(prompts, seqs)):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
        resp[i, len(p) : len(s)] = 1
    return ids, attn, resp


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    """log π(x_t | x_<t) = z_t[x_t] − logsumexp(z_t) for t = 1..T-1, from logits z [B, T, V]; returns [B, T-1].

    Only the needed token's log-prob is gathered, ``chunk`` positions at a time in fp32, so neither the [B, T, V]
    log-softmax nor (for bf16 logits) an fp32 copy of all logits is ever materialised."""
    logits, targets = logits[:, :-1], input_ids[:, 1:]
    out = []
    for s in range(0, logits.shape[1], chunk):
        z = logits[:, s : s + chunk].float()
        out.append(z.gather(-1, targets[:, s : s + chunk, None]).squeeze(-1) - torch.logsumexp(z, dim=-1))
    return torch.cat(out, dim=1)


def sequence_logprobs(model, input_ids, attention_mask, response_mask) -> torch.Tensor:
    """Σ over response tokens of log π(y_t | ·) for each row: [B].

    The LM head runs only from the position before the batch's earliest response token: the prompt positions'
    logits are never needed, and over a 49k-token vocabulary they cost a sizeable share of the forward pass."""
    start = max(1, int(response_mask.argmax(-1).min()))  # first response position of any row (a prompt is ≥ 1 token)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=input_ids.shape[1] - start + 1)
    return (token_logprobs(logits.logits, input_ids[:, start - 1 :]) * response_mask[:, start:]).sum(-1)


@torch.no_grad()
def batched_sequence_logprobs(model, prompts, responses, pad_id: int, batch_size: int = 64) -> torch.Tensor:
    """Sequence log-probs of many (prompt, response) pairs without gradients.

    Sequences are processed in order of length so each batch pads only to its own longest member.
    """
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(responses[i]))
    out = torch.empty(len(prompts))
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = pack([prompts[i] for i in idx], [responses[i] for i in idx], pad_id)
        out[idx] = sequence_logprobs(model, *batch).cpu()
    return out
