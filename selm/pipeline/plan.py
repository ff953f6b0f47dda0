"""Dry run of a recipe: resolve and validate it, then plan the experiment — prompts, generations, judge calls and
training steps per round, and the GPU memory training and sampling need — without loading or downloading anything.

    python -m selm.pipeline.plan RECIPE [section.key=value ...]

Exits with status 1 when no training strategy fits ``hardware.gpu_memory_gb``. The memory figures are estimates
for sizing a job (which ZeRO stage, how many GPUs), not guarantees:

- parameters P from the architecture (a local ``config.json``, a model a world builds, or the table below);
- training, mixed precision with AdamW: 16 bytes per parameter (bf16 weights 2 + grads 2 + fp32 master weights,
  Adam m and v 12), replicated (DDP), or sharded over G GPUs — ZeRO-2: 2P + 14P/G, ZeRO-3: 16P/G;
- activations per GPU: micro-batch × sequences per pair (3 for SELM: chosen, rejected, y0; 2 for DPO) ×
  max_length tokens × (2·hidden·layers bytes with gradient checkpointing, else 34·hidden·layers) plus fp32 logits
  (4·vocab bytes per token, the log-softmax over the vocabulary);
- sampling (vLLM): bf16 weights 2P plus the KV cache, 2·layers·kv_heads·head_dim·2 bytes per token.
"""

from __future__ import annotations

import json
import math
import sys
from math import comb
from pathlib import Path

from selm import worlds
from selm.config import Recipe, load_recipe

GB = 1024**3

#: architectures of the paper recipes' models, so that planning needs no download
KNOWN_ARCHITECTURES = {
    "HuggingFaceH4/mistral-7b-sft-beta": dict(
        hidden_size=4096, num_hidden_layers=32, intermediate_size=14336, vocab_size=32000,
        num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False,
    ),
    "meta-llama/Meta-Llama-3-8B-Instruct": dict(
        hidden_size=4096, num_hidden_layers=32, intermediate_size=14336, vocab_size=128256,
        num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False,
    ),
}  # fmt: skip


def architecture(init: str, recipe: Recipe) -> dict:
    """Config numbers of the policy: a local folder's config.json (a model a world builds is built first, once), or
    the table above."""
    local = Path(worlds.model_path("policy", init, recipe)) / "config.json"
    if local.is_file():
        return json.loads(local.read_text())
    if init in KNOWN_ARCHITECTURES:
        return KNOWN_ARCHITECTURES[init]
    raise ValueError(f"policy.init = {init!r}: no local config.json and not in selm.pipeline.plan.KNOWN_ARCHITECTURES")


