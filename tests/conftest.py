import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the public evaluation data beside the checkout, as CI has it (tests that need it skip or say so without it)
SHARED_DATA = Path(os.environ.get("SELM_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()

os.environ.setdefault("USERNAME", "selm-tests")
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("SELM_CACHE", str(ROOT / ".selm_cache"))

#: a quickly built tiny policy (seconds, not a minute): good enough to exercise every code path
QUICK_BUILD = dict(demos=2000, pretrain_steps=120, sft_steps=80)


@pytest.fixture(scope="session")
def tiny_policy_dir() -> Path:
    from selm.worlds.tiny.policy import TinyPolicySpec, tiny_policy_path

    return tiny_policy_path(TinyPolicySpec(**QUICK_BUILD))


@pytest.fixture(scope="session")
def tiny_policy(tiny_policy_dir):
    from selm.models.loading import load_policy

    return load_policy(tiny_policy_dir)


@pytest.fixture
def mlflow_home(tmp_path, monkeypatch):
    """A fresh sqlite tracking store in a temporary working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh folder for the flows' .metaflow datastore and mlflow.db, also used by this process's clients."""
    from metaflow import namespace
    from metaflow.plugins.datastores.local_storage import LocalStorage

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(LocalStorage, "datastore_root", None)  # the client caches the first folder it found
    namespace(None)
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

    from selm.worlds.tiny.judge_lm import serve_command, tiny_judge_lm_path

    path = tiny_judge_lm_path()
    port = free_port()
    log = open(ROOT / ".selm_cache" / "judge_server.log", "w") if (ROOT / ".selm_cache").exists() else None
    proc = subprocess.Popen(serve_command(path, port), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base}/health", proc, "transformers serve (log: .selm_cache/judge_server.log)")
    yield f"{base}/v1", str(path)
    proc.terminate()
    proc.wait(timeout=30)


def wait_for_http(url: str, proc, what: str, timeout: float = 120) -> None:
    """Poll ``url`` until it answers 200; fail the test if ``proc`` dies or ``timeout`` passes first."""
    import time

    import requests

    deadline = time.time() + timeout
    while True:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"{what} did not come up at {url}")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def round_pairs(tiny_policy_dir):
    """Real preference pairs of one round of the quick tiny policy (96 prompts, rule judges)."""
    import torch

    from selm.config import load_recipe
    from selm.pipeline.runtime import STAGES, Components, begin, run_round

    recipe = load_recipe(None, ["world.train_prompts_per_round=96", "judge.cache=off"])
    torch.manual_seed(0)
    state = begin(Components(recipe), 1, "pairs", str(tiny_policy_dir), str(tiny_policy_dir), "unused")
    state = run_round(state, recipe, STAGES[:3])  # sample, select, judge
    assert len(state.pairs) > 20
    return state.pairs


def card_text(task) -> str:
    """The text of a task's first Metaflow card: its components are base64-encoded JSON inside the HTML."""
    import base64
    import re

    from metaflow.cards import get_cards

    html = get_cards(task)[0].get()
    return "\n".join(base64.b64decode(m).decode() for m in re.findall(r'__MF_DATA__\["[^"]+"\] = "([^"]+)"', html))


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server on 127.0.0.1 (moto's), with a bucket ``selm``; yields the environment that points
    Metaflow's S3 client (and a flow's ``--datastore s3``) at it. Stopped at the end of the session."""
    import shutil
    import subprocess

    import boto3

    port = free_port()
    proc = subprocess.Popen([shutil.which("moto_server") or "moto_server", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    wait_for_http(f"{endpoint}/moto-api/", proc, "moto_server")
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "METAFLOW_S3_ENDPOINT_URL": endpoint, "METAFLOW_DATASTORE_SYSROOT_S3": "s3://selm/metaflow"}  # fmt: skip
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket="selm")  # fmt: skip
    yield env
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """This process's Metaflow S3 client pointed at the session's S3 server."""
    from metaflow import metaflow_config

    for k, v in s3_server.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(metaflow_config, "S3_ENDPOINT_URL", s3_server["METAFLOW_S3_ENDPOINT_URL"])
    # Metaflow reads the endpoint into its clients' parameters when it is first imported
    monkeypatch.setitem(metaflow_config.DATATOOLS_CLIENT_PARAMS, "endpoint_url", s3_server["METAFLOW_S3_ENDPOINT_URL"])
    monkeypatch.setattr(metaflow_config, "DATASTORE_SYSROOT_S3", s3_server["METAFLOW_DATASTORE_SYSROOT_S3"])
    return s3_server
