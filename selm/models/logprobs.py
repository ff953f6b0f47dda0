"""Sequence log-probabilities: log π(y|x) = Σ_t log π(y_t | x, y_<t), summed over response tokens only."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch

from selm.models.batching import length_batches


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

    Sequences go in batches of similar length (``length_batches``), so each pads only a little.
    """
    out = torch.empty(len(prompts))
    model.eval()
    for idx in length_batches([len(p) + len(r) for p, r in zip(prompts, responses)], batch_size):
        batch = pack([prompts[i] for i in idx], [responses[i] for i in idx], pad_id)
        out[idx] = sequence_logprobs(model, *(t.to(model.device) for t in batch)).cpu()
    return out


def pack_shared(prompts: Sequence[Sequence[int]], replies: Sequence[Sequence[Sequence[int]]], pad_id: int):
    """One row per prompt holding the prompt once, then each of its K replies: ``[x | y_1 | … | y_K | pad]``.

    ``replies[k][i]`` is reply k of prompt i. Every reply attends to its prompt and causally to itself only, and its
    position ids continue from the prompt's end, so it is scored exactly as if it followed the prompt alone — for
    |x| + Σ_k |y_k| tokens instead of K·|x| + Σ_k |y_k| (a preference pair shares its prompt; SELM's y0 too).

    Returns ``input_ids`` and ``position_ids`` [B, T], ``allowed`` [B, 1, T, T] (True: the query may attend to the
    key), and for the reply tokens, [K, B, L]: the position whose logits predict each token, the token, a mask.
    """
    K, B = len(replies), len(prompts)
    rows = [list(p) + [t for k in range(K) for t in replies[k][i]] for i, p in enumerate(prompts)]
    T, L = max(map(len, rows)), max(1, max(len(replies[k][i]) for k in range(K) for i in range(B)))
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    positions = torch.zeros((B, T), dtype=torch.long)
    segment = torch.full((B, T), -1, dtype=torch.long)  # -1 padding, 0 prompt, k + 1 reply k
    pred, targets, mask = (torch.zeros((K, B, L), dtype=torch.long) for _ in range(3))
    for i, p in enumerate(prompts):
        P = len(p)
        ids[i, : len(rows[i])] = torch.tensor(rows[i])
        positions[i, :P], segment[i, :P] = torch.arange(P), 0
        start = P
        for k in range(K):
            y = replies[k][i]
            n = len(y)
            positions[i, start : start + n], segment[i, start : start + n] = torch.arange(P, P + n), k + 1
            # token j of reply k is predicted by the prompt's last position (j = 0), else by the reply's own j − 1
            pred[k, i, :n] = torch.tensor([P - 1] + list(range(start, start + n - 1)))[:n]
            targets[k, i, :n], mask[k, i, :n] = torch.tensor(y, dtype=torch.long), 1
            start += n
    causal = torch.ones((T, T), dtype=torch.bool).tril()
    key, query = segment[:, None, :], segment[:, :, None]
    allowed = causal & (key >= 0) & ((key == 0) | (key == query))
    allowed |= torch.eye(T, dtype=torch.bool)  # padding attends to itself: no all-masked row, no NaN
    return ids, positions, allowed[:, None], pred, targets, mask


def shared_prompt_logprobs(
    model,
    input_ids,
    position_ids,
    allowed,
    pred,
    targets,
    mask,
    *,
    chunk: int = 128,
    head_chunk: int = 1024,
    fused_head: bool = False,
):
    """Σ over reply tokens of log π(y_t | x, y_<t) for each reply of a ``pack_shared`` batch: [K, B].

    With ``fused_head`` (off by default; the trainer uses it with ``train.chunked_head = true``), where the model's
    head is a plain linear layer (``_decoder_and_head``), the decoder runs alone and the head only on the hidden
    states that predict a reply token, ``head_chunk`` of them at a time, each chunk's logits freed as soon as its
    tokens' log-probs are read and recomputed in the backward pass (``chosen_token_logprobs``): the [rows, length,
    vocabulary] logits are never held — with a 49k vocabulary they outweigh a small model's activations. Otherwise
    the model's own forward gives the logits from the earliest predicting position on, and logsumexp is taken
    ``chunk`` positions at a time in fp32."""
    mask_4d = _attention_mask(model, allowed)
    parts = _decoder_and_head(model) if fused_head else None
    if parts is not None:
        decoder, head = parts
        hidden = decoder(input_ids=input_ids, position_ids=position_ids, attention_mask=mask_4d).last_hidden_state
        picked = mask.bool()
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)[None, :, None].expand_as(pred)
        # index_select, not hidden[rows, pred]: a prompt's last position predicts every reply's first token, and the
        # CPU backward of advanced indexing adds such repeated rows in a varying order (not bit-reproducible)
        at = (rows * hidden.shape[1] + pred)[picked]
        logps = chosen_token_logprobs(head, hidden.flatten(0, 1).index_select(0, at), targets[picked], head_chunk)
        return torch.zeros(pred.shape, dtype=logps.dtype, device=logps.device).masked_scatter(picked, logps).sum(-1)
    start = int(pred[mask.bool()].min()) if mask.any() else input_ids.shape[1] - 1
    logits = model(
        input_ids=input_ids,
        position_ids=position_ids,
        attention_mask=mask_4d,
        logits_to_keep=input_ids.shape[1] - start,
    ).logits
    chunks = range(0, logits.shape[1], chunk)
    lse = torch.cat([torch.logsumexp(logits[:, s : s + chunk].float(), -1) for s in chunks], 1)
    at = (pred - start).clamp(min=0)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)[None, :, None].expand_as(at)
    return ((logits[rows, at, targets].float() - lse[rows, at]) * mask).sum(-1)


