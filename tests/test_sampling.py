"""The HF sampler on a real tiny policy: left padding, token log-probs, n samples, greedy y0."""

import torch

from selm.models.chat import encode_prompt
from selm.models.logprobs import batched_sequence_logprobs
from selm.models.sampling import HFSampler
from selm.worlds import tiny


def test_greedy_is_the_same_alone_or_in_a_padded_batch(tiny_policy):
    model, tok = tiny_policy
    prompts = tiny.prompts("heldout", 24, seed=3)
    assert len({len(encode_prompt(tok, p.text)) for p in prompts}) > 1  # the batch really needs padding
    batched = HFSampler(model, tok, batch_size=64).sample(prompts, greedy=True, max_new_tokens=16)
    alone = [HFSampler(model, tok, batch_size=1).sample([p], greedy=True, max_new_tokens=16)[0] for p in prompts[:6]]
    assert [c.token_ids for c in batched[:6]] == [c.token_ids for c in alone]
    assert all(c.kind == "greedy" and c.prompt_id == p.id for c, p in zip(batched, prompts))


def test_token_logprobs_equal_a_teacher_forced_forward_pass(tiny_policy):
    """At T=1 with no top-k/top-p, generate's log-probs are the model's: Σ must equal log π(y|x) recomputed."""
    model, tok = tiny_policy
    prompts = tiny.prompts("train", 16, seed=4)
    torch.manual_seed(0)
    comps = HFSampler(model, tok, batch_size=64).sample(prompts, n=3, temperature=1.0, max_new_tokens=20)
    assert len(comps) == 48
    assert [c.prompt_id for c in comps] == [p.id for p in prompts for _ in range(3)]
    by_id = {p.id: p for p in prompts}
    recomputed = batched_sequence_logprobs(
        model,
        [encode_prompt(tok, by_id[c.prompt_id].text) for c in comps],
        [c.token_ids for c in comps],
        tok.pad_token_id,
    )
    torch.testing.assert_close(torch.tensor([c.logprob for c in comps]), recomputed, atol=1e-3, rtol=1e-4)


def test_token_logprobs_are_those_of_the_tempered_distribution_and_of_greedy(tiny_policy):
    """Each recorded token log-prob is log softmax(z_t / T)[y_t] of a teacher-forced pass — at T = 0.7 too (the
    recorder reads the scores after the temperature, one step at a time) — and greedy replies record
    log softmax(z_t)."""
    model, tok = tiny_policy
    prompts = tiny.prompts("train", 6, seed=7)
    sampler = HFSampler(model, tok, batch_size=64)
    for temperature, comps in (
        (0.7, sampler.sample(prompts, n=2, temperature=0.7, max_new_tokens=14, seed=1)),
        (1.0, sampler.sample(prompts, greedy=True, max_new_tokens=14)),
    ):
        by_id = {p.id: p for p in prompts}
        for c in comps:
            x = encode_prompt(tok, by_id[c.prompt_id].text)
            with torch.no_grad():
                z = model(torch.tensor([x + c.token_ids])).logits[0, len(x) - 1 : -1].float() / temperature
            expected = torch.log_softmax(z, -1).gather(-1, torch.tensor(c.token_ids)[:, None]).squeeze(-1)
            torch.testing.assert_close(torch.tensor(c.token_logprobs), expected, atol=1e-4, rtol=1e-4)


def test_replies_end_with_the_end_of_turn_token_or_hit_the_limit(tiny_policy):
    model, tok = tiny_policy
    comps = HFSampler(model, tok).sample(tiny.prompts("train", 32, seed=5), n=2, max_new_tokens=12)
    for c in comps:
        assert c.token_ids[-1] == tok.eos_token_id or len(c.token_ids) == 12
        assert tok.eos_token_id not in c.token_ids[:-1]
        assert len(c.token_logprobs) == len(c.token_ids)
        assert "<|" not in c.text


def test_sampling_dtype_loads_the_weights_in_that_precision_and_reports_that_models_logprobs(tmp_path):
    """``sampling.dtype = "bfloat16"``: the sampler's policy is the bf16 model, and the log-probs it records are
    that model's (teacher-forced in bf16), not the fp32 model's."""
    from selm.config import load_recipe
    from selm.models.loading import load_policy
    from selm.pipeline.components import Components
    from selm.worlds.tiny.policy import tiny_policy_path

    path = tiny_policy_path()
    recipe = load_recipe(None, ["sampling.dtype=bfloat16"])
    draw = Components(recipe).sampler(path, 64, "sft")
    assert draw.model.dtype == torch.bfloat16
    assert (
        Components(load_recipe(None, [])).sampler(path, 64, "sft").model.dtype == torch.float32
    )  # the tiny recipe's fp32
    prompts = tiny.prompts("train", 8, seed=6)
    comps = draw.sample(prompts, n=2, max_new_tokens=12, seed=0)
    model, tok = load_policy(path, dtype=torch.bfloat16)
    ids = [encode_prompt(tok, p.text) for p in prompts for _ in range(2)]
    recomputed = batched_sequence_logprobs(model, ids, [c.token_ids for c in comps], tok.pad_token_id)
    torch.testing.assert_close(torch.tensor([c.logprob for c in comps]), recomputed, atol=0.15, rtol=0.02)
