"""The default experiment exactly as a new user runs it: ``python flows/selm_flow.py run``, no arguments.

Acceptance of the walking skeleton, in the newcomer's condition (a scratch folder, ``SELM_DATA_DIR`` unset, nothing
beside it, offline): three rounds of SELM on the tiny world complete on a CPU, the held-out reward after round 3
beats the SFT policy's by more than two standard errors (≥ 500 held-out prompts), on the combined reward and on
every objective, and the benchmarks whose data is absent are reported as skipped (log, card, MLflow), not crashed
on. With the data present, the same recipe runs its benchmarks: checked by the second experiment of
``test_flows_e2e.py::test_two_experiments_started_together_in_a_new_folder_both_finish``.
"""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, card_text
from documented import NEWCOMER, SERVERS
from test_docs import shell_env

pytestmark = pytest.mark.slow
BENCHMARKS = ["mt_bench", "alpaca_eval", "lm_eval:arc_challenge_local", "lm_eval:truthfulqa_mc1_local"]


def run_flow(folder: Path, *args: str, env: dict, flow_file: str = "selm_flow.py") -> str:
    """``python flows/<flow_file> run <args>`` in ``folder``; asserts it succeeded and returns its whole output."""
    log = folder / "log.txt"
    with log.open("w") as f:
        rc = subprocess.run(
            [sys.executable, str(ROOT / "flows" / flow_file), "run", *args],
            cwd=folder,
            stdout=f,
            stderr=subprocess.STDOUT,
            timeout=1800,
            env=env,
        ).returncode
    out = log.read_text()
    assert rc == 0, out[-5000:]
    return out


def newcomer(folder: Path, command: str, env: dict, timeout: float = 1800) -> str:
    """A documented command as a reader types it, in ``folder`` laid out like a checkout (``flows/`` at its root);
    asserts it succeeded and returns its whole output."""
    return finished(*started(folder, command, env), timeout=timeout)