@torch.no_grad()
def batched_shared_logprobs(
    model,
    prompts: Sequence[Sequence[int]],
    replies: Sequence[Sequence[Sequence[int]]],
    pad_id: int,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    fused_head: bool = False,
) -> torch.Tensor:
    """Σ log π(y|x) of K replies per prompt without gradients: [K, B], ``replies[k][i]`` being reply k of prompt i.
    Each prompt is read once with its replies behind it (``pack_shared``), prompts in batches of similar length
    (``length_batches``) on ``device`` (default: the model's), in whatever precision the caller's autocast sets."""
    lengths = [len(p) + sum(len(r[i]) for r in replies) for i, p in enumerate(prompts)]
    out = torch.empty((len(replies), len(prompts)))
    model.eval()
    for idx in length_batches(lengths, batch_size):
        batch = pack_shared([prompts[i] for i in idx], [[r[i] for i in idx] for r in replies], pad_id)
        batch = tuple(t.to(device or model.device) for t in batch)
        out[:, idx] = shared_prompt_logprobs(model, *batch, fused_head=fused_head).cpu()
    return out


def chosen_token_logprobs(head, hidden: torch.Tensor, targets: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """log softmax(head(h_n))[y_n] for N hidden states [N, H] and their tokens [N], in fp32: ``chunk`` rows of
    logits at a time, each chunk under activation checkpointing, so that neither the forward nor the backward pass
    keeps more than one chunk's [chunk, vocabulary] logits (the backward recomputes them: one more head matmul)."""
    from torch.utils.checkpoint import checkpoint

    def chunk_logprobs(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = head(h).float()
        return z.gather(-1, y[:, None]).squeeze(-1) - torch.logsumexp(z, dim=-1)

    # without gradients there is no backward to recompute for: each chunk's logits are freed as the loop moves on
    run = partial(checkpoint, chunk_logprobs, use_reentrant=False) if torch.is_grad_enabled() else chunk_logprobs
    parts = [run(hidden[s : s + chunk], targets[s : s + chunk]) for s in range(0, len(hidden), chunk)]
    return torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)


#: config attributes of heads that are more than ``lm_head(hidden)`` (Gemma 2's soft-capping, Cohere's logit scale)
_HEAD_EXTRAS = ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")


def _decoder_and_head(model):
    """(decoder, head) of a causal LM whose logits are exactly ``head(decoder(...).last_hidden_state)``, else None.
    Wrappers are looked through: DDP / DeepSpeed (``.module``) and PEFT (whose adapters live inside the decoder)."""
    while hasattr(model, "module"):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    get_decoder = getattr(model, "get_decoder", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if get_decoder is None or not isinstance(head, torch.nn.Linear):
        return None
    if any(getattr(model.config, k, None) not in (None, 1, 1.0) for k in _HEAD_EXTRAS):
        return None
    decoder = get_decoder()
    return None if decoder is None or decoder is model else (decoder, head)


def _attention_mask(model, allowed: torch.Tensor) -> torch.Tensor:
    """The boolean mask as the model's attention takes a custom 4D mask: SDPA reads booleans, eager attention adds
    the mask to its scores (0 where allowed, the dtype's minimum elsewhere)."""
    while hasattr(model, "module"):  # DDP and DeepSpeed wrap the model (DeepSpeed's own .config is a dict)
        model = model.module
    if model.config._attn_implementation == "eager":
        return torch.zeros(allowed.shape, device=allowed.device).masked_fill(~allowed, torch.finfo(torch.float32).min)
    return allowed
