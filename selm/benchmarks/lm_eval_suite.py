"""lm-eval-harness tasks on the in-memory policy, through lm-eval's Python API.

Standard task names (``arc_challenge``, ``gsm8k``, ``mmlu`` …) load their data from the Hugging Face hub. For
machines without it, ``<task>_local`` tasks read the copies under ``$SELM_DATA_DIR``: each local file is converted
once into the schema of the hub data set, and the task's YAML *includes the official task definition*, overriding
only where the data come from — so prompts, answer choices, filters and metrics are lm-eval's own.

    arc_challenge_local  hellaswag_local  truthfulqa_mc1_local  truthfulqa_mc2_local  mmlu_local  gsm8k_local
    ifeval_local

Differences from the hub data: ARC has no original ids; HellaSwag is the already-preprocessed text (its context
is not re-capitalised); ``mmlu_local`` is one task over all 57 subjects' test questions (accuracy over questions,
as the ``mmlu`` group averages weighted by size), zero-shot.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from selm.data import data_dir


def _arc(path: Path) -> Iterable[dict]:
    for line in path.read_text().splitlines():
        r = json.loads(line)
        question = r["query"].removeprefix("Question:").strip().removesuffix("Answer:").strip()
        labels = "ABCDE"[: len(r["choices"])]
        yield {
            "question": question,
            "choices": {"text": r["choices"], "label": list(labels)},
            "answerKey": labels[r["gold"]],
        }


def _hellaswag(path: Path) -> Iterable[dict]:
    for line in path.read_text().splitlines():
        r = json.loads(line)
        label, _, ctx = r["query"].partition(": ")
        yield {"activity_label": label, "ctx_a": ctx, "ctx_b": "", "endings": r["endings"], "label": str(r["label"])}


def _truthfulqa(path: Path) -> Iterable[dict]:
    for r in json.loads(path.read_text()):
        yield {
            "question": r["question"],
            **{
                key: {"choices": list(r[key]), "labels": list(r[key].values())}
                for key in ("mc1_targets", "mc2_targets")
            },
        }


def _mmlu(folder: Path) -> Iterable[dict]:
    for f in sorted(folder.glob("*_test.csv")):
        subject = f.name.removesuffix("_test.csv")
        with f.open(newline="") as fh:
            for row in csv.reader(fh):
                yield {"question": row[0], "choices": row[1:5], "answer": "ABCD".index(row[5]), "subject": subject}


def _jsonl(path: Path) -> Iterable[dict]:
    for line in path.read_text().splitlines():
        if line.strip():
            yield json.loads(line)


#: local task → (official YAML under lm_eval/tasks, {split: (converter, source under the data dir)}, overrides)
LOCAL_TASKS: dict[str, tuple[str, dict[str, tuple[Callable, str]], dict]] = {
    "arc_challenge_local": (
        "arc/arc_easy.yaml",
        {"test": (_arc, "arc_challenge/arc_challenge_test_llmfoundry.jsonl")},
        {"training_split": None, "validation_split": None, "test_split": "test"},
    ),
    "hellaswag_local": (
        "hellaswag/hellaswag.yaml",
        {"validation": (_hellaswag, "hellaswag/hellaswag_val_10042.jsonl")},
        {"training_split": None, "validation_split": "validation"},
    ),
    "truthfulqa_mc1_local": (
        "truthfulqa/truthfulqa_mc1.yaml",
        {"validation": (_truthfulqa, "truthfulqa/mc_task_v1_817.json")},
        {},
    ),
    "truthfulqa_mc2_local": (
        "truthfulqa/truthfulqa_mc2.yaml",
        {"validation": (_truthfulqa, "truthfulqa/mc_task_v1_817.json")},
        {},
    ),
    "mmlu_local": (
        "mmlu/default/_default_template_yaml",
        {"test": (_mmlu, "mmlu/test")},
        {"test_split": "test", "fewshot_split": None, "num_fewshot": 0},
    ),
    "gsm8k_local": (
        "gsm8k/gsm8k.yaml",
        {"train": (_jsonl, "gsm8k/train.jsonl"), "test": (_jsonl, "gsm8k/test.jsonl")},
        {},
    ),
    # the official 541 prompts (google-research's input_data.jsonl, the hub set's "train" split), scored by lm-eval's
    # own IFEval checks; nltk's punkt_tab data comes from selm.data.use_punkt_tab (no download)
    "ifeval_local": ("ifeval/ifeval.yaml", {"train": (_jsonl, "ifeval/input_data.jsonl")}, {}),
}


def missing_data(task: str) -> str | None:
    """Why the ``*_local`` task ``task`` cannot read its data under $SELM_DATA_DIR, or None when it can."""
    for _, source in LOCAL_TASKS[task][1].values():
        if not (data_dir() / source).exists():
            return f"{task} needs {data_dir() / source}, not found: set SELM_DATA_DIR to the folder holding {source}"
    return None


def materialize(tasks: Iterable[str], out_dir: str | Path) -> Path:
    """Write the converted data and the YAML of each ``*_local`` task in ``tasks`` into ``out_dir``; returns it
    (pass it to lm-eval as ``include_path`` / ``--include_path``)."""
    import lm_eval

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    official_root = Path(lm_eval.__file__).parent / "tasks"
    for task in tasks:
        if task not in LOCAL_TASKS:
            continue
        missing = missing_data(task)
        if missing:
            raise FileNotFoundError(missing)
        official, splits, overrides = LOCAL_TASKS[task]
        files = {}
        for split, (convert, source) in splits.items():
            src = data_dir() / source
            target = out / f"{task}.{split}.jsonl"
            with target.open("w") as f:
                for record in convert(src):
                    f.write(json.dumps(record) + "\n")
            files[split] = str(target)  # absolute: lm-eval resolves data_files against the working directory
        config = {
            "include": str(official_root / official),
            "task": task,
            "tag": [],
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": files},
            **overrides,
        }
        (out / f"{task}.yaml").write_text(json.dumps(config, indent=1))  # JSON is YAML
    return out


def evaluate(
    model,
    tokenizer,
    tasks: list[str],
    limit: int | None,
    work_dir: str | Path,
    batch_size: int = 32,
    apply_chat_template: bool = False,
    max_gen_toks: int | None = None,
):
    """lm-eval's ``simple_evaluate`` on the in-memory model: {lm_eval/<task>_<metric>: value} and the raw results
    (with each document's scores under ``samples``: see ``per_document``).

    ``apply_chat_template`` renders each prompt with the tokenizer's chat template (an instruction-tuned policy);
    ``max_gen_toks`` caps generation tasks' reply length (IFEval's own is 1280 tokens)."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from selm.data import use_punkt_tab

    use_punkt_tab()  # before lm-eval imports its IFEval code, which looks for the data (and tries to download it)
    _drop_expected_warnings()
    include = materialize(tasks, work_dir)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    results = simple_evaluate(
        model=lm,
        tasks=list(tasks),
        limit=limit,
        task_manager=TaskManager(include_path=str(include)),
        log_samples=True,  # per-document scores: paired comparisons of two policies on the same prompts
        apply_chat_template=apply_chat_template,
        gen_kwargs=f"max_gen_toks={max_gen_toks}" if max_gen_toks else None,
    )
    return flat_metrics(results), results


