"""The GPU check: does a round run on this machine's device, and how fast do selm's trainer and sampler go there —
in minutes, with one JSON summary at the end.

    python benchmarks/gpu_check.py --make-skeleton SKELETON      # here: SmolLM2-135M's config and tokenizer (3 MB)
    bash benchmarks/gpu_check.sh WHEELS SKELETON                 # there: an offline GPU machine (installs WHEELS)
    python benchmarks/gpu_check.py --model SKELETON [--out gpu_check.json]
    python benchmarks/gpu_check.py --small [--policy DIR]        # the CPU mode the tests run: tiny models

Parts, each a fresh process (its GPU memory its own) whose failure is recorded and does not stop the others:

1. ``device_check.py``: one tiny-world round through the stages, every model on the device; attention paths.
2. ``stages_without_flows.py``: the tiny world's three rounds through the stages (held-out metrics per round).
3. ``train_throughput.py``: selm against TRL (where installed) at equal gradient checkpointing (off and on) and
   TRL at its defaults, bf16, 256 pairs, batch 16: on SmolLM2-135M's and SmolLM2-1.7B's architectures with random
   weights (throughput does not depend on them, so the skeleton — config and tokenizer — is all it brings).
4. ``sample_throughput.py``: selm's HF sampler against plain ``generate``, 128 prompts × 4 replies × 128 tokens.

The summary names the machine, each part's seconds and exit status, its results, and the checks; the exit status
is non-zero when a part failed or a check did not hold.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FULL = dict(pairs=256, reply_tokens=96, batch=16, prompts=128, n=4, new_tokens=128, sample_batch=256, repeats=1)
SMALL = dict(pairs=8, reply_tokens=16, batch=4, prompts=4, n=2, new_tokens=8, sample_batch=8, repeats=1)


def part(name: str, argv: list[str], timeout: float, out: Path | None = None) -> dict:
    """Runs ``python benchmarks/<argv>`` and returns its seconds, exit status and — from ``out`` (a JSON file it
    wrote) or its stdout's JSON — its results; the output's tail where it failed."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:]], capture_output=True, text=True,
                           timeout=timeout, cwd=HERE.parent)  # fmt: skip
        code, stdout, stderr = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        code, stdout, stderr = "timeout", str(e.stdout or ""), str(e.stderr or "")
    row: dict = {"part": name, "seconds": round(time.perf_counter() - t0, 1), "exit": code}
    if code != 0:
        row["tail"] = (stdout + stderr)[-2000:]
    elif out is not None:
        row["result"] = json.loads(out.read_text())
    elif "{" in stdout:
        row["result"] = json.loads(stdout[stdout.index("{") :])
    print(f"{name}: exit {code} in {row['seconds']} s", flush=True)
    return row


def run(model: str, sizes: dict, policy: str | None, precision: str, workdir: Path) -> list[dict]:
    """The four parts; ``model`` (a folder or packaged name) gives the throughput parts their architecture."""
    from common import SMOLLM2_1_7B

    from selm.models.precision import DTYPE_NAMES

    archs = {"135m": ""} if policy else {"135m": "", "1.7b": SMOLLM2_1_7B}
    rows = [part("device_check", ["device_check.py", *(["--policy", policy] if policy else [])], 900)]
    stages = workdir / "stages.json"
    # the given policy, not a build; one round on fewer prompts: the tests' CPU mode checks that it runs, not speed
    small = ["experiment.rounds=1", "world.train_prompts_per_round=64", "world.heldout_prompts=64",
             f"policy.init={policy}"] if policy else []  # fmt: skip
    rows.append(part("stages", ["stages_without_flows.py", *small, f"--json={stages}"], 900, stages))
    for label, arch in archs.items():
        out = workdir / f"train-{label}.json"
        argv = ["train_throughput.py", "--model", model, "--random-init", f"--arch={arch}", "--pairs",
                str(sizes["pairs"]), "--reply-tokens", str(sizes["reply_tokens"]), "--batch", str(sizes["batch"]),
                "--precision", precision, "--checkpointing", "off,on", "--repeats", str(sizes["repeats"]),
                "--tools", "trl,selm,trl-defaults", "--json", str(out)]  # fmt: skip
        rows.append(part(f"train_throughput {label}", argv, 1200, out))
    for label, arch in archs.items():
        out = workdir / f"sample-{label}.json"
        argv = ["sample_throughput.py", "--model", model, "--random-init", f"--arch={arch}", "--prompts",
                str(sizes["prompts"]), "--n", str(sizes["n"]), "--max-new-tokens", str(sizes["new_tokens"]),
                "--batch", str(sizes["sample_batch"]), "--threads", "2", "--dtype", DTYPE_NAMES[precision],
                "--backends", "hf,generate", "--json", str(out)]  # fmt: skip
        rows.append(part(f"sample_throughput {label}", argv, 600, out))
    return rows


