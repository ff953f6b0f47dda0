"""Preference training (DPO / SELM) on accelerate.

The reference of round k is the policy at the start of round k, so its log-probs are computed **once**, with the
same weights, before the first update: no second model in memory and no reference forward pass per step.
Each step packs chosen, rejected (and for SELM the greedy y0) replies into one forward pass, behind one copy of
their shared prompt (``selm.models.logprobs.pack_shared``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from selm.algorithms.losses import LOSSES, Logps
from selm.config import Train
from selm.errors import Permanent
from selm.models.checkpoint import atomic_save_pretrained
from selm.models.logprobs import batched_shared_logprobs, pack_shared, shared_prompt_logprobs
from selm.models.precision import compute_device, resolve
from selm.progress import progress
from selm.records import PreferencePair


class NonFiniteLossError(FloatingPointError, Permanent):
    """Training produced a NaN or infinite loss; the run stops instead of writing a broken checkpoint."""


@dataclass
class ReferenceLogps:
    chosen: torch.Tensor
    rejected: torch.Tensor
    greedy: torch.Tensor | None = None  # only for the losses that read y0


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
    assistant header) and each reply cut so that prompt + reply ≤ ``max_length``."""
    prompt = pair.prompt_ids[-max_prompt_length:]
    room = max_length - len(prompt)
    return replace(
        pair,
        prompt_ids=prompt,
        chosen_ids=pair.chosen_ids[:room],
        rejected_ids=pair.rejected_ids[:room],
        greedy_ids=pair.greedy_ids[:room],
    )


KINDS = ("chosen", "rejected", "greedy")


def packed_pairs(pairs: Sequence[PreferencePair], kinds: Sequence[str], pad_id: int):
    """A ``pack_shared`` batch: each pair's prompt once, its ``kinds`` replies behind it."""
    return pack_shared([p.prompt_ids for p in pairs], [[getattr(p, f"{k}_ids") for p in pairs] for k in kinds], pad_id)


def reference_logps(
    model,
    pairs: Sequence[PreferencePair],
    pad_id: int,
    kinds: Sequence[str] = KINDS,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    chunked_head: bool = False,
) -> ReferenceLogps:
    """log πref of the ``kinds`` replies (chosen, rejected, and greedy for SELM), computed once per round (no
    gradients) on ``device``, each pair's prompt read once (``batched_shared_logprobs``). Runs in whatever precision
    the caller's autocast sets."""
    replies = [[getattr(p, f"{k}_ids") for p in pairs] for k in kinds]
    logps = batched_shared_logprobs(model, [p.prompt_ids for p in pairs], replies, pad_id, batch_size, device,
                                    fused_head=chunked_head)  # fmt: skip
    return ReferenceLogps(*logps)


def training_precision(cfg: Train, device: torch.device | str) -> str:
    """The torch dtype name training computes in on ``device``: ``train.precision`` ("auto": bf16 where the device
    computes it natively, ``selm.models.precision``)."""
    return resolve(cfg.precision, torch.device(device).type)


def training_autocast(device: torch.device, cfg: Train):
    """bf16 autocast when training runs in bf16 (``training_precision``) without DeepSpeed (DeepSpeed's bf16 casts
    the weights itself); a no-op context otherwise. The reference pass and the training steps both run in it, so at
    step 0 the policy's log-probs and the reference's come from the same arithmetic."""
    bf16 = training_precision(cfg, device) == "bfloat16"
    return torch.autocast(device.type, torch.bfloat16, enabled=bf16 and not cfg.deepspeed)


@dataclass
class TrainingRun:
    """Everything the loop needs, prepared by ``prepare``."""

    accelerator: Any  # accelerate.Accelerator (imported where it is built: it is slow to import)
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # transformers' cosine schedule with warm-up
    loader: torch.utils.data.DataLoader[int]
    pairs: list[PreferencePair]
    ref: ReferenceLogps
    kinds: tuple[str, ...]  # the replies the loss reads: chosen, rejected (and greedy)
    pad_id: int
    total_steps: int
    chunked_head: bool  # the LM head in chunks fused with the gather (``Train.head_in_chunks`` on this device)


def train_preferences(
    model,
    tokenizer,
    pairs: Sequence[PreferencePair],
    cfg: Train,
    round: int,
    seed: int = 0,
    save_to: str | Path | None = None,
) -> TrainHistory:
    """Train ``model`` in place on ``pairs`` with the loss ``cfg.loss`` names and return the per-step history.

    AdamW, cosine schedule with linear warm-up over ``warmup_ratio`` of the optimizer steps, gradient
    accumulation and clipping through accelerate. Raises ``NonFiniteLossError`` on a NaN/inf loss. When
    ``save_to`` is given the trained policy is written there atomically.
    """
    if not pairs:
        raise ValueError(f"round {round}: no preference pairs to train on")
    run = prepare(model, tokenizer, pairs, cfg, round, seed)
    history = train_loop(run, cfg, round)
    finalise(run, tokenizer, cfg, save_to)
    return history


