"""selm's preference trainer against TRL's DPOTrainer: same model, token ids, batch, precision and loss.

    pip install -e '.[bench]'      # TRL, for this benchmark only
    python benchmarks/train_throughput.py [--model smollm2-135m-instruct] [--pairs 32] [--reply-tokens 48]
        [--batch 4] [--precision fp32,bf16] [--checkpointing off,on] [--repeats 3] [--tools trl,selm,trl-defaults]
        [--random-init [--arch hidden_size=2048,...]] [--json OUT]

    # one GPU, SmolLM2-1.7B's shape with random weights (benchmarks/common.py), the issue's setup
    python benchmarks/train_throughput.py --model SKELETON --random-init --arch "$(python -c \
        'import sys; sys.path.insert(0, "benchmarks"); import common; print(common.SMOLLM2_1_7B)')" \
        --pairs 256 --reply-tokens 96 --batch 16 --precision bf16 --checkpointing off,on --repeats 2 \
        --tools trl,selm,trl-defaults

Pairs are UltraFeedback prompts with their chosen / rejected replies cut to ``--reply-tokens`` tokens
($SELM_DATA_DIR/prompt_pool; generated English text without the data), rendered with the model's chat template and
tokenized once, by TRL (``trainer.train_dataset``; by the same rendering by hand where TRL is not installed and
only selm runs), so both trainers see the same ids. Each run is timed from the model in memory to the end of one
epoch of plain DPO (β 0.1, AdamW, cosine with 10 % warm-up, clipping at 1), the reference log-probs computed once
inside that time on both sides (TRL: ``precompute_ref_log_probs=True``); each run is a fresh process (peak resident
memory is that process's), TRL and selm alternate ``--repeats`` times and the medians are compared. Also printed:
the largest difference between the two reference log-probs and the step-0 losses (log 2 for both when the
log-probs agree). "selm+y0" is selm's SELM loss, which also scores the reference's greedy reply (here another
pair's rejected reply). Both sides run at the same precision and gradient checkpointing (``--checkpointing``);
"trl-defaults" is TRL as a user gets it (``DPOConfig`` turns bf16 autocast and gradient checkpointing on). selm's
LM head runs as its ``train.chunked_head = "auto"`` decides (in chunks on a GPU; each run records it). On a GPU
both train there, the peak is ``torch.cuda.max_memory_allocated`` and bf16 rows show the model-FLOP utilisation
(``common.training_mfu``: 8·N per useful token against the GPU's dense bf16 peak). Run it alone on the machine: a
second heavy process distorts every number.
"""

from __future__ import annotations

import argparse
import json
import os
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
    from common import peak_memory_mib, sync, training_mfu

    spec = json.loads(Path(args.spec).read_text())
    model, tokenizer = policy(spec["path"], spec["random_init"], spec["arch"])
    params = sum(p.numel() for p in model.parameters())  # tied embeddings once
    ids = spec["ids"]
    tokens = sum(len(p) * 2 + len(c) + len(r) for p, c, r in zip(ids["prompt"], ids["chosen"], ids["rejected"]))
    useful = sum(len(p) + len(c) + len(r) for p, c, r in zip(ids["prompt"], ids["chosen"], ids["rejected"]))
    sync()
    t0, chunked = time.perf_counter(), None
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
        from selm.models.precision import compute_device
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
        chunked = cfg.head_in_chunks(compute_device())  # "auto": on a GPU
        loss0 = train_preferences(model, tokenizer, pairs, cfg, round=1).steps[0]["loss"]
    sync()
    seconds = time.perf_counter() - t0
    n = len(ids["prompt"])
    mfu = training_mfu(params, useful / seconds) if spec["precision"] == "bf16" else None  # against the bf16 peak
    print(json.dumps(dict(tool=args.worker, seconds=seconds, pairs_per_s=n / seconds, tokens_per_s=tokens / seconds,
                          peak_mib=peak_memory_mib(), mfu=mfu, loss0=loss0, params=params, chunked_head=chunked,
                          threads=torch.get_num_threads())))  # fmt: skip


def prepare(args, path: str, workdir: Path) -> tuple[Path, float | None]:
    """The pairs' token ids (shared by both trainers) and, where TRL is installed, the largest |Δ| between TRL's
    precomputed reference log-probs and selm's, in fp32. TRL tokenizes where it is installed (so both see its ids);
    without it (a selm-only run, e.g. the GPU check's) ``chat_ids`` renders the same way."""
    import torch

    from selm.models.training import reference_logps
    from selm.records import PreferencePair

    model, tokenizer = policy(path, args.random_init, args.arch)
    records = cut_replies(texts(args.pairs), tokenizer, args.reply_tokens)
    if not has_trl():
        ids, diff = chat_ids(tokenizer, records), None
    else:
        os.environ["HF_DATASETS_CACHE"] = str(workdir)
        ds = trl_trainer(model, tokenizer, records, args.batch, "fp32", False, str(workdir)).train_dataset
        ids = {k: list(ds[f"{k}_ids"]) for k in ("prompt", "chosen", "rejected")}
        pairs = [PreferencePair(str(i), p, c, r, r, "", "", 1.0, 0.0, 1, "bench", "bench")
                 for i, (p, c, r) in enumerate(zip(ids["prompt"], ids["chosen"], ids["rejected"]))]  # fmt: skip
        ours = reference_logps(model, pairs, tokenizer.pad_token_id, ("chosen", "rejected"))
        theirs = {k: torch.tensor(list(ds[f"ref_{k}_logps"])) for k in ("chosen", "rejected")}
        diff = max((getattr(ours, k).cpu() - theirs[k]).abs().max().item() for k in theirs)
    spec = workdir / "spec.json"
    setting = dict(path=path, random_init=args.random_init, arch=args.arch, records=records, ids=ids, batch=args.batch)
    spec.write_text(json.dumps(setting))
    return spec, diff


