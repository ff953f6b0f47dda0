"""selm's preference trainer against TRL's DPOTrainer: same model, token ids, batch, precision and loss.

    pip install -e '.[bench]'      # TRL, for this benchmark only
    python benchmarks/train_throughput.py [--model smollm2-135m-instruct] [--pairs 32] [--reply-tokens 48]
        [--batch 4] [--precision fp32,bf16] [--checkpointing off,on] [--repeats 3] [--tools trl,selm,trl-defaults]

Pairs are UltraFeedback prompts with their chosen / rejected replies cut to ``--reply-tokens`` tokens
($SELM_DATA_DIR/prompt_pool; generated English text without the data), rendered with the model's chat template and
tokenized once, by TRL (``trainer.train_dataset``), so both trainers see the same ids. Both compute the reference
log-probs once before training (TRL: ``precompute_ref_log_probs=True``) and are timed from there to the end of one
epoch of plain DPO (β 0.1, AdamW, cosine with 10 % warm-up, clipping at 1); each run is a fresh process (peak
resident memory is that process's), TRL and selm alternate ``--repeats`` times and the medians are compared.
Also printed: the largest difference between the two reference log-probs and the step-0 losses (log 2 for both
when the log-probs agree). "selm+y0" is selm's SELM loss, which also scores the reference's greedy reply (here
another pair's rejected reply). Both sides run at the same precision and gradient checkpointing (``--checkpointing``);
"trl-defaults" is TRL as a user gets it (``DPOConfig`` turns bf16 autocast and gradient checkpointing on). On a GPU
both train there and the peak is ``torch.cuda.max_memory_allocated``. Run it alone on the machine: a second heavy
process distorts every number.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DPO = dict(beta=0.1, learning_rate=1e-6, max_grad_norm=1.0, weight_decay=0.0)
WARMUP = 0.1  # of the optimizer steps (transformers 5 reads a warmup_steps < 1 as this ratio)


def texts(count: int) -> list[dict]:
    """Conversational {prompt, chosen, rejected} records."""
    from selm.data import data_dir, load_prompt_file

    file = data_dir() / "prompt_pool" / "ultrafeedback_sample_train_1000.jsonl"
    if file.is_file():
        rows = [(p.text, p.meta["chosen"], p.meta["rejected"]) for p in load_prompt_file(str(file), 80)[:count]]
    else:
        rows = [(f"Describe item {i} of a shop.", f"Item {i} is a red chair. " * 20, f"No idea about {i}. " * 20)
                for i in range(count)]  # fmt: skip
    return [
        {"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": c}],
         "rejected": [{"role": "assistant", "content": r}]}
        for p, c, r in rows
    ]  # fmt: skip


def cut_replies(records: list[dict], tokenizer, tokens: int) -> list[dict]:
    for r in records:
        for k in ("chosen", "rejected"):
            ids = tokenizer(r[k][0]["content"], add_special_tokens=False)["input_ids"][:tokens]
            r[k][0]["content"] = tokenizer.decode(ids)
    return records


def trl_trainer(model, tokenizer, records, batch: int, precision: str | None, checkpointing: bool | None, out: str):
    """TRL's DPOTrainer at ``precision`` and ``checkpointing``; None leaves TRL's own default (``DPOConfig``: bf16
    and gradient checkpointing on)."""
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    settings = {} if precision is None else {"bf16": precision == "bf16"}
    settings |= {} if checkpointing is None else {"gradient_checkpointing": checkpointing}
    args = DPOConfig(
        output_dir=out, per_device_train_batch_size=batch, num_train_epochs=1, precompute_ref_log_probs=True,
        logging_steps=1, report_to=[], save_strategy="no", use_cpu=not torch.cuda.is_available(), max_length=None,
        lr_scheduler_type="cosine", warmup_steps=WARMUP, disable_tqdm=True, seed=0, **settings, **DPO,
    )  # fmt: skip
    return DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(records), processing_class=tokenizer)


def worker(args) -> None:
    """One timed training run; prints one JSON line."""
    import torch

    from selm.models.loading import load_policy

    spec = json.loads(Path(args.spec).read_text())
    model, tokenizer = load_policy(spec["path"])
    if torch.cuda.is_available():
        model.cuda()
    ids = spec["ids"]
    tokens = sum(len(p) * 2 + len(c) + len(r) for p, c, r in zip(ids["prompt"], ids["chosen"], ids["rejected"]))
    t0 = time.perf_counter()
    if args.worker in ("trl", "trl-defaults"):
        equal = args.worker == "trl"  # "trl-defaults": TRL as a user gets it
        precision, checkpointing = (spec["precision"], spec["checkpointing"]) if equal else (None, None)
        with tempfile.TemporaryDirectory() as out:
            os.environ["HF_DATASETS_CACHE"] = out  # no reference log-probs cached from an earlier run
            trainer = trl_trainer(model, tokenizer, spec["records"], spec["batch"], precision, checkpointing, out)
            assert list(trainer.train_dataset["prompt_ids"]) == ids["prompt"], "TRL tokenized the pairs differently"
            trainer.train()
        loss0 = next(h["loss"] for h in trainer.state.log_history if "loss" in h)
    else:
        from selm.config import Train
        from selm.models.training import train_preferences
        from selm.records import PreferencePair

        n = len(ids["prompt"])
        pairs = [
            PreferencePair(str(i), ids["prompt"][i], ids["chosen"][i], ids["rejected"][i], ids["rejected"][(i + 1) % n],
                           "", "", 1.0, 0.0, 1, "bench", "bench")
            for i in range(n)
        ]  # fmt: skip
        loss = "selm" if args.worker == "selm+y0" else "dpo"
        cfg = Train(loss=loss, alpha=1e-3, epochs=1, batch_size=spec["batch"], precision=spec["precision"],
                    gradient_checkpointing=spec["checkpointing"], max_length=4096, max_prompt_length=4096,
                    warmup_ratio=WARMUP, **DPO)  # fmt: skip
        loss0 = train_preferences(model, tokenizer, pairs, cfg, round=1).steps[0]["loss"]
    seconds = time.perf_counter() - t0
    if torch.cuda.is_available():  # the GPU's peak, else the process's resident memory (KiB on Linux)
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = len(ids["prompt"])
    print(json.dumps(dict(tool=args.worker, seconds=seconds, pairs_per_s=n / seconds, tokens_per_s=tokens / seconds,
                          peak_mib=peak, loss0=loss0, threads=torch.get_num_threads())))  # fmt: skip


def prepare(args, path: str, workdir: Path) -> tuple[Path, float]:
    """TRL's tokenization of the pairs (shared by both trainers) and the largest |Δ| between TRL's precomputed
    reference log-probs and selm's, in fp32."""
    import torch

    from selm.models.loading import load_policy
    from selm.models.training import reference_logps
    from selm.records import PreferencePair

    model, tokenizer = load_policy(path)
    records = cut_replies(texts(args.pairs), tokenizer, args.reply_tokens)
    os.environ["HF_DATASETS_CACHE"] = str(workdir)
    ds = trl_trainer(model, tokenizer, records, args.batch, "fp32", False, str(workdir)).train_dataset
    ids = {k: list(ds[f"{k}_ids"]) for k in ("prompt", "chosen", "rejected")}
    pairs = [PreferencePair(str(i), p, c, r, r, "", "", 1.0, 0.0, 1, "bench", "bench")
             for i, (p, c, r) in enumerate(zip(ids["prompt"], ids["chosen"], ids["rejected"]))]  # fmt: skip
    ours = reference_logps(model, pairs, tokenizer.pad_token_id, ("chosen", "rejected"))
    theirs = {k: torch.tensor(list(ds[f"ref_{k}_logps"])) for k in ("chosen", "rejected")}
    diff = max((getattr(ours, k) - theirs[k]).abs().max().item() for k in theirs)
    spec = workdir / "spec.json"
    spec.write_text(json.dumps(dict(path=path, records=records, ids=ids, batch=args.batch)))
    return spec, diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--reply-tokens", type=int, default=48)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--precision", default="fp32,bf16")
    ap.add_argument("--checkpointing", default="off", help="gradient checkpointing on both sides: off, on or off,on")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tools", default="trl,selm,selm+y0", help="also trl-defaults: TRL at its own defaults")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    from selm import worlds
    from selm.models.precision import detect, resolve

    path = worlds.model_path("policy", args.model, None)
    with tempfile.TemporaryDirectory() as tmp:
        spec, diff = prepare(args, path, Path(tmp))
        ids = json.loads(spec.read_text())["ids"]
        print(f"{args.model}: {len(ids['prompt'])} pairs, prompts {statistics.mean(map(len, ids['prompt'])):.0f} "
              f"tokens, replies {statistics.mean(map(len, ids['chosen'] + ids['rejected'])):.0f} tokens (mean), "
              f"batch {args.batch}; max |Δ| reference log-prob selm vs TRL (fp32): {diff:.2e}")  # fmt: skip
        print(f'machine: {detect("cpu").describe()} ("auto" = {resolve("auto", "cpu")})')
        print(f"{'precision':>9} {'ckpt':>4} {'tool':>12} {'pairs/s':>8} {'tokens/s':>9} {'peak MiB':>9} "
              f"{'step-0 loss':>12}  runs")  # fmt: skip
        for precision in args.precision.split(","):
            for checkpointing in args.checkpointing.split(","):
                group = f"{precision:>9} {checkpointing:>4}"
                s = json.loads(spec.read_text())
                spec.write_text(json.dumps({**s, "precision": precision, "checkpointing": checkpointing == "on"}))
                timed(args, spec, group)


