"""Infrastructure: both flows validate for Kubernetes, the team MLflow server script serves real runs, and the
DeepSpeed configs ship with the package."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, free_port, wait_for_http


@pytest.mark.parametrize("flow", ["round_flow.py", "selm_flow.py"])
def test_flows_validate_for_kubernetes(flow, tmp_path):
    """``--with kubernetes show``: the graph and every step's decorators as a cluster deployment would see them (an
    S3 datastore root is named, nothing is contacted)."""
    env = {**os.environ, "METAFLOW_DATASTORE_SYSROOT_S3": "s3://selm-example/metaflow"}
    cmd = [sys.executable, str(ROOT / "flows" / flow), "--datastore=s3", "--with", "kubernetes", "show"]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    steps = out.stdout.count("\nStep ") + out.stdout.startswith("Step ")
    assert steps >= 3 and out.stdout.count("@kubernetes") == steps
    if flow == "round_flow.py":  # the GPU steps ask for resources
        for step in ("sample", "train", "evaluate"):
            block = out.stdout.split(f"Step {step}\n")[0].rsplit("\n\n", 1)[-1]
            assert "@resources" in block, step


def test_mlflow_server_script_serves_runs(tmp_path):
    from selm import tracking
    from selm.config import load_recipe
    from selm.records import Prompt

    port = free_port()
    env = {**os.environ, "PORT": str(port), "PYTHON": sys.executable}
    server = subprocess.Popen(["bash", str(ROOT / "infra" / "mlflow_server.sh"), str(tmp_path / "store")], env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/health", server, "mlflow server")
        os.environ["MLFLOW_TRACKING_URI"] = url
        run = tracking.start_run(load_recipe(), "via-server", key="via-server")
        tracking.log_metrics(run, {"heldout/reward": 1.25}, step=1)
        tracking.log_records(run, [Prompt("a", "add 1 and 2")], "prompts")
        c = tracking.client()
        assert c.get_run(run).data.metrics["heldout/reward"] == 1.25
        assert [a.path for a in c.list_artifacts(run, "records")] == ["records/prompts.jsonl"]
        assert (tmp_path / "store" / "mlflow.db").exists() and list((tmp_path / "store" / "artifacts").rglob("*.jsonl"))
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        server.terminate()
        server.wait(timeout=30)


def test_deepspeed_configs_are_package_data():
    """Found through the package (importlib.resources), not a path beside the checkout, and shipped in the wheel."""
    from fnmatch import fnmatch

    import tomllib

    from selm.models.training import deepspeed_config

    package = ROOT / "selm"
    shipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["selm"]
    for name in ("zero2", "zero3"):
        path = deepspeed_config(name)
        assert path.is_relative_to(package) and json.loads(path.read_text())
        assert any(fnmatch(str(path.relative_to(package)), pattern) for pattern in shipped)