# What lm-eval warns about on every call and selm does on purpose: an in-memory model, a reply-length cap.
EXPECTED_WARNINGS = {
    "lm_eval.models.huggingface": ("`pretrained` model kwarg is not of type", "Passed an already-initialized model"),
    "lm_eval.evaluator": ("generation_kwargs: ",),
}


class _DropExpected(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def _drop_expected_warnings() -> None:
    """Keep ``EXPECTED_WARNINGS`` out of the logs (once per process); every other lm-eval warning still shows."""
    for name, prefixes in EXPECTED_WARNINGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropExpected) for f in logger.filters):
            logger.addFilter(_DropExpected(prefixes))


def metric_name(task: str, metric: str, filt: str) -> str:
    """lm-eval's (task, metric, filter) as one MLflow-friendly name: lm_eval/<task>_[<filter>_]<metric>."""
    name = f"lm_eval/{task}_" + (metric if filt == "none" else f"{filt}_{metric}")
    return name.replace("-", "_")


def per_document(results: dict) -> dict[str, dict[str, float]]:
    """Each document's score on every per-document scalar metric (accuracy-like; IFEval's ``prompt_level_*``, not
    its per-instruction lists): {lm_eval/<task>_<metric>: {doc_id: value}}, from ``simple_evaluate(log_samples=True)``.
    """
    out: dict[str, dict[str, float]] = {}
    for task, samples in results.get("samples", {}).items():
        filters = {key.partition(",")[2] for key in results["results"].get(task, {}) if "," in key}
        for s in samples:
            filt = s.get("filter", "none")
            for metric in s.get("metrics", []):
                value = s.get(metric)
                if isinstance(value, (bool, int, float)) and filt in filters:
                    out.setdefault(metric_name(task, metric, filt), {})[str(s["doc_id"])] = float(value)
    return out


def flat_metrics(results: dict) -> dict[str, float]:
    """lm-eval's {task: {"acc,none": v, "acc_stderr,none": se}} as {lm_eval/<task>_acc: v, …_acc_se: se}."""
    metrics = {}
    for task, values in results["results"].items():
        for key, value in values.items():
            metric, _, filt = key.partition(",")
            if not isinstance(value, (int, float)) or not filt:
                continue
            metric = metric.replace("_stderr", "") + ("_se" if metric.endswith("_stderr") else "")
            metrics[metric_name(task, metric, filt)] = float(value)
    return metrics
