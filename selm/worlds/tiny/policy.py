"""The tiny world's policy: a 0.36 M-parameter Llama with its own BPE tokenizer and chat template.

It is pre-trained and SFT'd on *noisy* demonstrations (some answers wrong, some verbose, some unsafe, some
over-refusing) so that preference rounds have something to fix. The build is deterministic for a given machine
(fixed seeds) and cached on disk: the first call takes about a minute on a laptop CPU, later calls are instant. The
result is a normal ``save_pretrained`` folder loaded through ``AutoModelForCausalLM.from_pretrained``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from selm.cache import cached_build
from selm.models.chat import encode_prompt, encode_response
from selm.models.checkpoint import atomic_save_pretrained
from selm.models.logprobs import pack, token_logprobs
from selm.progress import progress
from selm.worlds.tiny.tasks import noisy_demonstration, sample_tasks

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|pad|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}"
    "{% elif m['role'] == 'assistant' %}<|assistant|>{{ m['content'] }}<|end|>{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@dataclass(frozen=True)
class TinyPolicySpec:
    """Everything that determines the built policy; its hash names the cache folder."""

    vocab_size: int = 320
    hidden_size: int = 96
    layers: int = 3
    heads: int = 4
    intermediate_size: int = 256
    max_positions: int = 128
    demos: int = 24000
    pretrain_steps: int = 500
    sft_steps: int = 500
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    version: int = 1  # bump when the world or the recipe of the build changes

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


# ---------------------------------------------------------------- demonstrations


def demonstrations(spec: TinyPolicySpec) -> list[tuple[str, str]]:
    rng = random.Random(spec.seed)
    return [(t.prompt, noisy_demonstration(t, rng)) for t in sample_tasks(spec.demos, "train", seed=spec.seed)]


# ---------------------------------------------------------------- tokenizer and model


def build_tokenizer(texts: list[str], vocab_size: int, max_length: int = 128):
    """A BPE tokenizer (digits split one by one, spaces kept by Metaspace) with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        eos_token="<|end|>",
        bos_token="<|user|>",
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_max_length=max_length,
    )


def build_model(spec: TinyPolicySpec, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return LlamaForCausalLM(config)


# ---------------------------------------------------------------- training


def train_lm(model, tokenizer, data, steps: int, spec: TinyPolicySpec, response_only: bool, desc: str) -> float:
    """Next-token cross-entropy with AdamW and cosine decay; loss on all tokens or on response tokens only."""
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=steps, pct_start=0.05)
    rng = random.Random(spec.seed + steps)
    model.train()
    loss_val = float("nan")
    for _ in progress(range(steps), desc=desc, unit="step"):
        batch = rng.sample(data, spec.batch_size)
        ids, attn, resp = pack([p for p, _ in batch], [r for _, r in batch], tokenizer.pad_token_id)
        mask = (resp if response_only else attn)[:, 1:].float()
        logp = token_logprobs(model(input_ids=ids, attention_mask=attn).logits, ids)
        loss = -(logp * mask).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_val = loss.item()
    return loss_val


def build_tiny_policy(spec: TinyPolicySpec, out_dir: Path) -> Path:
    """Build tokenizer and model, pre-train on whole conversations, SFT on replies, save to ``out_dir``."""
    torch.manual_seed(spec.seed)
    demos = demonstrations(spec)
    tokenizer = build_tokenizer([f"{p} {r}" for p, r in demos], spec.vocab_size)
    model = build_model(spec, tokenizer)
    data = [(encode_prompt(tokenizer, p), encode_response(tokenizer, r)) for p, r in demos]
    pre = train_lm(model, tokenizer, data, spec.pretrain_steps, spec, response_only=False, desc="tiny policy: pretrain")
    sft = train_lm(model, tokenizer, data, spec.sft_steps, spec, response_only=True, desc="tiny policy: SFT")
    log.info("tiny policy built: pretrain loss %.3f, SFT loss %.3f", pre, sft)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    atomic_save_pretrained(out_dir, model, tokenizer, extra={"tiny_policy_spec.json": asdict(spec)})
    return out_dir


def tiny_policy_path(spec: TinyPolicySpec | None = None) -> Path:
    """Path of the cached tiny policy, building it first if needed."""
    spec = spec or TinyPolicySpec()
    return cached_build(f"tiny-policy-{spec.key()}", lambda path: build_tiny_policy(spec, path))
