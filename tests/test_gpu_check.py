"""The GPU check (``benchmarks/gpu_check.py``, run by ``benchmarks/gpu_check.sh`` on a GPU machine) in its CPU mode,
as a user runs it — every part (device check, the stages, both throughput benchmarks) a real process on this
machine's device — so the script a GPU session depends on cannot rot between GPU sessions."""

import json
import math
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def test_the_gpu_check_passes_on_this_machines_device(tiny_policy_dir, tmp_path):
    out = tmp_path / "gpu_check.json"
    argv = ["--small", "--policy", str(tiny_policy_dir), "--out", str(out)]
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), *argv], capture_output=True,
                       text=True, timeout=1800, cwd=ROOT)  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["device"] == "cpu" and summary["precision"] in ("bf16", "fp32")
    parts = {r["part"]: r for r in summary["parts"]}
    assert set(parts) == {"device_check", "stages", "train_throughput 135m", "sample_throughput 135m"}
    assert all(summary["checks"].values()) and len(summary["checks"]) == 4 + 3 + 2

    check = parts["device_check"]["result"]
    assert check["checks"] == {"models_on_device": True, "eager_equals_sdpa": True, "shared_prompt_equals_alone": True}
    r = check["round"]
    assert r["model_devices"] == ["cpu"] and r["pairs"] > 0 and math.isfinite(r["heldout/reward"])
    assert set(r["seconds"]) == {"sample", "select", "judge", "train", "evaluate"}

    rounds = parts["stages"]["result"]["rounds"]
    assert [x["round"] for x in rounds] == [0, 1] and all(math.isfinite(x["heldout/reward"]) for x in rounds)

    train = parts["train_throughput 135m"]["result"]
    assert train["device"] == "cpu" and [g["checkpointing"] for g in train["groups"]] == ["off", "on"]
    assert train["prompt_tokens"] > 0 and train["reply_tokens"] > 0
    for group in train["groups"]:
        (selm,) = group["runs"]["selm"]  # one run each; TRL's rows too where it is installed
        assert selm["pairs_per_s"] > 0 and selm["peak_mib"] > 0
        assert selm["loss0"] == pytest.approx(math.log(2), abs=2e-3)

    sample = parts["sample_throughput 135m"]["result"]
    assert {x["backend"] for x in sample["rows"]} == {"hf", "generate"}


def test_the_throughput_benchmark_tokenizes_pairs_as_selm_encodes_them(tiny_policy_dir, monkeypatch):
    """Without TRL (CI has none) the benchmark renders the pairs itself: the ids must be the ones selm trains on —
    the prompt with its generation header, each reply closed by end-of-turn — not the keys of a BatchEncoding."""
    from transformers import AutoTokenizer

    from selm.models.chat import encode_prompt, encode_response

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from train_throughput import chat_ids

    tokenizer = AutoTokenizer.from_pretrained(tiny_policy_dir)
    record = {"prompt": [{"role": "user", "content": "Name a colour."}],
              "chosen": [{"role": "assistant", "content": "Blue."}],
              "rejected": [{"role": "assistant", "content": "I like cheese."}]}  # fmt: skip
    assert chat_ids(tokenizer, [record]) == {
        "prompt": [encode_prompt(tokenizer, "Name a colour.")],
        "chosen": [encode_response(tokenizer, "Blue.")],
        "rejected": [encode_response(tokenizer, "I like cheese.")],
    }