def prepare(model, tokenizer, pairs: Sequence[PreferencePair], cfg: Train, round: int, seed: int) -> TrainingRun:
    """Truncated pairs, their reference log-probs (before any update), and the model, optimizer, shuffled loader
    and schedule wrapped by accelerate (DDP or DeepSpeed when launched so)."""
    from accelerate import Accelerator
    from transformers import get_cosine_schedule_with_warmup

    pad_id = tokenizer.pad_token_id
    kinds = KINDS if cfg.loss_spec.reads_greedy else KINDS[:2]
    pairs = [truncate(p, cfg.max_length, cfg.max_prompt_length) for p in pairs]

    if cfg.checkpointing(compute_device()):
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if cfg.lora.enabled:  # at step 0 the adapters are zero: the reference below is the base model's
        model = with_lora(model, cfg)
    plugin = None
    if cfg.deepspeed:
        from accelerate.utils import DeepSpeedPlugin

        plugin = DeepSpeedPlugin(
            hf_ds_config=str(deepspeed_config(cfg.deepspeed)),
            gradient_accumulation_steps=cfg.grad_accum,
            gradient_clipping=cfg.max_grad_norm,
        )
    # bf16 without DeepSpeed is our own autocast (training_autocast): accelerate's mixed precision is one global
    # state per process, which a sweep training at both precisions in one process could not change
    mixed = "bf16" if cfg.deepspeed and training_precision(cfg, compute_device()) == "bfloat16" else "no"
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.grad_accum, mixed_precision=mixed, deepspeed_plugin=plugin
    )
    g = torch.Generator().manual_seed(seed * 1000 + round)
    indices: Any = range(len(pairs))  # the loader hands out pair indices, shuffled (a range is a map-style dataset)
    loader: torch.utils.data.DataLoader[int] = torch.utils.data.DataLoader(
        indices, batch_size=cfg.batch_size, shuffle=True, generator=g
    )
    trainable = [p for p in model.parameters() if p.requires_grad]  # all of them, or the LoRA adapters
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr_for(round), weight_decay=cfg.weight_decay)
    total = math.ceil(len(loader) / cfg.grad_accum) * cfg.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    # after prepare: on the training device (a GPU, not the CPU the policy was loaded on), through the DDP / DeepSpeed
    # wrapper (ZeRO-3 gathers its shards), every process over all pairs (the loader's shards index into them)
    chunked = cfg.head_in_chunks(accelerator.device.type)
    with training_autocast(accelerator.device, cfg):
        ref = reference_logps(model, pairs, pad_id, kinds, device=accelerator.device, chunked_head=chunked)
    return TrainingRun(accelerator, model, optimizer, scheduler, loader, pairs, ref, kinds, pad_id, total, chunked)


def train_loop(run: TrainingRun, cfg: Train, round: int) -> TrainHistory:
    """``cfg.epochs`` passes over the pairs; each batch packs its chosen, rejected (and greedy) replies into one
    forward pass. Logs loss, implicit reward margin and accuracy per optimizer step."""
    acc, model, loss_fn, hyper = run.accelerator, run.model, LOSSES[cfg.loss], cfg.loss_hyperparameters()
    history = TrainHistory()
    model.train()
    bar = progress(total=run.total_steps, desc=f"train round {round} ({cfg.loss})", unit="step")
    for epoch in range(cfg.epochs):
        for idx in run.loader:
            idx = idx.tolist()
            with acc.accumulate(model):
                batch = [t.to(acc.device) for t in packed_pairs([run.pairs[i] for i in idx], run.kinds, run.pad_id)]
                with training_autocast(acc.device, cfg):
                    policy = Logps(*shared_prompt_logprobs(model, *batch, fused_head=run.chunked_head))
                ref = Logps(*(getattr(run.ref, k)[idx].to(acc.device) for k in run.kinds))
                losses, rw, rl = loss_fn(policy, ref, **hyper)
                loss = losses.mean()
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"round {round}, epoch {epoch}, step {len(history.steps)}: loss is {loss.item()}; "
                        "lower train.learning_rate or check the pairs"
                    )
                acc.backward(loss)
                if acc.sync_gradients:
                    acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                run.optimizer.step()
                run.scheduler.step()
                run.optimizer.zero_grad()
            if acc.sync_gradients:
                margin = (rw - rl).detach()
                history.steps.append(
                    {
                        "step": len(history.steps),
                        "loss": loss.item(),
                        "reward_margin": margin.mean().item(),
                        "reward_accuracy": (margin > 0).float().mean().item(),
                        "lr": run.scheduler.get_last_lr()[0],
                    }
                )
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}", margin=f"{history.steps[-1]['reward_margin']:.3f}")
    bar.close()
    return history


def finalise(run: TrainingRun, tokenizer, cfg: Train, save_to: str | Path | None) -> None:
    """The trained policy as a plain model (LoRA merged, KV cache back on), written atomically by the main process."""
    acc = run.accelerator
    state_dict = acc.get_state_dict(run.model) if cfg.deepspeed and not cfg.lora.enabled else None  # ZeRO-3
    model = acc.unwrap_model(run.model)
    if cfg.lora.enabled:  # the policy is saved, sampled and registered as a plain model
        model = model.merge_and_unload()
    if cfg.checkpointing(compute_device()):  # the saved policy samples with its KV cache again
        model.gradient_checkpointing_disable()
        model.config.use_cache = True
    model.eval()
    if save_to is not None and acc.is_main_process:
        atomic_save_pretrained(save_to, model, tokenizer, state_dict=state_dict)
    acc.wait_for_everyone()


def with_lora(model, cfg: Train):
    """The model with peft LoRA adapters on ``cfg.lora.target_modules``; only the adapters require gradients.
    LoRA's B matrices start at zero, so the wrapped model computes exactly what the base model computes."""
    from peft import LoraConfig, get_peft_model

    c = cfg.lora
    config = LoraConfig(r=c.r, lora_alpha=c.alpha, lora_dropout=c.dropout, target_modules=list(c.target_modules))  # type: ignore[arg-type]  # peft annotates int; it only divides it by r
    return get_peft_model(model, config)


def deepspeed_config(name: str) -> Path:
    """The shipped ``selm/models/deepspeed/<name>.json`` (package data) for "zero2" / "zero3", else ``name`` as a
    path."""
    shipped = Path(str(resources.files("selm.models") / "deepspeed" / f"{name}.json"))
    path = shipped if name in ("zero2", "zero3") else Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"train.deepspeed = {name!r}: {path} not found")
    return path