def n_params(a: dict) -> int:
    """Parameters of a Llama/Mistral-style decoder (grouped-query attention, gated MLP, RMSNorm)."""
    h, layers, inter, vocab = a["hidden_size"], a["num_hidden_layers"], a["intermediate_size"], a["vocab_size"]
    kv = a.get("num_key_value_heads", a["num_attention_heads"]) * (h // a["num_attention_heads"])
    attention = 2 * h * h + 2 * h * kv  # q and o, k and v
    per_layer = attention + 3 * h * inter + 2 * h
    return vocab * h * (1 if a.get("tie_word_embeddings") else 2) + layers * per_layer + h


def memory(recipe: Recipe, a: dict) -> dict[str, float]:
    """GB per GPU for training under DDP / ZeRO-2 / ZeRO-3 (states + activations) and for vLLM sampling."""
    p, g, t = n_params(a), recipe.hardware.gpus, recipe.train
    h, layers, vocab = a["hidden_size"], a["num_hidden_layers"], a["vocab_size"]
    seqs = t.batch_size * (3 if t.loss_spec.reads_greedy else 2)  # chosen, rejected (and y0)
    per_token = (2 if t.checkpointing("cuda") else 34) * h * layers + 4 * vocab
    activations = seqs * t.max_length * per_token
    kv_per_token = (
        2 * layers * a.get("num_key_value_heads", a["num_attention_heads"]) * (h // a["num_attention_heads"]) * 2
    )
    return {
        "params_b": p / 1e9,
        "train_ddp_gb": (16 * p + activations) / GB,
        "train_zero2_gb": (2 * p + 14 * p / g + activations) / GB,
        "train_zero3_gb": (16 * p / g + activations) / GB,
        "activations_gb": activations / GB,
        "sample_weights_gb": 2 * p / GB,
        "kv_cache_gb_per_1k_tokens": kv_per_token * 1000 / GB,
    }


def judge_calls_per_prompt(recipe: Recipe) -> tuple[int, str]:
    """(judge calls or forward passes per training prompt, what they are)."""
    k = recipe.sampling.n + (2 if recipe.pairs.dataset_candidates else 0)
    if recipe.select.acquisition != "all":
        k = 2  # one acquired comparison per labelled prompt
    if recipe.judge.backend != "llm":
        return k, f"{recipe.judge.backend} scores ({k} replies per prompt)"
    from selm.judges.llm import load_template

    if load_template(recipe.judge.llm.template).type == "single":
        return k, f"LLM ratings ({k} replies per prompt)"
    orders = 2 if recipe.judge.llm.swap else 1
    return comb(k, 2) * orders, f"LLM pairwise calls ({comb(k, 2)} pairs × {orders} orders per prompt)"


def plan(recipe: Recipe) -> dict:
    """Everything the dry run reports, as plain data."""
    w, s, t = recipe.world, recipe.sampling, recipe.train
    available = None
    if w.prompts_file:
        from selm.data import data_dir

        path = Path(w.prompts_file).expanduser()
        path = path if path.is_file() else data_dir() / w.prompts_file
        available = sum(1 for line in path.open() if line.strip()) if path.is_file() else None
    calls, what = judge_calls_per_prompt(recipe)
    budget = recipe.select.label_budget  # set whenever acquisition is not "all" (the recipe checks)
    labelled = w.train_prompts_per_round if recipe.select.acquisition == "all" or budget is None else budget
    steps = math.ceil(labelled / (t.batch_size * t.grad_accum * recipe.hardware.gpus)) * t.epochs
    rounds = [
        {
            "round": k,
            "prompts": w.train_prompts_per_round,
            "generations": w.train_prompts_per_round * (s.n + 1),  # n samples + the greedy y0
            "judge_calls": labelled * calls,
            "max_pairs": labelled,
            "optimizer_steps": steps,
            "learning_rate": t.lr_for(k),
        }
        for k in range(1, recipe.experiment.rounds + 1)
    ]
    e = recipe.eval
    eval_calls = 0
    if e.judge.backend == "llm":
        eval_calls += (e.mt_bench.per_category or 10) * 8 * 2 if e.mt_bench.enabled else 0
        eval_calls += (e.alpaca_eval.limit or 805) * 2 if e.alpaca_eval.enabled else 0
    mem = memory(recipe, architecture(recipe.policy.init, recipe))
    fits = [name for name in ("ddp", "zero2", "zero3") if mem[f"train_{name}_gb"] <= recipe.hardware.gpu_memory_gb]
    return {
        "experiment": recipe.experiment.name,
        "policy": recipe.policy.init,
        "world": f"{w.prompts_file} ({available} prompts)"
        if available
        else f"{w.prompts_file} (not present here)"
        if w.prompts_file
        else w.name,
        "prompts_needed": w.train_prompts_per_round * recipe.experiment.rounds,
        "prompts_available": available,
        "judge": what,
        "rounds": rounds,
        "eval_judge_calls_per_round": eval_calls,
        "memory": mem,
        "fits": fits,
        "hardware": recipe.hardware.model_dump(),
    }


def render(p: dict) -> str:
    m = p["memory"]
    lines = [
        f"experiment {p['experiment']}: policy {p['policy']} ({m['params_b']:.2f} B parameters), world {p['world']}",
        f"prompts needed {p['prompts_needed']} (disjoint slices); judge: {p['judge']}",
        "round  prompts  generations  judge_calls  max_pairs  optimizer_steps  lr",
    ]
    for r in p["rounds"]:
        lines.append(
            f"{r['round']:>5}  {r['prompts']:>7}  {r['generations']:>11}  {r['judge_calls']:>11}  {r['max_pairs']:>9}"
            f"  {r['optimizer_steps']:>15}  {r['learning_rate']:.1e}"
        )
    lines.append(f"evaluation: {p['eval_judge_calls_per_round']} LLM-judge calls per evaluated round")
    hw = p["hardware"]
    lines.append(
        f"GPU memory per GPU (of {hw['gpu_memory_gb']:.0f} GB × {hw['gpus']}): training DDP {m['train_ddp_gb']:.1f} GB,"
        f" ZeRO-2 {m['train_zero2_gb']:.1f} GB, ZeRO-3 {m['train_zero3_gb']:.1f} GB"
        f" (activations {m['activations_gb']:.1f} GB); sampling {m['sample_weights_gb']:.1f} GB weights"
        f" + {m['kv_cache_gb_per_1k_tokens']:.3f} GB KV cache per 1k tokens"
    )
    lines.append(
        f"fits: {', '.join(p['fits']) if p['fits'] else 'NOTHING — more GPUs, smaller batch or checkpointing'}"
    )
    if p["prompts_available"] is not None and p["prompts_available"] < p["prompts_needed"]:
        lines.append(f"WARNING: the prompts file has {p['prompts_available']} prompts, fewer than needed")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    recipe = load_recipe(argv[0] if argv and "=" not in argv[0] else None, [a for a in argv if "=" in a])
    p = plan(recipe)
    print(render(p))
    return 0 if p["fits"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
