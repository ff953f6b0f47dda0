"""Preflight: everything a recipe and the environment name, checked in seconds before any expensive work.

``check`` runs before the policy is built, before a reply is sampled and before any MLflow run is created. It
collects every problem (user name, model folders and hub ids, the prompts file, LLM judge templates, keys and
endpoints, the output folder, the MLflow store, benchmark data and lm-eval task names, and what the recipe's world
checks itself) and raises one ``RecipeError``
listing them, one line each, key first. Benchmarks whose data is absent are dropped from the recipe to run and
reported in ``skipped`` with what to set, unless the recipe marks them ``required``. Every network probe waits at
most ``probe_timeout_s`` per connect and read, and no message ever holds a secret (keys, credentials in URLs).
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import requests

from selm import worlds
from selm.config import LLMJudgeConfig, Recipe, RecipeError, recipe_from_dict
from selm.data import resolve
from selm.pipeline.components import objective_weights


@dataclass(frozen=True)
class Preflight:
    recipe: Recipe  # the recipe to run: benchmarks whose data is absent (and not required) disabled
    skipped: dict[str, str]  # benchmark name ("mt_bench", "alpaca_eval", "lm_eval:<task>") -> why, and what to set


def check(recipe: Recipe, probe_timeout_s: float = 5.0) -> Preflight:
    """The recipe to run and the benchmarks skipped; raises ``RecipeError`` whose message lists EVERY problem found
    (one line each, key first), never a secret."""
    t = probe_timeout_s
    problems = user_name() + _model("policy.init", recipe.policy.init, t)
    if recipe.judge.backend == "reward_model":
        problems += _model("judge.reward_model", recipe.judge.reward_model, t)
    world_problems, weights = _world(recipe)
    problems += world_problems + _output_dir(recipe) + _mlflow(t)
    if recipe.judge.backend == "llm":
        problems += _llm_judge("judge.llm", recipe.judge.llm, t, check_template=True)
    data, skipped, bench_problems = _benchmarks(recipe, t)
    problems += bench_problems
    data["judge"]["weights"] = weights  # the world's defaults written out: the run's parameters show them
    graded = data["eval"]["mt_bench"]["enabled"] or data["eval"]["alpaca_eval"]["enabled"]
    if graded and recipe.eval.judge.backend == "llm":
        # the graders use the benchmarks' official prompts (checked with the data), not eval.judge.llm.template
        problems += _llm_judge("eval.judge.llm", recipe.eval.judge.llm, t, check_template=False)
    if problems:
        lines = "\n".join("  " + p.replace("\n", " ") for p in problems)
        raise RecipeError(f"preflight found {len(problems)} problem(s); nothing has run yet:\n{lines}")
    return Preflight(recipe_from_dict(data, "(preflight)"), skipped)


# ---------------------------------------------------------------- environment and models


def user_name() -> list[str]:
    """Metaflow refuses to run without a user name other than root ("Unknown user"); asked of Metaflow's own rule
    (``METAFLOW_USER``, ``SUDO_USER``, ``USERNAME``, ``USER``: the first set and not "root")."""
    from metaflow.util import get_username

    if get_username():
        return []
    if "root" in (os.environ.get("USERNAME"), os.environ.get("USER")):
        return ["USERNAME: Metaflow does not accept the user name 'root': export USERNAME=<any other name>"]
    return ["USERNAME: neither USERNAME nor USER is set, and Metaflow needs a user name: export USERNAME=$(whoami)"]


def _model(key: str, value: str, t: float) -> list[str]:
    """A model a world builds (named like the world, "tiny") is built locally, a packaged GGUF model is imported (its
    package must be installed); a model folder must hold config.json;
    a hub id must be in the local Hugging Face cache or, online, known to the hub (asked within ``t`` s)."""
    from selm.models.loading import PACKAGED_GGUF, packaged_gguf  # torch: imported only where a model is named

    path = Path(value).expanduser()
    if value in PACKAGED_GGUF:
        try:
            packaged_gguf(value)
        except FileNotFoundError as e:
            return [f"{key} = {value!r}: {e}"]
        return []
    if worlds.builds(value) or (path.is_dir() and (path / "config.json").is_file()):
        return []
    if path.exists():
        return [f"{key} = {value!r}: {path} holds no config.json (not a saved Hugging Face model folder)"]
    from huggingface_hub import try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(value, "config.json"), str):
            return []
    except ValueError:  # not a valid repo id either (HFValidationError): a path that does not exist
        return [f"{key} = {value!r}: no such folder"]
    offline = _offline("HF_HUB_OFFLINE")
    if offline:
        return [f"{key} = {value!r}: no such folder, and not in the Hugging Face cache (offline: {offline})"]
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(value, timeout=t)
    except GatedRepoError:
        return [f"{key} = {value!r}: gated on the Hugging Face hub: set HF_TOKEN to an account that accepted its terms"]
    except RepositoryNotFoundError:
        return [f"{key} = {value!r}: no such folder, and the Hugging Face hub has no model of that name"]
    except Exception as e:  # any transport failure means the same thing here: the hub cannot be relied on
        return [
            f"{key} = {value!r}: no such folder, not in the Hugging Face cache, and the hub did not answer "
            f"within {t:g} s ({_why(e)}); set HF_HUB_OFFLINE=1 and use a local folder"
        ]
    return []


def _offline(*names: str) -> str:
    """ "NAME=value" of the first of ``names`` set to a true value (as huggingface_hub reads them), else ""."""
    for name in names:
        if os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return f"{name}={os.environ[name]}"
    return ""


# ---------------------------------------------------------------- prompts, folders, MLflow


def _world(recipe: Recipe) -> tuple[list[str], dict[str, float]]:
    """The world exists and finds its section and data sound; its rule judges exist where the recipe uses them, and
    ``judge.weights`` names only its objectives. Returns (problems, the weights to run with)."""
    try:
        world = worlds.of(recipe)
    except KeyError as e:
        return [e.args[0]], dict(recipe.judge.weights)
    out = world.check(recipe)
    if recipe.judge.backend == "rules" and not world.objectives:
        out.append(
            f"judge.backend = 'rules': world {world.name!r} has no rule judges; choose a reward_model, embedding or "
            "llm judge"
        )
    unknown = sorted(set(recipe.judge.weights) - set(world.objectives))
    if unknown and world.objectives:
        out.append(
            f"judge.weights: {', '.join(unknown)} not objectives of world {world.name!r} "
            f"({', '.join(world.objectives)})"
        )
    return out, objective_weights(recipe)


def _output_dir(recipe: Recipe) -> list[str]:
    """Checkpoints and round records go there: writable now, not found out after round 1."""
    value = recipe.experiment.output_dir
    why = _not_writable(Path(value).expanduser())
    return [f"experiment.output_dir = {value!r} is not writable: {why}"] if why else []


def _not_writable(folder: Path) -> str | None:
    """Why ``folder`` (or, when it does not exist yet, the nearest folder above it, where it would be created)
    cannot be written to, or None; creates nothing and leaves nothing behind."""
    existing = next((p for p in [folder, *folder.resolve().parents] if p.exists()), None)
    if existing is None or not existing.is_dir():
        return f"{existing} is a file, not a folder"
    probe = existing / f".selm-preflight-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        return f"{e.strerror or e} ({existing})"
    return None


def _mlflow(t: float) -> list[str]:
    """An http(s) tracking server must answer /health; a sqlite store (the default: ./mlflow.db) needs a writable
    folder. Checked without importing mlflow, which alone takes seconds."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith(("http://", "https://")):
        shown = _redact(uri)
        try:
            r = requests.get(uri.rstrip("/") + "/health", timeout=t)
        except requests.RequestException as e:
            return [
                f"MLFLOW_TRACKING_URI={shown}: no MLflow server answered within {t:g} s ({_why(e)}); "
                "start it (infra/mlflow_server.sh) or unset the variable"
            ]
        if not r.ok:
            return [f"MLFLOW_TRACKING_URI={shown}: {shown}/health answered HTTP {r.status_code}, not MLflow's OK"]
        return []
    if uri and not uri.startswith("sqlite:///"):
        return []  # other stores (databricks, a file store) are MLflow's own business
    db = Path(uri.removeprefix("sqlite:///")) if uri else Path.cwd() / "mlflow.db"
    # MLflow creates the database file, not its folder
    why = f"No such file or directory ({db.parent})" if not db.parent.exists() else _not_writable(db.parent)
    name = f"MLFLOW_TRACKING_URI={uri}" if uri else f"MLFLOW_TRACKING_URI (unset: sqlite:///{db})"
    return [f"{name}: the folder of the database is not writable: {why}"] if why else []


