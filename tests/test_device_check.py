"""The device check (``benchmarks/device_check.py``, run by ``benchmarks/gpu_check.sh`` on a GPU machine) in its CPU
mode, as a user runs it: so the script a GPU session depends on cannot rot between GPU sessions."""

import json
import math
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def test_the_device_check_passes_on_this_machines_device(tiny_policy_dir):
    p = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--policy", str(tiny_policy_dir)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summary = json.loads(p.stdout[p.stdout.index("{") :])
    assert summary["device"] == "cpu" and summary["checks"] == {
        "models_on_device": True,
        "eager_equals_sdpa": True,
        "shared_prompt_equals_alone": True,
    }
    r = summary["round"]
    assert r["model_devices"] == ["cpu"] and r["pairs"] > 0 and math.isfinite(r["heldout_reward"])
    assert set(r["seconds"]) == {"sample", "select", "judge", "train", "evaluate"}
