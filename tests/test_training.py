"""The trainer on a real tiny policy and real sampled pairs."""

import math
import os

import pytest
import torch

from selm.config import load_recipe
from selm.models.loading import load_policy
from selm.models.logprobs import batched_sequence_logprobs, shared_prompt_logprobs
from selm.models.training import NonFiniteLossError, reference_logps, train_preferences


@pytest.mark.parametrize("loss", ["selm", "dpo", "ipo"])
def test_training_raises_the_implicit_reward_margin(tiny_policy_dir, round_pairs, loss, tmp_path):
    model, tok = load_policy(tiny_policy_dir)
    ref = reference_logps(model, round_pairs, tok.pad_token_id)
    cfg = load_recipe(None, [f"train.loss={loss}", "train.epochs=3"]).train
    history = train_preferences(model, tok, round_pairs, cfg, round=1, save_to=tmp_path / "policy")
    # first step: policy == reference, so the margin h is 0: DPO/SELM's loss is log 2 (α term 0 too), IPO's 1/(2β)²
    first = (1 / (2 * cfg.beta)) ** 2 if loss == "ipo" else math.log(2)
    assert history.steps[0]["loss"] == pytest.approx(first, abs=1e-5)
    assert history.summary()["reward_margin"] > 0.1 and history.summary()["reward_accuracy"] > 0.7
    assert [s["step"] for s in history.steps] == list(range(len(history.steps)))
    saved, _ = load_policy(tmp_path / "policy")
    after = {
        k: batched_sequence_logprobs(
            saved, [p.prompt_ids for p in round_pairs], [getattr(p, f"{k}_ids") for p in round_pairs], tok.pad_token_id
        )
        for k in ("chosen", "rejected")
    }
    margin = (after["chosen"] - ref.chosen) - (after["rejected"] - ref.rejected)
    assert (margin > 0).float().mean() > 0.7
    assert sorted(os.listdir(tmp_path)) == ["policy"]  # the atomic write left no temporary folder behind


def test_gradient_accumulation_takes_fewer_optimizer_steps(tiny_policy_dir, round_pairs):
    model, tok = load_policy(tiny_policy_dir)
    cfg = load_recipe(None, ["train.epochs=1", "train.batch_size=8", "train.grad_accum=2"]).train
    history = train_preferences(model, tok, round_pairs, cfg, round=1)
    assert len(history.steps) == math.ceil(math.ceil(len(round_pairs) / 8) / 2)


def test_nan_loss_stops_training_loudly(tiny_policy_dir, round_pairs, tmp_path):
    model, tok = load_policy(tiny_policy_dir)
    with torch.no_grad():
        model.lm_head.weight[0, 0] = float("nan")  # tied to the embeddings: every forward pass turns NaN
    cfg = load_recipe().train
    with pytest.raises(NonFiniteLossError, match="round 1, epoch 0, step 0: loss is nan"):
        train_preferences(model, tok, round_pairs, cfg, round=1, save_to=tmp_path / "policy")
    assert not (tmp_path / "policy").exists()


def test_no_pairs_is_an_error(tiny_policy):
    model, tok = tiny_policy
    with pytest.raises(ValueError, match="no preference pairs"):
        train_preferences(model, tok, [], load_recipe().train, round=2)


def test_truncation_keeps_the_prompt_end_and_fits_max_length(round_pairs):
    from selm.models.training import truncate

    p = round_pairs[0]
    p = type(p)(**{**p.__dict__, "prompt_ids": list(range(10)), "chosen_ids": list(range(100, 108))})
    t = truncate(p, max_length=12, max_prompt_length=6)
    assert t.prompt_ids == [4, 5, 6, 7, 8, 9] and t.chosen_ids == list(range(100, 106))
    assert len(t.prompt_ids) + len(t.rejected_ids) <= 12 and len(t.prompt_ids) + len(t.greedy_ids) <= 12
    assert truncate(p, 1024, 512) == p


def test_bf16_and_gradient_checkpointing_train_and_save_a_usable_policy(tiny_policy_dir, round_pairs, tmp_path):
    model, tok = load_policy(tiny_policy_dir)
    cfg = load_recipe(None, ["train.precision=bf16", "train.gradient_checkpointing=true", "train.epochs=2"]).train
    history = train_preferences(model, tok, round_pairs, cfg, round=1, save_to=tmp_path / "policy")
    assert all(math.isfinite(s["loss"]) for s in history.steps) and history.summary()["reward_margin"] > 0
    saved, _ = load_policy(tmp_path / "policy")
    assert saved.config.use_cache and not saved.is_gradient_checkpointing