def checks(rows: list[dict]) -> dict[str, bool]:
    """What must hold: every part ran; the device check's own checks; the trainer's first DPO loss is log 2 (policy
    = reference) in every run; the sampler produced tokens."""
    by = {r["part"]: r.get("result") for r in rows}
    ok = {f"{r['part']} ran": r["exit"] == 0 for r in rows}
    if by.get("device_check"):
        ok |= {f"device_check: {k}": v for k, v in by["device_check"]["checks"].items()}
    for name, result in by.items():
        if name.startswith("train_throughput") and result:
            losses = [x["loss0"] for g in result["groups"] for rs in g["runs"].values() for x in rs]
            ok[f"{name}: step-0 DPO loss = log 2"] = bool(losses) and all(
                math.isclose(v, math.log(2), abs_tol=2e-3) for v in losses
            )
        if name.startswith("sample_throughput") and result:
            ok[f"{name}: tokens sampled"] = bool(result["rows"]) and all(x["tokens"] > 0 for x in result["rows"])
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="SmolLM2-135M's skeleton folder (or the model)")
    ap.add_argument("--small", action="store_true", help="tiny sizes and the tiny policy: the CPU mode of the tests")
    ap.add_argument("--policy", help="with --small: the tiny policy folder (default: the tiny world's, built)")
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--make-skeleton", metavar="DIR", help="write --model's config and tokenizer to DIR and stop")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from common import peak_flops, skeleton

    from selm import worlds
    from selm.models.precision import DTYPE_NAMES, compute_device, detect, resolve

    if args.make_skeleton:
        print(skeleton(worlds.model_path("policy", args.model, None), args.make_skeleton))
        return 0
    device = compute_device()
    if args.small:
        from selm.config import load_recipe
        from selm.pipeline.policy import initial_policy_path

        args.policy = args.policy or str(initial_policy_path(load_recipe(None)))
        args.model = args.policy
    summary: dict = {"device": device, "hardware": detect(device).describe(), "torch": __import__("torch").__version__}
    if device == "cuda":
        import torch

        peak = peak_flops()
        summary |= {"gpu": torch.cuda.get_device_name(), "peak_bf16_tflops": peak and peak / 1e12}
    precision = {v: k for k, v in DTYPE_NAMES.items()}[resolve("auto", device)]  # "bf16" / "fp32", as Train says
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="selm-gpu-check-") as tmp:
        rows = run(args.model, SMALL if args.small else FULL, args.policy, precision, Path(tmp))
    summary |= {"precision": precision, "seconds": round(time.perf_counter() - t0, 1), "parts": rows}
    summary["checks"] = checks(rows)
    Path(args.out).write_text(json.dumps(summary, indent=1))
    failed = [k for k, v in summary["checks"].items() if not v]
    print(f"{args.out}: {len(summary['checks']) - len(failed)} of {len(summary['checks'])} checks hold"
          + (f"; failed: {', '.join(failed)}" if failed else ""))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
