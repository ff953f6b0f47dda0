"""MLflow on a real sqlite store: nested runs, params, registration with aliases, champion, loading."""

import mlflow

from selm import tracking
from selm.chat import encode_prompt
from selm.config import load_recipe
from selm.records import Prompt


def test_nested_runs_params_metrics_records(mlflow_home):
    recipe = load_recipe(None, ["train.loss=dpo"])
    parent = tracking.start_run(recipe, "exp")
    child = tracking.start_run(recipe, "round-1", parent_run_id=parent, tags={"round": "1"})
    tracking.log_metrics(child, {"heldout_reward": 1.5, "pairs": 10, "note": "skipped"}, step=1)
    tracking.log_curves(child, [{"step": 0, "loss": 0.7}, {"step": 1, "loss": 0.5}], "train")
    tracking.log_records(child, [Prompt("a", "add 1 and 2")], "prompts")
    c = tracking.client()
    run = c.get_run(child)
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.params["train.loss"] == "dpo"
    assert run.data.metrics["heldout_reward"] == 1.5 and "note" not in run.data.metrics
    assert [m.value for m in c.get_metric_history(child, "train/loss")] == [0.7, 0.5]
    assert [a.path for a in c.list_artifacts(child, "records")] == ["records/prompts.jsonl"]
    assert (mlflow_home / "mlflow.db").exists()


def test_register_aliases_champion_and_load(mlflow_home, tiny_policy_dir):
    recipe = load_recipe()
    name = recipe.tracking.registered_model
    runs = [tracking.start_run(recipe, f"round-{k}") for k in (1, 2, 3)]
    r1 = tracking.register_policy(runs[0], str(tiny_policy_dir), recipe, 1, {"heldout_reward": 1.0})
    r2 = tracking.register_policy(runs[1], str(tiny_policy_dir), recipe, 2, {"heldout_reward": 1.2})
    r3 = tracking.register_policy(runs[2], str(tiny_policy_dir), recipe, 3, {"heldout_reward": 1.1})
    assert [r["champion"] for r in (r1, r2, r3)] == [True, True, False]
    again = tracking.register_policy(runs[2], str(tiny_policy_dir), recipe, 3, {"heldout_reward": 1.1})
    assert again["version"] == r3["version"]  # a resumed step does not register twice
    c = tracking.client()
    assert str(c.get_model_version_by_alias(name, "champion").version) == r2["version"]
    assert str(c.get_model_version_by_alias(name, "round-3").version) == r3["version"]
    assert len(c.search_model_versions(f"name='{name}'")) == 3

    pipe = mlflow.transformers.load_model(f"models:/{name}@champion")
    ids = encode_prompt(pipe.tokenizer, "add 2 and 3")
    text = pipe(pipe.tokenizer.decode(ids), max_new_tokens=8, do_sample=False, return_full_text=False)
    assert isinstance(text[0]["generated_text"], str) and text[0]["generated_text"].strip()
