"""lm-eval-harness offline tasks: local copies of the data under the official task definitions; the Python API on
the in-memory policy gives the same numbers as the ``lm_eval`` CLI on the same saved checkpoint."""

import json
import subprocess
import sys

import pytest
import yaml

from selm.benchmarks.lm_eval_suite import (
    EXPECTED_WARNINGS,
    LOCAL_TASKS,
    evaluate,
    flat_metrics,
    materialize,
    per_document,
)
from selm.data import data_dir

pytestmark = pytest.mark.skipif(
    not (data_dir() / "arc_challenge").exists(), reason=f"no evaluation data under {data_dir()}"
)


def test_local_tasks_keep_the_official_definitions(tmp_path):
    out = materialize(LOCAL_TASKS, tmp_path)
    for task, (official, splits, _) in LOCAL_TASKS.items():
        config = yaml.safe_load((out / f"{task}.yaml").read_text())
        assert config["include"].endswith(official) and config["dataset_path"] == "json"
        assert set(config["dataset_kwargs"]["data_files"]) == set(splits)
    first = lambda name: json.loads((out / name).read_text().splitlines()[0])  # noqa: E731
    arc = first("arc_challenge_local.test.jsonl")
    assert arc["choices"]["label"] == ["A", "B", "C", "D"] and arc["answerKey"] in "ABCD"
    assert not arc["question"].startswith("Question:")
    tqa = first("truthfulqa_mc1_local.validation.jsonl")
    assert tqa["mc1_targets"]["labels"][0] == 1 and sum(tqa["mc1_targets"]["labels"]) == 1
    assert sum(1 for _ in (out / "mmlu_local.test.jsonl").open()) == 14042
    assert sum(1 for _ in (out / "hellaswag_local.validation.jsonl").open()) == 10042


def test_python_api_on_the_in_memory_policy_matches_the_cli(tiny_policy, tiny_policy_dir, tmp_path):
    tasks = ["arc_challenge_local", "truthfulqa_mc2_local"]
    metrics, _ = evaluate(*tiny_policy, tasks, limit=24, work_dir=tmp_path / "api")
    assert set(metrics) >= {
        "lm_eval/arc_challenge_local_acc",
        "lm_eval/arc_challenge_local_acc_se",
        "lm_eval/arc_challenge_local_acc_norm",
        "lm_eval/truthfulqa_mc2_local_acc",
    }
    assert_cli_gives(metrics, tasks, 24, tiny_policy_dir, tmp_path)


def ifeval_docs() -> list[dict]:
    return [json.loads(line) for line in (data_dir() / "ifeval" / "input_data.jsonl").read_text().splitlines()]


def test_ifeval_checks_run_offline_on_every_official_prompt():
    """lm-eval's own IFEval scoring of all 541 prompts, including the checks that need nltk's punkt_tab data
    (sentence counting, word tokenizing), with the data written by selm — no download."""
    from selm.data import use_punkt_tab

    use_punkt_tab()
    from lm_eval.tasks.ifeval import utils

    docs = ifeval_docs()
    assert len(docs) == 541
    punkt_users = {"length_constraints:number_sentences", "change_case:capital_word_frequency"}
    assert sum(bool(punkt_users & set(d["instruction_id_list"])) for d in docs) > 0
    results = [utils.process_results(d, [d["prompt"]]) for d in docs]  # the prompt itself as the reply
    assert all(len(r["inst_level_strict_acc"]) == len(d["instruction_id_list"]) for r, d in zip(results, docs))
    two = {"key": 0, "prompt": "", "instruction_id_list": ["length_constraints:number_sentences"]}
    two["kwargs"] = [{"relation": "less than", "num_sentences": 3}]
    assert utils.process_results(two, ["Mr. Smith came at 5 p.m. on Jan. 5. He left."])["prompt_level_strict_acc"]
    assert not utils.process_results(two, ["One. Two. Three."])["prompt_level_strict_acc"]


def test_ifeval_local_python_api_matches_the_cli(tiny_policy, tiny_policy_dir, tmp_path, caplog):
    metrics, results = evaluate(*tiny_policy, ["ifeval_local"], limit=6, work_dir=tmp_path / "api", max_gen_toks=16)
    # lm-eval's warnings about what selm does on purpose stay out of the logs
    assert not [p for ps in EXPECTED_WARNINGS.values() for p in ps if p in caplog.text], caplog.text
    assert set(metrics) >= {f"lm_eval/ifeval_local_{m}" for m in ("prompt_level_loose_acc", "inst_level_strict_acc")}
    # each prompt's score, for paired comparisons: the prompt-level metrics (not the per-instruction lists), whose
    # mean is lm-eval's own number
    docs = per_document(results)
    assert set(docs) == {f"lm_eval/ifeval_local_prompt_level_{m}_acc" for m in ("strict", "loose")}
    for name, scores in docs.items():
        assert sorted(scores) == [str(i) for i in range(6)] and set(scores.values()) <= {0.0, 1.0}
        assert sum(scores.values()) / 6 == pytest.approx(metrics[name], abs=1e-12)
    extra = ["--gen_kwargs", "max_gen_toks=16", "--batch_size", "32"]  # the API's batch: the same padding
    assert_cli_gives(metrics, ["ifeval_local"], 6, tiny_policy_dir, tmp_path, *extra)


def assert_cli_gives(metrics: dict, tasks: list[str], limit: int, policy_dir, tmp_path, *extra: str) -> None:
    """The ``lm_eval`` command line on the saved policy gives ``metrics`` (the Python API's) to 1e-6."""
    include = materialize(tasks, tmp_path / "cli_tasks")
    cmd = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={policy_dir},dtype=float32"]
    cmd += ["--tasks", ",".join(tasks), "--include_path", str(include), "--limit", str(limit), *extra]
    cmd += ["--output_path", str(tmp_path / "cli_out"), "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)  # NLTK_DATA inherited
    assert proc.returncode == 0, proc.stderr[-3000:]
    [result_file] = (tmp_path / "cli_out").rglob("results_*.json")
    cli = flat_metrics(json.loads(result_file.read_text()))
    for key, value in metrics.items():
        assert cli[key] == pytest.approx(value, abs=1e-6), key
