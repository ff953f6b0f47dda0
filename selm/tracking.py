"""MLflow bookkeeping: one parent run per experiment, one nested run per round, a registered model per recipe.

Tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<cwd>/mlflow.db`` (MLflow's own default for
3.x). All functions take run ids explicitly, because each Metaflow step is its own process.

Everything here may be repeated by a resumed step without duplicating anything: runs are found again by their
``selm_key`` tag, per-round metrics are logged once per step, a round's policy is registered once per run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import numbers
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME, MLFLOW_RUN_NOTE

from selm.config import Recipe
from selm.records import write_jsonl

# with a tracking server MLflow prints a "View run … at" line for every run it closes; the run's last lines already
# say where to look
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

#: pip requirements recorded with each registered policy (MLflow's inference would look for torchvision).
POLICY_REQUIREMENTS = ["torch", "transformers", "accelerate", "tokenizers"]
CHAMPION = "champion"
#: the experiment tag that makes MLflow's UI open the experiment as model training, not as a GenAI app ("Traces")
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


#: the tag that identifies a run across resumes: "<experiment>" for the parent, "<experiment>/round-<k>" for a round
KEY_TAG = "selm_key"
_ready: set[str] = set()  # tracking URIs whose database this process has seen initialised


def code_version() -> str:
    """The commit of the selm checkout that runs (``git rev-parse HEAD``), with ``-dirty`` when tracked files differ
    from it; ``selm <version>`` when selm is not run from a git checkout (an installed wheel)."""
    import subprocess
    from importlib.metadata import version

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return f"selm {version('selm')}"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def client() -> MlflowClient:
    """A client of the tracking server. A new sqlite database is created under a file lock: two experiments
    started together in one folder would otherwise both run MLflow's schema migrations and one would crash."""
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:///") and uri not in _ready:
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial tables..."
        with _sqlite_lock(uri):
            c = MlflowClient(uri)
            c.search_experiments(max_results=1)  # creates and migrates the tables
            c.search_registered_models(max_results=1)
        _ready.add(uri)
    return MlflowClient(uri)


def _sqlite_lock(uri: str):
    """An exclusive lock on ``<database>.lock`` for the life of the returned file (a context manager)."""
    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    f = open(f"{db}.lock", "w")
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


def _experiment_id(c: MlflowClient, name: str) -> str:
    uri = tracking_uri()
    with _sqlite_lock(uri) if uri.startswith("sqlite:///") else nullcontext():  # create it once, not twice
        exp = c.get_experiment_by_name(name)
        if exp is None:
            return c.create_experiment(name, tags=dict([EXPERIMENT_KIND]))
        if EXPERIMENT_KIND[0] not in exp.tags:  # created by an older selm, or by hand
            c.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
        return exp.experiment_id


def start_run(
    recipe: Recipe,
    name: str,
    key: str,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    start_time: int | None = None,
) -> str:
    """The run tagged ``selm_key = key`` (nested under ``parent_run_id`` if given) and ``mlflow.source.git.commit``
    = ``code_version()``, with the resolved recipe and ``params`` as params: created the first time (``start_time``
    in ms since the epoch, default now), found again (and marked RUNNING, its params and commit as they were) when a
    resumed step asks a second time."""
    c = client()
    experiment = _experiment_id(c, recipe.tracking.mlflow_experiment)
    run_id = _run_by_key(c, experiment, key)
    if run_id:
        c.update_run(run_id, status="RUNNING")
        return run_id
    all_tags = {MLFLOW_RUN_NAME: name, KEY_TAG: key, MLFLOW_GIT_COMMIT: code_version(), **(tags or {})}
    if parent_run_id:
        all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    run = c.create_run(experiment, start_time=start_time, tags=all_tags)
    all_params = [mlflow.entities.Param(k, v[:6000]) for k, v in {**recipe.flat(), **(params or {})}.items()]
    c.log_batch(run.info.run_id, params=all_params)
    return run.info.run_id


def find_run(recipe: Recipe, key: str) -> str | None:
    """The id of the run tagged ``selm_key = key``, if there is one."""
    c = client()
    exp = c.get_experiment_by_name(recipe.tracking.mlflow_experiment)
    return _run_by_key(c, exp.experiment_id, key) if exp else None


