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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def judge_server():
    """A real OpenAI-compatible server on 127.0.0.1 (``transformers serve``) serving the tiny judge LM.

    Yields (base_url, model path). Started once per test session; stopped at the end.
    """
    import subprocess
    import time

    import requests

    from selm.tinyworld.judge_lm import serve_command, tiny_judge_lm_path

    path = tiny_judge_lm_path()
    port = free_port()
    log = open(ROOT / ".selm_cache" / "judge_server.log", "w") if (ROOT / ".selm_cache").exists() else None
    proc = subprocess.Popen(serve_command(path, port), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if requests.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"transformers serve did not come up on {base} (log: .selm_cache/judge_server.log)")
        time.sleep(0.5)
    yield f"{base}/v1", str(path)
    proc.terminate()
    proc.wait(timeout=30)
