"""A tiny reward model for the tiny world, trained like a real one: initialised from the SFT policy, a scalar head,
Bradley–Terry loss −log σ(r(x, y_w) − r(x, y_l)) on pairs ranked by the rule judges' weighted sum.

It is a *learned, imperfect* judge — what a reward-model backend sees in practice — and it exercises the same
``AutoModelForSequenceClassification`` path as a hub reward model. Built once and cached like the policy.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from selm.cache import cached_build
from selm.progress import progress
from selm.worlds.tiny import rules
from selm.worlds.tiny.policy import TinyPolicySpec, tiny_policy_path
from selm.worlds.tiny.tasks import noisy_demonstration, sample_tasks


@dataclass(frozen=True)
class TinyRewardSpec:
    pairs: int = 6000
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 1
    version: int = 1

    def key(self, policy: TinyPolicySpec) -> str:
        blob = json.dumps({"rm": asdict(self), "policy": policy.key()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


def preference_pairs(spec: TinyRewardSpec) -> list[tuple[str, str, str]]:
    """(prompt, better reply, worse reply) from two noisy demonstrations per train task; ties skipped."""
    rng = random.Random(spec.seed)
    out = []
    for task in sample_tasks(spec.pairs * 2, "train", seed=spec.seed):
        a, b = noisy_demonstration(task, rng), noisy_demonstration(task, rng)
        ra, rb = (rules.weighted(rules.score(task, r)) for r in (a, b))
        if ra != rb:
            out.append((task.prompt, a, b) if ra > rb else (task.prompt, b, a))
        if len(out) == spec.pairs:
            break
    return out


def build_tiny_reward_model(spec: TinyRewardSpec, policy: TinyPolicySpec, out_dir: Path) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from selm.models.chat import conversation_text
    from selm.models.checkpoint import atomic_save_pretrained

    torch.manual_seed(spec.seed)
    policy_path = tiny_policy_path(policy)
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    tokenizer.padding_side = "right"
    model = AutoModelForSequenceClassification.from_pretrained(policy_path, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    data = preference_pairs(spec)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr)
    rng = random.Random(spec.seed)
    model.train()
    for _ in progress(range(spec.steps), desc="tiny reward model", unit="step"):
        batch = rng.sample(data, spec.batch_size)
        texts = [conversation_text(tokenizer, prompt, r) for prompt, *ranked in batch for r in ranked]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        r = model(**enc).logits[:, 0].view(-1, 2)
        loss = -F.logsigmoid(r[:, 0] - r[:, 1]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return atomic_save_pretrained(out_dir, model, tokenizer, extra={"tiny_reward_spec.json": asdict(spec)})


def tiny_reward_model_path(spec: TinyRewardSpec | None = None, policy: TinyPolicySpec | None = None) -> Path:
    """Path of the cached tiny reward model, building it (and the policy it starts from) first if needed."""
    spec, policy = spec or TinyRewardSpec(), policy or TinyPolicySpec()
    return cached_build(
        f"tiny-reward-model-{spec.key(policy)}", lambda path: build_tiny_reward_model(spec, policy, path)
    )