def _run_by_key(c: MlflowClient, experiment_id: str, key: str) -> str | None:
    found = c.search_runs([experiment_id], f"tags.{KEY_TAG} = '{key}'", max_results=1)
    return found[0].info.run_id if found else None


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log numeric metrics (numpy's included) in one batch. A value that is not a number (a dict, a string, None,
    a bool) is a bug upstream: ``TypeError`` names it, where it used to be dropped and never reach MLflow."""
    wrong = {k: v for k, v in metrics.items() if not isinstance(v, numbers.Real) or isinstance(v, bool)}
    if wrong:
        raise TypeError(f"metrics must be numbers: {', '.join(f'{k}={v!r}' for k, v in wrong.items())}")
    _log_batch(run_id, [(k, v, step or 0) for k, v in metrics.items()])


def log_curves(run_id: str, steps: Iterable[Mapping[str, float]], prefix: str) -> None:
    """Per-step training curves: ``<prefix>/<name>`` at each step."""
    _log_batch(run_id, [(f"{prefix}/{k}", v, int(s["step"])) for s in steps for k, v in s.items() if k != "step"])


def log_metrics_once(run_id: str, metrics: Mapping[str, float], step: int) -> bool:
    """``log_metrics`` at ``step`` unless they were logged there already (a resumed step that logged them before
    it was killed): one batch is one database transaction, so one metric tells whether all were logged. True when
    this call logged them."""
    if metrics and any(m.step == step for m in client().get_metric_history(run_id, next(iter(metrics)))):
        return False
    log_metrics(run_id, metrics, step)
    return True


def _log_batch(run_id: str, rows: list[tuple[str, float, int]]) -> None:
    """(name, value, step) rows; MLflow splits them into requests of its maximum batch size itself."""
    now = int(time.time() * 1000)
    client().log_batch(run_id, metrics=[mlflow.entities.Metric(k, float(v), now, step) for k, v, step in rows])


def log_params(run_id: str, params: Mapping[str, str]) -> None:
    client().log_batch(run_id, params=[mlflow.entities.Param(k, str(v)[:6000]) for k, v in params.items()])


def log_records(run_id: str, records: list, name: str, artifact_path: str = "records") -> None:
    """Save records as ``<artifact_path>/<name>.jsonl`` artifacts of the run."""
    with tempfile.TemporaryDirectory() as d:
        client().log_artifact(run_id, str(write_jsonl(records, Path(d) / f"{name}.jsonl")), artifact_path)


def log_figure(run_id: str, fig, name: str) -> None:
    client().log_figure(run_id, fig, f"plots/{name}.png")


def log_dict(run_id: str, data: dict, name: str) -> None:
    client().log_text(run_id, json.dumps(data, indent=2, default=str), name)


def describe(reasons: Mapping[str, str]) -> str:
    """``name: why; name: why`` (or "none"): what did not run, as one tag value."""
    return "; ".join(f"{name}: {why}" for name, why in reasons.items()) or "none"


def log_table(run_id: str, rows: list[dict], name: str) -> None:
    """Rows (dicts with the same keys) as an MLflow table artifact ``name`` (a ``.json``), which the UI shows as a
    table."""
    if rows:
        client().log_table(run_id, {k: [r[k] for r in rows] for k in rows[0]}, name)


def describe_run(run_id: str, text: str) -> None:
    """The run's description (Markdown) in MLflow's UI."""
    client().set_tag(run_id, MLFLOW_RUN_NOTE, text)


def set_tags(run_id: str, tags: Mapping[str, str]) -> None:
    c = client()
    for k, v in tags.items():
        c.set_tag(run_id, k, v)


def finish_run(run_id: str, status: str = "FINISHED") -> None:
    """Close a run: FINISHED, FAILED or KILLED."""
    client().set_terminated(run_id, status)


def reopen(*run_ids: str | None) -> None:
    """Mark FAILED or KILLED runs RUNNING again: a resumed step continues them (a FINISHED run stays closed)."""
    c = client()
    for run_id in filter(None, run_ids):
        if c.get_run(run_id).info.status in ("FAILED", "KILLED"):
            c.update_run(run_id, status="RUNNING")


@contextmanager
def failed_on_error(*runs: str | Callable[[], str | None] | None):
    """Close ``runs`` (ids, or functions that find one) as FAILED if the block raises, KILLED on Ctrl-C / SIGTERM,
    and re-raise: a failed step never leaves its MLflow runs RUNNING. ``resume`` reopens them."""
    try:
        yield
    except BaseException as e:
        status = "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED"
        for run in runs:
            run_id = run() if callable(run) else run
            if run_id:
                finish_run(run_id, status)
        raise


def champion_scale(recipe: Recipe) -> str:
    """What makes ``tracking.champion_metric`` comparable between two versions: the metric, the world and its
    held-out set, the objective weights and the evaluation settings. Versions with different scales never compete."""
    definition = {
        "metric": recipe.tracking.champion_metric,
        "world": recipe.world.model_dump(exclude={"train_prompts_per_round"}),
        "weights": recipe.judge.weights,
        "eval": recipe.eval.model_dump(exclude={"batch_size"}),
        "max_new_tokens": recipe.sampling.max_new_tokens,
    }
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:12]


def experiment_alias(experiment_id: str, what: str) -> str:
    """A per-experiment alias (``selmflow-17954-round-2``): another experiment cannot overwrite it."""
    return f"{experiment_id.lower()}-{what}"


def prepare_registration() -> None:
    """Import what ``register_policy`` needs (torch, transformers, ``mlflow.transformers``: seconds), e.g. in a thread
    while the round it will register is still running."""
    import mlflow.transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401


def register_policy(
    run_id: str,
    policy_path: str,
    recipe: Recipe,
    round: int,
    metrics: Mapping[str, float],
    experiment_id: str,
    texts: Mapping[str, str] | None = None,
) -> dict:
    """Log the round's policy with ``mlflow.transformers`` and register it as a model version. ``texts`` may hold
    ``README.md`` (the model card) and ``LICENSE.txt`` (replacing the one ``mlflow.transformers`` writes for a local
    folder, which points at a hub page that does not exist), logged beside the model, and ``description``, the
    version's.

    Aliases: ``<experiment>-round-<k>``; ``<experiment>-champion``, the experiment's best version by
    ``tracking.champion_metric``; and ``champion``, the best version of the registered model among those on the
    same ``champion_scale`` (a version measured on another scale never displaces it). Idempotent: a version already
    registered from this run is reused (a resumed step does not register twice). Returns {name, version, champion}.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selm.storage import local_copy

    policy_path = local_copy(policy_path)  # a policy the round published to the experiment's store is fetched once
    c = client()
    name, metric = recipe.tracking.registered_model, recipe.tracking.champion_metric
    score = float(metrics.get(metric, float("-inf")))  # a round without the metric never becomes champion
    scale = champion_scale(recipe)
    existing = [v for v in c.search_model_versions(f"name='{name}'") if v.run_id == run_id]
    if existing:
        version = str(existing[0].version)
    else:
        with mlflow.start_run(run_id=run_id), _quiet():
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
            _log_model_texts(info.model_id, {k: v for k, v in (texts or {}).items() if k != "description"})
        version = str(info.registered_model_version)
    tags = {metric: str(score), "round": str(round), "selm_experiment": experiment_id, "champion_scale": scale}
    for k, v in tags.items():  # after a kill between registration and tagging, a resumed step completes them
        c.set_model_version_tag(name, version, k, v)
    if texts and "description" in texts:
        c.update_model_version(name, version, texts["description"])
    c.set_registered_model_alias(name, experiment_alias(experiment_id, f"round-{round}"), version)
    _move_alias_if_better(c, name, experiment_alias(experiment_id, CHAMPION), version, metric, score)
    champion = _move_alias_if_better(c, name, CHAMPION, version, metric, score, scale)
    return {"name": name, "version": version, "champion": champion}