# ---------------------------------------------------------------- LLM judges


def _llm_judge(prefix: str, c: LLMJudgeConfig, t: float, check_template: bool) -> list[str]:
    """The template loads, the API key variable is set, and something answers at the endpoint and takes the key.
    Model "tiny" needs nothing more: it is the tiny judge LM served locally."""
    out = _template(prefix, c.template, t) if check_template else []
    key = os.environ.get(c.api_key_env) if c.api_key_env else None
    if c.api_key_env and not key:
        out.append(
            f"{prefix}.api_key_env = {c.api_key_env!r}: the environment variable {c.api_key_env} (the API "
            "key) is not set"
        )
    url = _redact(c.base_url.rstrip("/"))
    try:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        r = requests.get(c.base_url.rstrip("/") + "/models", headers=headers, timeout=t)
    except requests.ConnectTimeout:  # before ReadTimeout / ConnectionError: it is a subclass of both families
        return out + [f"{prefix}.base_url = {url!r}: {url} did not accept a connection within {t:g} s"]
    except requests.Timeout:
        return out + [f"{prefix}.base_url = {url!r}: {url} accepted the connection but did not answer within {t:g} s"]
    except requests.ConnectionError as e:
        why = _why(e)
        where = f"nothing listens at {url}" if why == "connection refused" else f"cannot reach {url}"
        return out + [f"{prefix}.base_url = {url!r}: {where} ({why})"]
    except requests.RequestException as e:
        return out + [f"{prefix}.base_url = {url!r}: not a usable URL ({type(e).__name__})"]
    if r.status_code in (401, 403) and key:
        out.append(
            f"{prefix}.api_key_env = {c.api_key_env!r}: the endpoint refused the key in ${c.api_key_env} "
            f"(HTTP {r.status_code} from {url}/models)"
        )
    elif r.status_code in (401, 403) and not c.api_key_env:
        out.append(
            f"{prefix}.api_key_env: {url} wants an API key (HTTP {r.status_code}); set it to the NAME of "
            "the environment variable that holds the key"
        )
    return out  # any other answer, even 404, means a server listens: the judge calls will tell the rest


