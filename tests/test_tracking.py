"""MLflow on a real sqlite store: nested runs, params, registration with aliases, champion, loading; and everything
a resumed or failed step does to it (runs found again, closed on failure, nothing logged or registered twice)."""

import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from selm import tracking
from selm.config import load_recipe
from selm.models.chat import encode_prompt
from selm.records import Prompt


def test_nested_runs_params_metrics_records(mlflow_home):
    recipe = load_recipe(None, ["train.loss=dpo"])
    parent = tracking.start_run(recipe, "exp", key="E")
    child = tracking.start_run(recipe, "round-1", key="E/round-1", parent_run_id=parent, tags={"round": "1"})
    tracking.log_metrics(child, {"heldout/reward": 1.5, "train/pairs": 10}, step=1)
    with pytest.raises(TypeError, match="metrics must be numbers: note='skipped', timings={'a': 1.0}"):
        tracking.log_metrics(child, {"heldout/reward": 2.0, "note": "skipped", "timings": {"a": 1.0}}, step=2)
    tracking.log_curves(child, [{"step": 0, "loss": 0.7}, {"step": 1, "loss": 0.5}], "train")
    tracking.log_records(child, [Prompt("a", "add 1 and 2")], "prompts")
    c = tracking.client()
    run = c.get_run(child)
    assert run.data.tags["mlflow.parentRunId"] == parent
    checkout = Path(tracking.__file__).parents[1]
    if shutil.which("git") and (checkout / ".git").exists():  # a git checkout (CI's clone is): its commit is named
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=checkout, check=True)
        assert run.data.tags["mlflow.source.git.commit"].removesuffix("-dirty") == head.stdout.strip()
    else:
        assert run.data.tags["mlflow.source.git.commit"].startswith("selm ")
    assert run.data.params["train.loss"] == "dpo"
    assert run.data.metrics["heldout/reward"] == 1.5 and "note" not in run.data.metrics  # nothing of the bad batch
    assert [m.value for m in c.get_metric_history(child, "train/loss")] == [0.7, 0.5]
    assert [a.path for a in c.list_artifacts(child, "records")] == ["records/prompts.jsonl"]
    assert (mlflow_home / "mlflow.db").exists()


def test_a_resumed_step_finds_its_run_again_and_logs_once(mlflow_home):
    recipe = load_recipe()
    parent = tracking.start_run(recipe, "exp", key="SELMFlow-7")
    tracking.finish_run(parent, "FAILED")
    assert tracking.start_run(recipe, "exp", key="SELMFlow-7") == parent  # found again, not a second run
    c = tracking.client()
    assert c.get_run(parent).info.status == "RUNNING"
    assert len(c.search_runs([c.get_experiment_by_name("selm").experiment_id])) == 1
    assert tracking.find_run(recipe, "SELMFlow-7") == parent and tracking.find_run(recipe, "SELMFlow-8") is None

    for _ in range(2):  # a step killed after logging, then resumed
        tracking.log_metrics_once(parent, {"heldout/reward": 1.5, "train/pairs": 3}, step=1)
    tracking.log_metrics_once(parent, {"heldout/reward": 1.7}, step=2)
    assert [(m.step, m.value) for m in c.get_metric_history(parent, "heldout/reward")] == [(1, 1.5), (2, 1.7)]


def test_a_failing_block_closes_its_runs(mlflow_home):
    recipe = load_recipe()
    parent = tracking.start_run(recipe, "exp", key="E")
    child = tracking.start_run(recipe, "round-1", key="E/round-1", parent_run_id=parent)
    with pytest.raises(ValueError), tracking.failed_on_error(parent, lambda: tracking.find_run(recipe, "E/round-1")):
        raise ValueError("boom")
    c = tracking.client()
    assert c.get_run(parent).info.status == "FAILED" and c.get_run(child).info.status == "FAILED"
    with pytest.raises(KeyboardInterrupt), tracking.failed_on_error(parent):
        raise KeyboardInterrupt
    assert c.get_run(parent).info.status == "KILLED"
    tracking.reopen(parent, None)
    assert c.get_run(parent).info.status == "RUNNING"


