import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("USERNAME", "selm-tests")
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("SELM_CACHE", str(ROOT / ".selm_cache"))

#: a quickly built tiny policy (seconds, not a minute): good enough to exercise every code path
QUICK_BUILD = dict(demos=2000, pretrain_steps=120, sft_steps=80)


@pytest.fixture(scope="session")
def tiny_policy_dir() -> Path:
    from selm.tinyworld.policy import TinyPolicySpec, tiny_policy_path

    return tiny_policy_path(TinyPolicySpec(**QUICK_BUILD))


@pytest.fixture(scope="session")
def tiny_policy(tiny_policy_dir):
    from selm.sampling import load_policy

    return load_policy(tiny_policy_dir)


@pytest.fixture
def mlflow_home(tmp_path, monkeypatch):
    """A fresh sqlite tracking store in a temporary working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def python() -> str:
    return sys.executable
