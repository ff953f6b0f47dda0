"""The default experiment exactly as a new user runs it: ``python flows/selm_flow.py run``, no arguments.

Acceptance of the walking skeleton: three rounds of SELM on the tiny world complete on a CPU, and the held-out
reward after round 3 beats the SFT policy's by more than two standard errors (≥ 500 held-out prompts), on the
combined reward and on every objective.
"""

import json
import subprocess
import sys

import pytest
from test_flows_e2e import home  # noqa: F401  (fixture)

from conftest import ROOT

pytestmark = pytest.mark.slow


def test_default_experiment_improves_every_objective(home):  # noqa: F811
    from metaflow import Flow

    log = home / "log.txt"
    with log.open("w") as f:
        rc = subprocess.run(
            [sys.executable, str(ROOT / "flows" / "selm_flow.py"), "run"],
            cwd=home,
            stdout=f,
            stderr=subprocess.STDOUT,
            timeout=1800,
        ).returncode
    assert rc == 0, log.read_text()[-5000:]
    run = Flow("SELMFlow").latest_run
    data = run["end"].task.data
    assert [r["round"] for r in data.rounds] == [0, 1, 2, 3]
    assert data.config.world.heldout_prompts >= 500
    report = {r["objective"]: r for r in data.improvement}
    print(json.dumps(report, indent=1))
    for objective, row in report.items():
        assert row["z"] > 2, f"{objective} did not improve by more than 2 SE: {row}"

    # the evaluation suite ran on every round, graded offline by the proxy (and says so in its metric names)
    for r in data.rounds:
        assert (
            1 <= r["mt_bench_proxy_score"] <= 10 and r["mt_bench_proxy_graded_turns"] == 32
        )  # 2 questions × 8 categories × 2 turns
        assert 0 <= r["alpaca_eval_proxy_win_rate"] <= 100 and r["alpaca_eval_proxy_judged"] == 40
        assert 0 <= r["lm_eval_arc_challenge_local_acc"] <= 1 and 0 <= r["lm_eval_truthfulqa_mc1_local_acc"] <= 1