def test_register_aliases_champion_and_load(mlflow_home, tiny_policy_dir):
    recipe = load_recipe()
    name = recipe.tracking.registered_model
    runs = [tracking.start_run(recipe, f"round-{k}", key=f"E/round-{k}") for k in (1, 2, 3)]
    r1, r2, r3 = (
        tracking.register_policy(run, str(tiny_policy_dir), recipe, k, {"heldout/reward": score}, "SELMFlow-1")
        for run, k, score in zip(runs, (1, 2, 3), (1.0, 1.2, 1.1))
    )
    assert [r["champion"] for r in (r1, r2, r3)] == [True, True, False]
    again = tracking.register_policy(runs[2], str(tiny_policy_dir), recipe, 3, {"heldout/reward": 1.1}, "SELMFlow-1")
    assert again["version"] == r3["version"]  # a resumed step does not register twice
    c = tracking.client()
    assert str(c.get_model_version_by_alias(name, "champion").version) == r2["version"]
    assert str(c.get_model_version_by_alias(name, "selmflow-1-champion").version) == r2["version"]
    assert str(c.get_model_version_by_alias(name, "selmflow-1-round-3").version) == r3["version"]
    assert len(c.search_model_versions(f"name='{name}'")) == 3

    pipe = mlflow.transformers.load_model(f"models:/{name}@champion")
    ids = encode_prompt(pipe.tokenizer, "add 2 and 3")
    text = pipe(pipe.tokenizer.decode(ids), max_new_tokens=8, do_sample=False, return_full_text=False)
    assert isinstance(text[0]["generated_text"], str) and text[0]["generated_text"].strip()


def test_champion_never_compares_scales_and_experiments_keep_their_aliases(mlflow_home, tiny_policy_dir):
    """A second experiment with the same registered model but other objective weights: its much higher
    heldout/reward (another scale) does not displace the champion, and its round-1 alias is its own."""
    name = "tiny-selm-policy"
    first = load_recipe()
    reweighted = load_recipe(None, ["judge.weights={correctness = 3.0, conciseness = 3.0, safety = 3.0}"])
    assert tracking.champion_scale(first) != tracking.champion_scale(reweighted)
    assert tracking.champion_scale(first) == tracking.champion_scale(load_recipe(None, ["train.loss=dpo"]))
    a = tracking.start_run(first, "round-1", key="A/round-1")
    b = tracking.start_run(reweighted, "round-1", key="B/round-1")
    ra = tracking.register_policy(a, str(tiny_policy_dir), first, 1, {"heldout/reward": 1.0}, "SELMFlow-A")
    rb = tracking.register_policy(b, str(tiny_policy_dir), reweighted, 1, {"heldout/reward": 5.0}, "SELMFlow-B")
    assert ra["champion"] and not rb["champion"]
    c = tracking.client()
    assert str(c.get_model_version_by_alias(name, "champion").version) == ra["version"]
    assert str(c.get_model_version_by_alias(name, "selmflow-a-round-1").version) == ra["version"]
    assert str(c.get_model_version_by_alias(name, "selmflow-b-round-1").version) == rb["version"]
    assert str(c.get_model_version_by_alias(name, "selmflow-b-champion").version) == rb["version"]


def test_two_processes_create_a_new_database_together(mlflow_home):
    """Both initialise a fresh mlflow.db and create the experiment at once: without the lock one of them dies in
    MLflow's schema migration or on the experiment's UNIQUE name."""
    code = (
        "from selm import tracking; from selm.config import load_recipe;"
        "r = tracking.start_run(load_recipe(), 'exp', key='K' + __import__('sys').argv[1]); print(r)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(3)
    ]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in results), [err[-2000:] for _, err, _ in results]
    c = tracking.client()
    assert len(c.search_runs([c.get_experiment_by_name("selm").experiment_id])) == 3