def timed(args, spec: Path, group: str) -> None:
    """``args.repeats`` runs of each tool, in turn (the order alternating), each a fresh process; medians and the
    ratios to TRL at the same settings. "trl-defaults" is TRL at its own bf16 / checkpointing defaults."""
    runs: dict[str, list[dict]] = {t: [] for t in args.tools.split(",")}
    for r in range(args.repeats):
        for tool in runs if r % 2 == 0 else reversed(runs):
            cmd = [sys.executable, __file__, "--worker", tool, "--spec", str(spec)]
            line = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()
            runs[tool].append(json.loads(line[-1]))
    for tool, rs in runs.items():
        med = {k: statistics.median(x[k] for x in rs) for k in ("pairs_per_s", "tokens_per_s", "peak_mib")}
        print(f"{group} {tool:>12} {med['pairs_per_s']:>8.2f} {med['tokens_per_s']:>9.0f} {med['peak_mib']:>9.0f} "
              f"{rs[0]['loss0']:>12.6f}  " + " ".join(f"{x['pairs_per_s']:.2f}" for x in rs))  # fmt: skip
    for base in (b for b in ("trl", "trl-defaults") if b in runs):
        theirs = statistics.median(x["pairs_per_s"] for x in runs[base])
        for tool in (t for t in runs if not t.startswith("trl")):
            ratio = statistics.median(x["pairs_per_s"] for x in runs[tool]) / theirs
            print(f"{group} {tool} / {base} pairs/s: {ratio:.2f}x")


if __name__ == "__main__":
    main()