def started(folder: Path, command: str, env: dict) -> tuple[subprocess.Popen, Path]:
    """``newcomer``'s command started in the background; its output goes to a log beside it."""
    if not (folder / "flows").exists():
        (folder / "flows").symlink_to(ROOT / "flows")
    log = folder / f"{re.sub(r'[^A-Za-z0-9]+', '_', command)[:80]}.log"
    p = subprocess.Popen(command, shell=True, cwd=folder, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return p, log


def finished(p: subprocess.Popen, log: Path, timeout: float = 1800) -> str:
    """The whole output of a command ``started``, which must have succeeded."""
    rc = p.wait(timeout=timeout)
    out = log.read_text()
    assert rc == 0, f"{log.name}\n{out[-5000:]}"
    return out


def test_default_experiment_on_a_fresh_machine_improves_every_objective(home, monkeypatch):  # noqa: F811
    """The README's run, then the rest of a newcomer's first hour: resume, the cards, the MLflow UI and the card
    server, the champion loaded in Python, a DPO run and the comparison — each command as the docs show it. The DPO
    run starts beside the first, in the same new folder, as a user comparing two methods would start them."""
    from metaflow import Flow, Run

    from selm import tracking

    monkeypatch.delenv("SELM_DATA_DIR", raising=False)
    assert not (home.parent / "shared").exists()  # nothing beside the scratch folder: ../shared/data is absent
    env = {k: v for k, v in shell_env().items() if k != "SELM_DATA_DIR"}
    default, dpo = started(home, NEWCOMER[0], env), started(home, NEWCOMER[4], env)
    out = finished(*default)
    finished(*dpo)

    (run,) = [r for r in Flow("SELMFlow") if r["start"].task.data.config.experiment.name == "tiny-selm"]
    data = run["end"].task.data
    assert [r["round"] for r in data.rounds] == [0, 1, 2, 3]
    assert data.config.world.heldout_prompts >= 500
    report = {r["metric"]: r for r in data.improvement}
    print(json.dumps(report, indent=1))
    assert set(report) == {f"heldout/{n}" for n in ("reward", "correctness", "conciseness", "safety")}
    for metric, row in report.items():  # paired over the same held-out prompts
        assert row["n"] == data.config.world.heldout_prompts and row["z"] > 2, f"{metric} did not improve: {row}"
    for r in data.rounds[1:]:  # every round reports how far it moved from its reference, and how varied it sampled
        assert r["explore/kl"] > 2 * r["explore/kl_se"] > 0, r
        assert r["explore/y0_log_ratio"] < 0, r  # SELM's optimism term pushes the reference's greedy reply down
        assert (
            0 <= r["explore/win_over_y0"] <= 1 and 0 < r["explore/distinct_2"] <= 1 and r["explore/reward_spread"] > 0
        )
    assert "Exploration" in card_text(Run(data.round_runs[-1])["evaluate"].task)

    # the benchmarks without data were skipped, visibly: log, card, MLflow — and the recipe says they did not run
    assert sorted(data.skipped) == sorted(BENCHMARKS)
    for name in BENCHMARKS:
        assert f"skipped {name}: " in out
    assert "set SELM_DATA_DIR" in data.skipped["lm_eval:arc_challenge_local"]
    assert not data.config.eval.mt_bench.enabled and data.config.eval.lm_eval.tasks == []
    assert "Skipped benchmarks" in card_text(run["start"].task) and "arc_challenge_local" in card_text(
        run["start"].task
    )
    parent = tracking.client().get_run(run["start"].task.data.mlflow_run)
    assert "lm_eval:arc_challenge_local" in parent.data.tags["benchmarks_skipped"]
    assert parent.data.metrics["time/initial_policy_s"] > 0  # the policy build's time reaches MLflow
    assert parent.data.params["resolved.sampling.dtype"] == "float32"  # the tiny recipe pins fp32 everywhere

    # quiet: a line per stage and round, the skipped benchmarks, the final table, what to open next — no progress
    # bars, no third-party warnings
    lines = out.splitlines()
    print(f"{len(lines)} lines of output")
    assert len(lines) <= 60 and "it/s]" not in out and "round 3: train" in out
    assert "WARNING" not in out and "Warning" not in out, out
    assert "next:" in out and "mlflow ui --backend-store-uri sqlite:///mlflow.db" in out

    the_rest_of_a_newcomers_first_hour(home, env, parent.info.run_id)


def the_rest_of_a_newcomers_first_hour(home: Path, env: dict, parent_run_id: str) -> None:
    """What the README and docs/inspecting-runs.md tell a newcomer to do after the first runs, in that folder (the
    commands without a run id read the latest run: the DPO experiment's, started second)."""
    import json

    from metaflow import Flow

    from selm import tracking

    resume, card_get, card_list, _, compare = NEWCOMER[1:]
    said = newcomer(home, resume, env)
    assert "already finished" in said and "nothing to resume" in said, said
    newcomer(home, card_get, env)
    assert (home / "train.html").stat().st_size > 10_000  # the card: a page with its data inlined
    assert Flow("SELMFlow").latest_run.id in newcomer(home, card_list, env)
    for command, port in SERVERS.items():
        serving(home, command, port, env)
    assert "[" in python_snippet(home, env)

    # the MLflow run reads as the docs say: grouped names, descriptions, the pairs as text, a model card
    c = tracking.client()
    assert c.get_experiment_by_name("selm").tags["mlflow.experimentKind"] == "custom_model_development"
    parent = c.get_run(parent_run_id)
    rounds = c.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'")
    assert len(rounds) == 3
    for r in [parent, *rounds]:
        assert all("/" in k for k in r.data.metrics), sorted(k for k in r.data.metrics if "/" not in k)
        assert {"heldout/reward", "heldout/reward_se"} <= set(r.data.metrics)
    assert "heldout/reward" in parent.data.tags["mlflow.note.content"]  # descriptions: what it is, where to look
    assert all(f"Round {r.data.tags['round']} of" in r.data.tags["mlflow.note.content"] for r in rounds)
    groups = {k.split("/")[0] for k in rounds[0].data.metrics}
    assert groups == {"heldout", "samples", "select", "judge", "train", "explore", "time"}, groups
    pairs_file = c.download_artifacts(rounds[0].info.run_id, "records/pairs_text.json", str(home))
    pairs = json.loads(Path(pairs_file).read_text())
    assert pairs["columns"][:6] == ["prompt_id", "prompt", "chosen", "rejected", "chosen_reward", "rejected_reward"]
    assert len(pairs["data"]) == rounds[0].data.metrics["train/pairs"] and all(row[1] for row in pairs["data"])
    version = c.get_model_version_by_alias("tiny-selm-policy", "champion")
    assert "heldout/reward" in version.description
    from mlflow.artifacts import download_artifacts

    model = Path(download_artifacts(f"models:/tiny-selm-policy/{version.version}", dst_path=str(home / "model")))
    card, licence = (model / "README.md").read_text(), (model / "LICENSE.txt").read_text()
    assert "## Hyperparameters" in card and "| `heldout/reward` |" in card and "Apache-2.0" in licence
    assert "huggingface.co" not in card + licence

    # the two methods side by side
    table = newcomer(home, compare, env)
    assert "tiny-dpo" in table and "heldout/reward" in table
    assert (home / "comparison" / "heldout" / "reward.png").stat().st_size > 1000


def serving(home: Path, command: str, port: int, env: dict) -> None:
    """Start a documented server in ``home``, ask for its page, stop it (its whole process group)."""
    import os
    import signal

    from conftest import wait_for_http

    proc = subprocess.Popen(command, shell=True, cwd=home, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", proc, command, timeout=90)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def python_snippet(home: Path, env: dict) -> str:
    """The README's Python block that loads the champion, run as a script in ``home``; returns what it printed."""
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "@champion" in b)
    return newcomer(home, f"python -c {shlex.quote(block)}", env, timeout=300)


def test_a_round_runs_alone_for_debugging_on_a_fresh_machine(home, monkeypatch):  # noqa: F811
    """``python flows/round_flow.py run --round 1`` (RoundFlow's docstring): checks the recipe itself and skips the
    benchmarks whose data is absent, as SELMFlow does, instead of failing in evaluate."""
    import os

    from metaflow import Flow

    monkeypatch.delenv("SELM_DATA_DIR", raising=False)
    out = run_flow(home, "--round", "1", env=dict(os.environ), flow_file="round_flow.py")
    for name in BENCHMARKS:
        assert f"skipped {name}: " in out
    run = Flow("RoundFlow").latest_run
    assert "Skipped benchmarks" in card_text(run["start"].task)
    data = run["end"].task.data
    assert data.registered["version"] == "1" and Path(data.policy_out).is_dir()
    assert data.metrics["heldout/reward"] > 0
    assert not [k for k in data.metrics if any(b in k for b in ("mt_bench", "alpaca", "arc_", "truthfulqa"))]
