"""The chunked gather of token log-probs equals the plain log-softmax computation, values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from selm.models.logprobs import token_logprobs


def plain(logits, ids):
    return F.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)


def test_chunked_gather_equals_the_full_log_softmax():
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 301, 97, generator=g) * 4).requires_grad_()
    ids = torch.randint(0, 97, (3, 301), generator=g)
    ours, theirs = token_logprobs(logits, ids, chunk=64), plain(logits, ids)  # 300 positions: 4 full chunks + 44
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    (grad_ours,) = torch.autograd.grad(ours.sum(), logits)
    (grad_theirs,) = torch.autograd.grad(theirs.sum(), logits)
    torch.testing.assert_close(grad_ours, grad_theirs, atol=1e-5, rtol=0)


def test_bf16_logits_are_read_in_fp32():
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(2, 40, 33, generator=g) * 3).to(torch.bfloat16)
    ids = torch.randint(0, 33, (2, 40), generator=g)
    out = token_logprobs(logits, ids, chunk=16)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, plain(logits, ids), atol=1e-5, rtol=0)


def test_sequence_logprobs_reads_logits_only_where_replies_are_predicted():
    """Keeping only the logits from the earliest reply token on gives the full forward pass's sums and gradients."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from selm.models.logprobs import pack, sequence_logprobs

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=0))  # fmt: skip
    prompts, replies = [[5, 6, 7, 8, 9], [11, 12], [3, 4, 5, 6]], [[20, 21, 22], [30, 31, 32, 33, 34], [40]]
    ids, attn, resp = pack(prompts, replies, pad_id=0)

    def full():
        logits = model(input_ids=ids, attention_mask=attn).logits
        return (plain(logits, ids) * resp[:, 1:]).sum(-1)

    ours, theirs = sequence_logprobs(model, ids, attn, resp), full()
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    grads = [torch.autograd.grad(f.sum(), model.parameters()) for f in (ours, theirs)]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_shared_prompt_scores_each_reply_as_if_it_followed_the_prompt_alone(attention):
    """pack_shared + shared_prompt_logprobs (prompt once, K replies behind it) equal K separate forward passes:
    values and gradients, with prompts and replies of different lengths, one-token and empty replies."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from selm.models.logprobs import pack, pack_shared, sequence_logprobs, shared_prompt_logprobs

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)  # fmt: skip
    config._attn_implementation = attention
    model = LlamaForCausalLM(config)
    prompts = [[5, 6, 7, 8, 9], [11, 12], [3, 4, 5, 6, 7, 8, 9, 10]]
    replies = [[[20, 21, 22], [30, 31, 32, 33, 34], [40]], [[23], [35, 36], [41, 42, 43, 44]], [[24, 25], [], [45]]]
    ours = shared_prompt_logprobs(model, *pack_shared(prompts, replies, pad_id=0))
    separate = torch.stack([sequence_logprobs(model, *pack(prompts, r, pad_id=0)) for r in replies])
    assert ours.shape == (3, 3) and ours[2, 1] == 0  # the empty reply: nothing to score
    torch.testing.assert_close(ours, separate, atol=1e-5, rtol=0)
    grads = [torch.autograd.grad(f.sum(), model.parameters()) for f in (ours, separate)]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_batched_shared_logprobs_equal_each_reply_scored_alone_in_batches():
    """The diagnostics' and the reference's scoring pass: prompts read once with their K replies, in batches of
    similar length, give every reply's log-prob as ``batched_sequence_logprobs`` scores it alone, in input order."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from selm.models.logprobs import batched_sequence_logprobs, batched_shared_logprobs

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=0))  # fmt: skip
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 12, (3, 7), generator=g).tolist()  # 7 prompts, 2 replies each, every length differs
    prompts = [torch.randint(1, 61, (n,), generator=g).tolist() for n in lengths[0]]
    replies = [[torch.randint(1, 61, (n,), generator=g).tolist() for n in row] for row in lengths[1:]]
    ours = batched_shared_logprobs(model, prompts, replies, pad_id=0, batch_size=3)  # 3 batches, the last of 1
    alone = torch.stack([batched_sequence_logprobs(model, prompts, r, pad_id=0, batch_size=2) for r in replies])
    assert ours.shape == (2, 7)
    torch.testing.assert_close(ours, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_chunked_head_equals_the_models_own_logits_and_never_holds_them_all(dtype):
    """The fused path (decoder, then the head on the predicting positions only, 4 rows of logits at a time under
    activation checkpointing) gives the model-forward path's log-probs and gradients — also under bf16 autocast,
    the trainer's — and the head never sees more than 4 rows at once, forward or backward."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from selm.models.logprobs import pack_shared, shared_prompt_logprobs

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)  # fmt: skip
    model = LlamaForCausalLM(config)
    rows_seen = []
    model.lm_head.register_forward_hook(lambda m, args, out: rows_seen.append(args[0].shape[:-1].numel()))
    prompts = [[5, 6, 7, 8, 9], [11, 12], [3, 4, 5, 6, 7, 8, 9, 10]]
    replies = [[[20, 21, 22], [30, 31, 32, 33, 34], [40]], [[23], [35, 36], [41, 42, 43, 44]]]
    batch = pack_shared(prompts, replies, pad_id=0)
    with torch.autocast("cpu", dtype=dtype, enabled=dtype == torch.bfloat16):
        fused = shared_prompt_logprobs(model, *batch, head_chunk=4, fused_head=True)
        assert rows_seen and max(rows_seen) <= 4  # the forward: 4 rows at a time
        rows_seen.clear()
        grads = torch.autograd.grad(fused.sum(), model.parameters())
        assert rows_seen and max(rows_seen) <= 4  # the backward recomputed each chunk's logits, 4 rows at a time
        plain = shared_prompt_logprobs(model, *batch, fused_head=False)
        plain_grads = torch.autograd.grad(plain.sum(), model.parameters())
    tol = 1e-5 if dtype == torch.float32 else 2e-2  # bf16: the two paths run matmuls of different shapes
    torch.testing.assert_close(fused, plain, atol=tol, rtol=0)
    for a, b in zip(grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def test_the_chunked_head_backward_is_bit_reproducible():
    """The same batch twice gives bit-identical gradients through the fused head. It gathered the predicting hidden
    states by advanced indexing, whose CPU backward (index_put_ with accumulate, a prompt's last position read by
    the first token of every reply) summed in a varying order: 16 of 30 repeats differed (2 threads); the kill
    matrix's exact comparison of a resumed and an uninterrupted run caught it. ``index_select`` adds in index order."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from selm.models.logprobs import pack_shared, shared_prompt_logprobs

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=4000, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)  # fmt: skip
    model = LlamaForCausalLM(config)
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(5, 40, (4, 8), generator=g).tolist()  # row 0: prompts, rows 1-3: three replies each
    prompts = [torch.randint(4000, (n,), generator=g).tolist() for n in lengths[0]]
    replies = [[torch.randint(4000, (n,), generator=g).tolist() for n in row] for row in lengths[1:]]
    batch = pack_shared(prompts, replies, pad_id=0)

    def gradients():
        logps = shared_prompt_logprobs(model, *batch, head_chunk=64, fused_head=True)
        return torch.autograd.grad(logps.sum(), model.parameters())

    first = gradients()
    for _ in range(10):
        assert all(torch.equal(a, b) for a, b in zip(first, gradients(), strict=True))
