"""Training at scale, exercised on a CPU: DeepSpeed ZeRO-2 and ZeRO-3 in one process, and DDP over gloo with two
torchrun processes — each through the same ``selm.pipeline.train.train`` the flow's train step calls."""

import json
import os
import subprocess
import sys

import pytest
import torch

from selm.models.loading import load_policy
from selm.records import write_jsonl

pytestmark = pytest.mark.slow

# one DeepSpeed process without a launcher (else DeepSpeed looks for mpi4py)
ONE_PROCESS = dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", LOCAL_WORLD_SIZE="1")


def train_in_subprocess(tiny_policy_dir, pairs, overrides, tmp_path, env=None):
    """``train`` in a fresh process (DeepSpeed and torch.distributed keep global state): (history, policy)."""
    from conftest import free_port

    write_jsonl(pairs, tmp_path / "pairs.jsonl")
    code = (
        "import json, sys; from pathlib import Path; from selm.pipeline.train import train;"
        "from selm.config import load_recipe; from selm.pipeline.components import Components;"
        "from selm.records import PreferencePair, read_jsonl;"
        f"r = load_recipe(None, {overrides!r} + ['train.epochs=2', 'train.batch_size=16']);"
        f"pairs = read_jsonl(PreferencePair, {str(tmp_path / 'pairs.jsonl')!r});"
        f"h = train(Components(r), {str(tiny_policy_dir)!r}, pairs, 1, Path({str(tmp_path / 'policy')!r}));"
        "print('HISTORY ' + json.dumps(h.steps))"
    )
    full_env = {**os.environ, **(env or {}), "MASTER_PORT": str(free_port())}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("HISTORY "))
    return json.loads(line.removeprefix("HISTORY ")), tmp_path / "policy"


def test_deepspeed_zero2_and_zero3_train_like_plain_accelerate(tiny_policy_dir, round_pairs, tmp_path):
    runs = {}
    for name, overrides, env in [
        ("plain", [], None),
        ("zero2", ["train.deepspeed=zero2"], ONE_PROCESS),
        ("zero3", ["train.deepspeed=zero3"], ONE_PROCESS),
    ]:
        (tmp_path / name).mkdir()
        runs[name] = train_in_subprocess(tiny_policy_dir, round_pairs, overrides, tmp_path / name, env)
    losses = {name: [s["loss"] for s in history] for name, (history, _) in runs.items()}
    assert losses["plain"][-1] < losses["plain"][0]
    for name in ("zero2", "zero3"):  # the same optimisation, sharded (one shard here)
        assert losses[name] == pytest.approx(losses["plain"], abs=1e-4), name
        model, _ = load_policy(runs[name][1])  # ZeRO-3 weights were gathered into a normal checkpoint
        plain, _ = load_policy(runs["plain"][1])
        for (k, a), b in zip(model.state_dict().items(), plain.state_dict().values()):
            assert torch.allclose(a, b, atol=1e-4), k


def test_two_torchrun_processes_train_with_ddp(tiny_policy_dir, round_pairs, tmp_path):
    history, policy = train_in_subprocess(tiny_policy_dir, round_pairs, ["train.processes=2"], tmp_path)
    # each optimizer step sees 16 pairs per process: half as many steps as one process with the same batch size
    assert len(history) == 2 * -(-len(round_pairs) // 32) and history[-1]["reward_margin"] > 0
    assert (policy / "model.safetensors").exists() and not list(tmp_path.glob(".policy.tmp-*"))