def _log_model_texts(model_id: str, files: Mapping[str, str]) -> None:
    """Text files at the root of a logged model's artifacts (an existing one is replaced)."""
    with tempfile.TemporaryDirectory() as d:
        for filename, text in files.items():
            path = Path(d) / filename
            path.write_text(text)
            client().log_model_artifact(model_id, str(path))


@contextmanager
def _quiet():
    """Keep what saving a policy prints — transformers' load and save progress bars, MLflow's model-card and licence
    lookups for a local folder and its "Created version" lines, DeepSpeed's accelerator notice — out of the
    experiment's log (the round's line and card say what was registered); shown after all if the block fails."""
    out, mlflow_log = io.StringIO(), logging.getLogger("mlflow")
    level = mlflow_log.level
    mlflow_log.setLevel(logging.ERROR)  # its handler holds the real stderr: no redirection reaches it
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            yield
    except BaseException:
        sys.stderr.write(out.getvalue())
        raise
    finally:
        mlflow_log.setLevel(level)


def _move_alias_if_better(
    c: MlflowClient, name: str, alias: str, version: str, metric: str, score: float, scale: str | None = None
) -> bool:
    """Point ``alias`` at ``version`` if its ``score`` beats the current holder's (or there is none, or the holder
    is on another scale than ``scale`` — then it stays: scales never compete). True when ``version`` holds it."""
    try:
        holder = c.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        holder = None
    if holder is not None and scale is not None and holder.tags.get("champion_scale") != scale:
        return False
    if holder is None or str(holder.version) == version or score > float(holder.tags.get(metric, "-inf")):
        c.set_registered_model_alias(name, alias, version)
        return True
    return False