def _template(prefix: str, spec: str, t: float) -> list[str]:
    """The judge template loads; an ``mt_bench:`` one first has its prompts file resolved within the probe time."""
    from selm.judges.llm import load_template

    try:
        if spec.startswith("mt_bench:"):
            resolve("mt_bench/judge_prompts.jsonl", timeout=t)  # cached afterwards: load_template won't wait 60 s
        load_template(spec)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [f"{prefix}.template = {spec!r}: {e}"]
    return []


# ---------------------------------------------------------------- benchmarks


def _benchmarks(recipe: Recipe, t: float) -> tuple[dict, dict[str, str], list[str]]:
    """(the recipe as a dict with unavailable optional benchmarks disabled, skipped, problems)."""
    data, skipped, problems = recipe.model_dump(), {}, []
    for name in ("mt_bench", "alpaca_eval"):
        c = getattr(recipe.eval, name)
        if not c.enabled:
            continue
        files = _benchmark_files(recipe, name)
        # an explicit path the user typed must exist: a typo is an error, never a silent skip
        bad = [f"{key} = {p!r}: no such file" for _, p, key in files if p and not Path(p).expanduser().is_file()]
        why = None if bad else _unavailable(files, t)
        problems += bad
        if why and c.required:
            problems.append(f"eval.{name}.required = true, but {why}")
        elif why:
            skipped[name] = why
            data["eval"][name]["enabled"] = False
    c = recipe.eval.lm_eval
    for task in c.tasks:
        why, error = _lm_eval_task(task)
        if error:
            problems.append(f"eval.lm_eval.tasks: {error}")
        elif why and c.required:
            problems.append(f"eval.lm_eval.tasks: {why} (eval.lm_eval.required = true)")
        elif why:
            skipped[f"lm_eval:{task}"] = why
            data["eval"]["lm_eval"]["tasks"].remove(task)
    return data, skipped, problems


