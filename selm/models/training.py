"""Preference training (DPO / SELM) on accelerate.

The reference of round k is the policy at the start of round k, so its log-probs are computed **once**, with the
same weights, before the first update: no second model in memory and no reference forward pass per step.
Each step packs chosen, rejected (and for SELM the greedy y0) replies into one forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from selm.algorithms.losses import dpo_loss, implicit_reward, selm_loss
from selm.config import Train
from selm.models.checkpoint import atomic_save_pretrained
from selm.models.logprobs import batched_sequence_logprobs, pack, sequence_logprobs
from selm.progress import progress
from selm.records import PreferencePair


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the run stops instead of writing a broken checkpoint."""


@dataclass
class ReferenceLogps:
    chosen: torch.Tensor
    rejected: torch.Tensor
    greedy: torch.Tensor


@dataclass
class TrainHistory:
    """Per optimizer step: loss, reward margin (mean r̂w − r̂l), accuracy (share with r̂w > r̂l), learning rate."""

    steps: list[dict] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        if not self.steps:
            return {}
        last = self.steps[-max(1, len(self.steps) // 5) :]  # the final fifth: what training ended at
        return {k: sum(s[k] for s in last) / len(last) for k in ("loss", "reward_margin", "reward_accuracy")}


def truncate(pair: PreferencePair, max_length: int, max_prompt_length: int) -> PreferencePair:
    """The pair with its prompt cut to its last ``max_prompt_length`` tokens (the end holds the question and the
    assistant header) and each reply cut so that prompt + reply ≤ ``max_length`` (as TRL's DPO trainer does)."""
    prompt = pair.prompt_ids[-max_prompt_length:]
    room = max_length - len(prompt)
    return replace(
        pair,
        prompt_ids=prompt,
        chosen_ids=pair.chosen_ids[:room],
        rejected_ids=pair.rejected_ids[:room],
        greedy_ids=pair.greedy_ids[:room],
    )


def reference_logps(model, pairs: Sequence[PreferencePair], pad_id: int, batch_size: int = 64) -> ReferenceLogps:
    """log πref of chosen, rejected and greedy replies, computed once per round (no gradients)."""
    prompts = [p.prompt_ids for p in pairs]
    return ReferenceLogps(
        *(
            batched_sequence_logprobs(model, prompts, [getattr(p, f"{kind}_ids") for p in pairs], pad_id, batch_size)
            for kind in ("chosen", "rejected", "greedy")
        )
    )


def preference_loss(cfg: Train, pol: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-pair loss for ``cfg.loss`` from policy and reference log-probs keyed chosen/rejected/greedy."""
    if cfg.loss == "dpo":
        return dpo_loss(pol["chosen"], pol["rejected"], ref["chosen"], ref["rejected"], cfg.beta)
    return selm_loss(
        pol["chosen"],
        pol["rejected"],
        ref["chosen"],
        ref["rejected"],
        pol["greedy"],
        ref["greedy"],
        cfg.beta,
        cfg.alpha,
    )


def train_preferences(
    model,
    tokenizer,
    pairs: Sequence[PreferencePair],
    cfg: Train,
    round: int,
    seed: int = 0,
    save_to: str | Path | None = None,
) -> TrainHistory:
    """Train ``model`` in place on ``pairs`` with ``cfg.loss`` and return the per-step history.

    AdamW, cosine schedule with linear warm-up over ``warmup_ratio`` of the optimizer steps, gradient
    accumulation and clipping through accelerate. Raises ``NonFiniteLossError`` on a NaN/inf loss. When
    ``save_to`` is given the trained policy is written there atomically.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from transformers import get_cosine_schedule_with_warmup

    if not pairs:
        raise ValueError(f"round {round}: no preference pairs to train on")
    pad_id = tokenizer.pad_token_id
    kinds = ("chosen", "rejected") if cfg.loss == "dpo" else ("chosen", "rejected", "greedy")
    pairs = [truncate(p, cfg.max_length, cfg.max_prompt_length) for p in pairs]
    ref = reference_logps(model, pairs, pad_id)

    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if cfg.lora.enabled:  # after the reference log-probs: at step 0 the adapters are zero, so nothing differs
        model = with_lora(model, cfg)
    mixed = "bf16" if cfg.precision == "bf16" else "no"
    # accelerate keeps one global state per process; a sweep may train with another precision in the same process
    AcceleratorState._reset_state(reset_partial_state=True)
    plugin = None
    if cfg.deepspeed:
        from accelerate.utils import DeepSpeedPlugin

        plugin = DeepSpeedPlugin(
            hf_ds_config=str(deepspeed_config(cfg.deepspeed)),
            gradient_accumulation_steps=cfg.grad_accum,
            gradient_clipping=cfg.max_grad_norm,
        )
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.grad_accum, mixed_precision=mixed, deepspeed_plugin=plugin
    )
    g = torch.Generator().manual_seed(seed * 1000 + round)
    loader = torch.utils.data.DataLoader(range(len(pairs)), batch_size=cfg.batch_size, shuffle=True, generator=g)
    trainable = [p for p in model.parameters() if p.requires_grad]  # all of them, or the LoRA adapters
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr_for(round), weight_decay=cfg.weight_decay)
    total = math.ceil(len(loader) / cfg.grad_accum) * cfg.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    history = TrainHistory()
    model.train()
    bar = progress(total=total, desc=f"train round {round} ({cfg.loss})", unit="step")
    for epoch in range(cfg.epochs):
        for idx in loader:
            idx = idx.tolist()
            with accelerator.accumulate(model):
                prompts = [pairs[i].prompt_ids for i in idx] * len(kinds)
                replies = [getattr(pairs[i], f"{k}_ids") for k in kinds for i in idx]
                batch = [t.to(accelerator.device) for t in pack(prompts, replies, pad_id)]
                logps = sequence_logprobs(model, *batch).split(len(idx))
                pol = dict(zip(kinds, logps))
                ref_b = {k: getattr(ref, k)[idx].to(accelerator.device) for k in kinds}
                loss = preference_loss(cfg, pol, ref_b).mean()
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"round {round}, epoch {epoch}, step {len(history.steps)}: loss is {loss.item()}; "
                        "lower train.learning_rate or check the pairs"
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                with torch.no_grad():
                    rw = implicit_reward(pol["chosen"], ref_b["chosen"], cfg.beta)
                    rl = implicit_reward(pol["rejected"], ref_b["rejected"], cfg.beta)
                history.steps.append(
                    {
                        "step": len(history.steps),
                        "loss": loss.item(),
                        "reward_margin": (rw - rl).mean().item(),
                        "reward_accuracy": (rw > rl).float().mean().item(),
                        "lr": scheduler.get_last_lr()[0],
                    }
                )
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}", margin=f"{history.steps[-1]['reward_margin']:.3f}")
    bar.close()
    state_dict = accelerator.get_state_dict(model) if cfg.deepspeed and not cfg.lora.enabled else None  # ZeRO-3
    model = accelerator.unwrap_model(model)
    if cfg.lora.enabled:  # the policy is saved, sampled and registered as a plain model
        model = model.merge_and_unload()
    if cfg.gradient_checkpointing:  # the saved policy samples with its KV cache again
        model.gradient_checkpointing_disable()
        model.config.use_cache = True
    model.eval()
    if save_to is not None and accelerator.is_main_process:
        atomic_save_pretrained(save_to, model, tokenizer, state_dict=state_dict)
    accelerator.wait_for_everyone()
    return history


def with_lora(model, cfg: Train):
    """The model with peft LoRA adapters on ``cfg.lora.target_modules``; only the adapters require gradients.
    LoRA's B matrices start at zero, so the wrapped model computes exactly what the base model computes."""
    from peft import LoraConfig, get_peft_model

    c = cfg.lora
    config = LoraConfig(r=c.r, lora_alpha=c.alpha, lora_dropout=c.dropout, target_modules=list(c.target_modules))
    return get_peft_model(model, config)


def deepspeed_config(name: str) -> Path:
    """selm/models/deepspeed/<name>.json for "zero2" / "zero3", else ``name`` as a path."""
    path = Path(__file__).resolve().parents[1] / "infra" / "deepspeed" / f"{name}.json"
    path = path if name in ("zero2", "zero3") else Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"train.deepspeed = {name!r}: {path} not found")
    return path