def chat_ids(tokenizer, records: list[dict]) -> dict[str, list[list[int]]]:
    """TRL's tokenization of conversational pairs: the prompt through the chat template with the generation prompt,
    each reply as the tokens its conversation adds after the prompt's."""
    out: dict[str, list[list[int]]] = {"prompt": [], "chosen": [], "rejected": []}
    for r in records:
        prompt = list(tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, return_dict=False))
        out["prompt"].append(prompt)
        for k in ("chosen", "rejected"):
            whole = tokenizer.apply_chat_template(r["prompt"] + r[k], return_dict=False)
            out[k].append(list(whole)[len(prompt) :])
    return out


def has_trl() -> bool:
    import importlib.util

    return importlib.util.find_spec("trl") is not None


def policy(path: str, random_init: bool, arch: str):
    """The model at ``path`` on the compute device, or its architecture (``arch``'s overrides) with random weights."""
    from common import random_model

    from selm.models.loading import load_policy
    from selm.models.precision import compute_device

    if random_init:
        return random_model(path, "float32", arch)
    model, tokenizer = load_policy(path)
    return model.to(compute_device()), tokenizer


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
    ap.add_argument("--random-init", action="store_true", help="the model's architecture with random weights")
    ap.add_argument("--arch", default="", help="config overrides with --random-init, e.g. hidden_size=2048,...")
    ap.add_argument("--json", help="also write the setting, every run and the ratios to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    from selm import worlds
    from selm.models.precision import compute_device, detect, resolve

    if not has_trl() and any(t.startswith("trl") for t in args.tools.split(",")):
        print("TRL is not installed (pip install -e '.[bench]'): selm's rows only")
        args.tools = ",".join(t for t in args.tools.split(",") if not t.startswith("trl"))
    path = worlds.model_path("policy", args.model, None)
    device = compute_device()
    report = {"model": args.model, "random_init": args.random_init, "arch": args.arch, "batch": args.batch,
              "device": device, "hardware": detect(device).describe(), "groups": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        spec, diff = prepare(args, path, Path(tmp))
        ids = json.loads(spec.read_text())["ids"]
        report |= {"pairs": len(ids["prompt"]), "prompt_tokens": statistics.mean(map(len, ids["prompt"])),
                   "reply_tokens": statistics.mean(map(len, ids["chosen"] + ids["rejected"])),
                   "max_abs_ref_logp_vs_trl": diff}  # fmt: skip
        vs_trl = "" if diff is None else f"; max |Δ| reference log-prob selm vs TRL (fp32): {diff:.2e}"
        print(f"{args.model}{' (random weights)' if args.random_init else ''}: {report['pairs']} pairs, prompts "
              f"{report['prompt_tokens']:.0f} tokens, replies {report['reply_tokens']:.0f} tokens (mean), "
              f"batch {args.batch}{vs_trl}")  # fmt: skip
        print(f'machine: {report["hardware"]} ("auto" = {resolve("auto", device)})')
        print(f"{'precision':>9} {'ckpt':>4} {'tool':>12} {'pairs/s':>8} {'tokens/s':>9} {'peak MiB':>9} "
              f"{'MFU':>6} {'step-0 loss':>12}  runs")  # fmt: skip
        for precision in args.precision.split(","):
            for checkpointing in args.checkpointing.split(","):
                group = f"{precision:>9} {checkpointing:>4}"
                s = json.loads(spec.read_text())
                spec.write_text(json.dumps({**s, "precision": precision, "checkpointing": checkpointing == "on"}))
                runs, ratios = timed(args, spec, group)
                report["groups"].append(dict(precision=precision, checkpointing=checkpointing, runs=runs,
                                             ratios=ratios))  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


def timed(args, spec: Path, group: str) -> tuple[dict[str, list[dict]], dict[str, float]]:
    """``args.repeats`` runs of each tool, in turn (the order alternating), each a fresh process; medians and the
    ratios to TRL at the same settings. "trl-defaults" is TRL at its own bf16 / checkpointing defaults. Returns the
    runs by tool and the ratios of median pairs/s ("selm/trl": …)."""
    runs: dict[str, list[dict]] = {t: [] for t in args.tools.split(",")}
    for r in range(args.repeats):
        for tool in runs if r % 2 == 0 else reversed(runs):
            cmd = [sys.executable, __file__, "--worker", tool, "--spec", str(spec)]
            line = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()
            runs[tool].append(json.loads(line[-1]))
    for tool, rs in runs.items():
        med = {k: statistics.median(x[k] for x in rs) for k in ("pairs_per_s", "tokens_per_s", "peak_mib")}
        mfu = "-" if rs[0]["mfu"] is None else f"{statistics.median(x['mfu'] for x in rs):.1%}"
        print(f"{group} {tool:>12} {med['pairs_per_s']:>8.2f} {med['tokens_per_s']:>9.0f} {med['peak_mib']:>9.0f} "
              f"{mfu:>6} {rs[0]['loss0']:>12.6f}  " + " ".join(f"{x['pairs_per_s']:.2f}" for x in rs))  # fmt: skip
    ratios = {}
    for base in (b for b in ("trl", "trl-defaults") if b in runs):
        theirs = statistics.median(x["pairs_per_s"] for x in runs[base])
        for tool in (t for t in runs if not t.startswith("trl")):
            ratios[f"{tool}/{base}"] = statistics.median(x["pairs_per_s"] for x in runs[tool]) / theirs
            print(f"{group} {tool} / {base} pairs/s: {ratios[f'{tool}/{base}']:.2f}x")
    return runs, ratios


if __name__ == "__main__":
    main()
