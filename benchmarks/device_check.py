"""Does a round run on this machine's device? One round of the tiny world through the stages, every model on the
step's device (``cuda`` where there is a GPU, else the CPU), and the attention paths the trainer uses, checked there.

    python benchmarks/device_check.py            # prints one JSON summary; exits non-zero if a check fails
    python benchmarks/device_check.py --policy DIR   # start from this policy instead of building the tiny one

Checks: the precision "auto" picks here; each stage's models sit on the device; the shared-prompt log-probs agree
between SDPA and eager attention (whose additive mask is built on the device) and with scoring each reply alone.
On a GPU machine without selm's other dependencies, ``benchmarks/gpu_check.sh`` installs the few it needs first.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from selm.config import load_recipe
from selm.models.cache import ModelCache
from selm.models.logprobs import batched_sequence_logprobs, pack_shared, shared_prompt_logprobs
from selm.models.precision import compute_device, detect, resolve


def round_on_device(out: Path, policy: str | None = None) -> dict:
    """sample → select → judge → train → evaluate + diagnostics of round 1 through the round runtime, one
    ``ModelCache`` per step (as RoundFlow's steps), from ``policy`` (default: the tiny world's, built if absent)."""
    from selm.pipeline import runtime
    from selm.pipeline.components import Components
    from selm.pipeline.policy import initial_policy_path

    overrides = ["world.train_prompts_per_round=256", "world.heldout_prompts=200", "judge.cache=off",
                 "eval.lm_eval.tasks=[]", "eval.mt_bench.enabled=false", "eval.alpaca_eval.enabled=false"]  # fmt: skip
    recipe = load_recipe(None, overrides)
    policy = policy or initial_policy_path(recipe)
    state = runtime.begin(Components(recipe), 1, "device-check", policy, policy, out / "round-1")
    seconds, devices = {}, set()
    for stage in runtime.STAGES:
        models, t0 = ModelCache(), time.perf_counter()
        state = stage(state, Components(recipe, models))
        seconds[stage.__name__.removeprefix("run_")] = round(time.perf_counter() - t0, 2)
        devices.update(str(models.get(*key)[0].device) for key in models.loaded())
    return {
        "seconds": seconds,
        "model_devices": sorted(devices),
        "pairs": len(state.pairs),
        "heldout/reward": round(state.metrics["heldout/reward"], 4),
        "explore/kl": round(state.metrics["explore/kl"], 4),
    }


def attention_paths(device: str) -> dict:
    """Shared-prompt log-probs of a random SmolLM2-shaped model (4 layers) under SDPA and eager attention, against
    each reply scored alone, on ``device`` in fp32."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(vocab_size=1000, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").to(device).eval()
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(1, 1000, (n,), generator=g).tolist() for n in (9, 17, 5)]
    replies = [[torch.randint(1, 1000, (n,), generator=g).tolist() for n in lengths] for lengths in ((4, 7, 3),) * 2]
    batch = [t.to(device) for t in pack_shared(prompts, replies, pad_id=0)]
    with torch.no_grad():
        sdpa = shared_prompt_logprobs(model, *batch)
        model.config._attn_implementation = "eager"  # the same weights through the eager path's additive mask
        eager = shared_prompt_logprobs(model, *batch)
        model.config._attn_implementation = "sdpa"
    alone = torch.stack([batched_sequence_logprobs(model, prompts, r, pad_id=0) for r in replies]).to(device)
    return {
        "max_abs_sdpa_vs_eager": float((sdpa - eager).abs().max()),
        "max_abs_shared_vs_alone": float((sdpa - alone).abs().max()),
    }


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", help="initial policy folder (default: the tiny world's, built if absent)")
    args = parser.parse_args(argv)
    device = compute_device()
    summary = {"device": device, "hardware": detect(device).describe(), "auto_precision": resolve("auto", device)}
    if device == "cuda":
        summary["gpu"] = torch.cuda.get_device_name()
    with tempfile.TemporaryDirectory(prefix="selm-device-") as tmp:
        summary["round"] = round_on_device(Path(tmp), args.policy)
    summary["attention"] = attention_paths(device)
    ok = {
        "models_on_device": summary["round"]["model_devices"]
        and all(d.startswith(device) for d in summary["round"]["model_devices"]),
        "eager_equals_sdpa": summary["attention"]["max_abs_sdpa_vs_eager"] < 1e-3,
        "shared_prompt_equals_alone": summary["attention"]["max_abs_shared_vs_alone"] < 1e-3,
    }
    summary["checks"] = {k: bool(v) for k, v in ok.items()}
    print(json.dumps(summary, indent=2))
    return 0 if all(ok.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
