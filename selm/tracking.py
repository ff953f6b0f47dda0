"""MLflow bookkeeping: one parent run per experiment, one nested run per round, a registered model per recipe.

Tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<cwd>/mlflow.db`` (MLflow's own default for
3.x). All functions take run ids explicitly, because each Metaflow step is its own process.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from selm.config import Recipe
from selm.records import write_jsonl

#: pip requirements recorded with each registered policy (MLflow's inference would look for torchvision).
POLICY_REQUIREMENTS = ["torch", "transformers", "accelerate", "tokenizers"]
CHAMPION = "champion"


def client() -> MlflowClient:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def _experiment_id(c: MlflowClient, name: str) -> str:
    exp = c.get_experiment_by_name(name)
    return exp.experiment_id if exp else c.create_experiment(name)


def start_run(recipe: Recipe, name: str, parent_run_id: str | None = None, tags: Mapping[str, str] = ()) -> str:
    """Create a run (nested under ``parent_run_id`` if given) with the resolved recipe as params."""
    c = client()
    all_tags = {MLFLOW_RUN_NAME: name, **dict(tags)}
    if parent_run_id:
        all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    run = c.create_run(_experiment_id(c, recipe.tracking.mlflow_experiment), tags=all_tags)
    params = [mlflow.entities.Param(k, v[:6000]) for k, v in recipe.flat().items()]
    c.log_batch(run.info.run_id, params=params)
    return run.info.run_id


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log numeric metrics (non-numbers are skipped) in one batch."""
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    _log_batch(run_id, [(k, v, step or 0) for k, v in numbers.items()])


def log_curves(run_id: str, steps: Iterable[Mapping[str, float]], prefix: str) -> None:
    """Per-step training curves: ``<prefix>/<name>`` at each step."""
    _log_batch(run_id, [(f"{prefix}/{k}", v, int(s["step"])) for s in steps for k, v in s.items() if k != "step"])


def _log_batch(run_id: str, rows: list[tuple[str, float, int]]) -> None:
    """(name, value, step) rows in batches of 1000, MLflow's limit per call."""
    now = int(time.time() * 1000)
    metrics = [mlflow.entities.Metric(k, float(v), now, step) for k, v, step in rows]
    for i in range(0, len(metrics), 1000):
        client().log_batch(run_id, metrics=metrics[i : i + 1000])


def log_records(run_id: str, records: list, name: str, artifact_path: str = "records") -> None:
    """Save records as ``<artifact_path>/<name>.jsonl`` artifacts of the run."""
    with tempfile.TemporaryDirectory() as d:
        client().log_artifact(run_id, str(write_jsonl(records, Path(d) / f"{name}.jsonl")), artifact_path)


def log_figure(run_id: str, fig, name: str) -> None:
    client().log_figure(run_id, fig, f"plots/{name}.png")


def log_dict(run_id: str, data: dict, name: str) -> None:
    client().log_text(run_id, json.dumps(data, indent=2, default=str), name)


def finish_run(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status)


def register_policy(run_id: str, policy_path: str, recipe: Recipe, round: int, metrics: Mapping[str, float]) -> dict:
    """Log the round's policy with ``mlflow.transformers`` and register it as a model version.

    Sets the alias ``round-<k>`` and moves ``champion`` to this version when its ``tracking.champion_metric``
    beats the current champion's. Idempotent: a version already registered from this run is reused (a resumed step does
    not register twice). Returns {name, version, champion}.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    c = client()
    name, metric = recipe.tracking.registered_model, recipe.tracking.champion_metric
    score = float(metrics.get(metric, float("-inf")))  # a round without the metric never becomes champion
    existing = [v for v in c.search_model_versions(f"name='{name}'") if v.run_id == run_id]
    if existing:
        version = str(existing[0].version)
    else:
        with mlflow.start_run(run_id=run_id):
            info = mlflow.transformers.log_model(
                {
                    "model": AutoModelForCausalLM.from_pretrained(policy_path),
                    "tokenizer": AutoTokenizer.from_pretrained(policy_path),
                },
                name="policy",
                task="text-generation",
                pip_requirements=POLICY_REQUIREMENTS,
                model_config={"max_new_tokens": recipe.sampling.max_new_tokens},
                registered_model_name=name,
            )
        version = str(info.registered_model_version)
        c.set_model_version_tag(name, version, metric, str(score))
        c.set_model_version_tag(name, version, "round", str(round))
    c.set_registered_model_alias(name, f"round-{round}", version)
    try:
        current = c.get_model_version_by_alias(name, CHAMPION)
        best, best_version = float(current.tags.get(metric, "-inf")), str(current.version)
    except mlflow.exceptions.MlflowException:
        best, best_version = float("-inf"), None
    if score > best:
        c.set_registered_model_alias(name, CHAMPION, version)
        best_version = version
    return {"name": name, "version": version, "champion": best_version == version}