def _benchmark_files(recipe: Recipe, name: str) -> list[tuple[str, str, str]]:
    """The files benchmark ``name`` reads, as (path under the data dir, explicit path or "", its recipe key or "").
    Mirrors ``selm.pipeline.evaluate.benchmarks``: MT-Bench reads its reference answers whoever grades; only an LLM
    grader reads the judge prompts."""
    from selm.benchmarks.alpaca_eval import BASELINE, JUDGE_PROMPT

    llm = recipe.eval.judge.backend == "llm"
    if name == "mt_bench":
        m = recipe.eval.mt_bench
        files = [
            ("mt_bench/question.jsonl", m.questions, "eval.mt_bench.questions"),
            ("mt_bench/reference_answer_gpt-4.jsonl", m.references, "eval.mt_bench.references"),
        ]
        return files + ([("mt_bench/judge_prompts.jsonl", "", "")] if llm else [])
    a = recipe.eval.alpaca_eval
    files = [(BASELINE, a.baseline_outputs, "eval.alpaca_eval.baseline_outputs")]
    return files + ([(JUDGE_PROMPT, a.judge_prompt, "eval.alpaca_eval.judge_prompt")] if llm else [])


def _unavailable(files: list[tuple[str, str, str]], t: float) -> str | None:
    """Why the first file without an explicit path is neither under $SELM_DATA_DIR, nor in the download cache, nor
    fetched from its official source within ``t`` s (a fetched file is cached for the run); None if all are."""
    for relative, explicit, key in files:
        if explicit:
            continue
        try:
            resolve(relative, timeout=t)
        except FileNotFoundError as e:
            return f"{e}" + (f" as {key}" if key else "")  # resolve's message ends "pass the file's path"
    return None


def _lm_eval_task(task: str) -> tuple[str | None, str | None]:
    """(why the task cannot run here, or None; an error for a name lm-eval does not know, or None)."""
    from selm.benchmarks.lm_eval_suite import LOCAL_TASKS, missing_data

    if task.endswith("_local") or task in LOCAL_TASKS:
        if task not in LOCAL_TASKS:
            return None, f"unknown local task {task!r}; local tasks are {', '.join(LOCAL_TASKS)}"
        return missing_data(task), None
    names = _lm_eval_names()
    if task not in names:
        close = difflib.get_close_matches(task, [*LOCAL_TASKS, *names], n=5)
        return None, f"unknown lm-eval task {task!r}" + (f"; close: {', '.join(close)}" if close else "")
    offline = _offline("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    if offline:
        local = f", or use {task}_local (reads $SELM_DATA_DIR)" if f"{task}_local" in LOCAL_TASKS else ""
        return f"{task} needs the Hugging Face hub; {offline}: unset it on a machine with the hub{local}", None
    return None, None


@functools.cache
def _lm_eval_names() -> tuple[str, ...]:
    """Every task, group and tag lm-eval knows (building the index takes ~10 s: once per process, only if needed)."""
    from lm_eval.tasks import TaskManager

    return tuple(TaskManager().all_tasks)


# ---------------------------------------------------------------- message helpers


def _why(e: Exception) -> str:
    """A short cause of a transport failure, without the long URL-laden text of requests / httpx."""
    text = str(e)
    if "refused" in text.lower():
        return "connection refused"
    if "resolve" in text or "Name or service not known" in text:
        return "the host name does not resolve"
    return type(e).__name__


def _redact(url: str) -> str:
    """``url`` without credentials (``scheme://user:password@host`` → ``scheme://***@host``)."""
    return re.sub(r"(?<=://)[^/@]+@", "***@", url)
