"""The default experiment exactly as a new user runs it: ``python flows/selm_flow.py run``, no arguments.

Acceptance of the walking skeleton, in the newcomer's condition (a scratch folder, ``SELM_DATA_DIR`` unset, nothing
beside it, offline): three rounds of SELM on the tiny world complete on a CPU, the held-out reward after round 3
beats the SFT policy's by more than two standard errors (≥ 500 held-out prompts), on the combined reward and on
every objective, and the benchmarks whose data is absent are reported as skipped (log, card, MLflow), not crashed
on. With the data present, the same recipe runs its benchmarks: checked by the second experiment of
``test_flows_e2e.py::test_experiment_survives_a_kill_during_train_and_reruns_cleanly``.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, card_text

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


def test_default_experiment_on_a_fresh_machine_improves_every_objective(home, monkeypatch):  # noqa: F811
    import os

    from metaflow import Flow

    from selm import tracking

    monkeypatch.delenv("SELM_DATA_DIR", raising=False)
    assert not (home.parent / "shared").exists()  # nothing beside the scratch folder: ../shared/data is absent
    out = run_flow(home, env={k: v for k, v in os.environ.items() if k != "SELM_DATA_DIR"})

    run = Flow("SELMFlow").latest_run
    data = run["end"].task.data
    assert [r["round"] for r in data.rounds] == [0, 1, 2, 3]
    assert data.config.world.heldout_prompts >= 500
    report = {r["metric"]: r for r in data.improvement}
    print(json.dumps(report, indent=1))
    assert set(report) == {f"heldout_{n}" for n in ("reward", "correctness", "conciseness", "safety")}
    for metric, row in report.items():  # paired over the same held-out prompts
        assert row["n"] == data.config.world.heldout_prompts and row["z"] > 2, f"{metric} did not improve: {row}"
    for r in data.rounds[1:]:  # every round reports how far it moved from its reference, and how varied it sampled
        assert r["explore_kl"] > 2 * r["explore_kl_se"] > 0, r
        assert r["explore_y0_log_ratio"] < 0, r  # SELM's optimism term pushes the reference's greedy reply down
        assert (
            0 <= r["explore_win_over_y0"] <= 1 and 0 < r["explore_distinct_2"] <= 1 and r["explore_reward_spread"] > 0
        )
    assert "Exploration" in card_text(Flow("RoundFlow").latest_run["evaluate"].task)

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
    assert parent.data.metrics["time_initial_policy_s"] > 0  # the policy build's time reaches MLflow
    assert parent.data.params["resolved.sampling.dtype"] == "float32"  # the tiny recipe pins fp32 everywhere

    # quiet: a line per step and round, the skipped benchmarks and the final table — not progress bars
    lines = out.splitlines()
    print(f"{len(lines)} lines of output")
    assert len(lines) < 120 and "it/s]" not in out and "round 3: train" in out


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
    assert data.metrics["heldout_reward"] > 0
    assert not [k for k in data.metrics if any(b in k for b in ("mt_bench", "alpaca", "arc_", "truthfulqa"))]