def test_the_chunked_head_trains_as_the_plain_head(tiny_policy_dir, round_pairs):
    """``train.chunked_head``: the same reference log-probs (to rounding) and a training run whose margin grows."""
    model, tok = load_policy(tiny_policy_dir)
    plain = reference_logps(model, round_pairs, tok.pad_token_id)
    chunked = reference_logps(model, round_pairs, tok.pad_token_id, chunked_head=True)
    for k in ("chosen", "rejected", "greedy"):
        assert torch.allclose(getattr(chunked, k), getattr(plain, k), atol=1e-4), k
    cfg = load_recipe(None, ["train.chunked_head=true", "train.epochs=2"]).train
    history = train_preferences(model, tok, round_pairs, cfg, round=1)
    assert all(math.isfinite(s["loss"]) for s in history.steps) and history.summary()["reward_margin"] > 0


def test_bf16_reference_log_probs_come_from_the_training_precision(tiny_policy_dir, round_pairs):
    """The reference pass runs under the same autocast as the training steps: its log-probs are the bf16 ones, not
    the fp32 ones, so at step 0 (policy = reference) the loss is log 2 up to batch-shape rounding, not up to the
    bf16-vs-fp32 gap."""
    from selm.models.training import prepare, training_autocast

    model, tok = load_policy(tiny_policy_dir)
    cfg = load_recipe(None, ["train.precision=bf16", "train.loss=selm"]).train
    fp32 = reference_logps(model, round_pairs, tok.pad_token_id)
    with training_autocast(torch.device("cpu"), cfg):
        bf16 = reference_logps(model, round_pairs, tok.pad_token_id)
    run = prepare(model, tok, round_pairs, cfg, round=1, seed=0)
    for k in ("chosen", "rejected", "greedy"):
        assert torch.equal(getattr(run.ref, k), getattr(bf16, k)), k
        assert not torch.allclose(getattr(run.ref, k), getattr(fp32, k), atol=1e-4), k  # the precisions do differ
    model, tok = load_policy(tiny_policy_dir)
    history = train_preferences(model, tok, round_pairs, cfg, round=1)
    assert history.steps[0]["loss"] == pytest.approx(math.log(2), abs=2e-3)


def test_lora_trains_adapters_only_and_saves_a_merged_policy(tiny_policy_dir, round_pairs, tmp_path):
    base, tok = load_policy(tiny_policy_dir)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model, _ = load_policy(tiny_policy_dir)
    overrides = ["train.lora.enabled=true", "train.lora.r=8", "train.epochs=3", "train.learning_rate=3e-3"]
    history = train_preferences(model, tok, round_pairs, load_recipe(None, overrides).train, 1, save_to=tmp_path / "p")
    assert history.steps[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # adapters start at zero
    assert history.summary()["reward_margin"] > 0.05
    saved, _ = load_policy(tmp_path / "p")
    assert type(saved).__name__ == "LlamaForCausalLM" and set(saved.state_dict()) == set(before)  # merged, plain
    changed = {k for k, v in saved.state_dict().items() if not torch.allclose(v, before[k])}
    assert changed and all(k.split(".")[-2].endswith("proj") for k in changed)  # only adapted projections moved
    assert "model.embed_tokens.weight" not in changed


def test_gradient_checkpointing_through_the_shared_prompt_packing_equals_the_plain_pass(tiny_policy_dir, round_pairs):
    """Recomputing activations in the backward pass (``train.gradient_checkpointing``, as ``prepare`` enables it)
    changes memory, not the math: through the shared-prompt packing and its block mask, the SELM loss and every
    parameter's gradient equal the plain pass's (fp32)."""
    from selm.algorithms.losses import LOSSES, Logps
    from selm.models.training import KINDS, packed_pairs

    def loss_and_grads(checkpointing: bool):
        torch.manual_seed(0)
        model, tok = load_policy(tiny_policy_dir)
        pairs = round_pairs[:8]
        ref = reference_logps(model, pairs, tok.pad_token_id)
        if checkpointing:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
        model.train()
        policy = Logps(*shared_prompt_logprobs(model, *packed_pairs(pairs, KINDS, tok.pad_token_id)))
        losses, _, _ = LOSSES["selm"](policy, Logps(ref.chosen, ref.rejected, ref.greedy), beta=0.1, alpha=1e-3)
        losses.mean().backward()
        assert model.is_gradient_checkpointing == checkpointing
        return losses.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    plain_loss, plain = loss_and_grads(False)
    loss, grads = loss_and_grads(True)
    assert torch.allclose(loss, plain_loss, atol=1e-6)
    assert grads.keys() == plain.keys() and all(g.abs().sum() > 0 for g in plain.values() if g.numel() > 64)
    for name, g in grads.items():
        assert torch.allclose(g, plain[name], atol=1e-6, rtol=1e-4), name
