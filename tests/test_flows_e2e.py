"""Both flows end to end, for real: Metaflow local runs, MLflow on sqlite, the tiny policy on CPU, a reduced recipe
(fewer prompts, a quickly built policy).

Here: two experiments started together in a new folder (one of them APL with LSC, two training processes and the
benchmarks), a kill -9 in SELMFlow's start and a SIGTERM in a round followed by ``resume``, a bad recipe refused
before any work. A kill during a round's training and a ``resume`` from another folder, with every task on its own
disk: ``tests/test_cluster.py``; the full default run as a newcomer types it: ``tests/test_default_run.py``; a kill
at each of ten points: ``tests/test_kill_matrix.py`` (not in the default run).
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import QUICK_BUILD, ROOT, SHARED_DATA

pytestmark = pytest.mark.slow

SELM_FLOW = str(ROOT / "flows" / "selm_flow.py")
BENCHMARKS_OFF = "eval.mt_bench.enabled=false eval.alpaca_eval.enabled=false eval.lm_eval.tasks=[]"
REDUCED = " ".join(
    ["experiment.rounds=2", "world.train_prompts_per_round=128", "world.heldout_prompts=64", BENCHMARKS_OFF]
    + [f"policy.tiny.{k}={v}" for k, v in QUICK_BUILD.items()]
)


def flow(*args, cwd, log: Path, wait=True):
    f = log.open("a")
    p = subprocess.Popen(
        [sys.executable, SELM_FLOW, *args],
        cwd=cwd,
        stdout=f,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=os.environ.copy(),
    )
    if wait:
        assert p.wait(timeout=900) == 0, log.read_text()[-5000:]
    return p


def step_cards(task) -> list:
    """The task's own cards (not a ``--with card`` probe's)."""
    from metaflow.cards import get_cards

    return [c for c in get_cards(task) if not (c.id or "").startswith("probe_")]


def wait_for(pattern: str, log: Path, p, timeout=600) -> None:
    """Wait until ``pattern`` appears in ``log``; fail if ``p`` ends first."""
    deadline = time.time() + timeout
    while pattern not in log.read_text():
        if p.poll() is not None or time.time() > deadline:
            pytest.fail(f"never saw {pattern!r}:\n" + log.read_text()[-5000:])
        time.sleep(0.2)


def kill(p) -> None:
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


#: one round on fewer prompts: the tests that use it are about processes, not about the numbers' precision
ONE_ROUND = REDUCED.replace("experiment.rounds=2", "experiment.rounds=1").replace(
    "world.train_prompts_per_round=128", "world.train_prompts_per_round=64"
)


def processes_in(folder: Path) -> list[int]:
    """Pids of the processes other than this one whose working directory is ``folder`` (a flow's runtime, its
    tasks, a round's run)."""
    pids = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if cwd.resolve() == folder.resolve() and int(cwd.parent.name) != os.getpid():
                pids.append(int(cwd.parent.name))
        except OSError:
            pass
    return pids


def test_kill_in_start_sigterm_in_a_round_and_resume_continue_the_same_experiment_once(home, tiny_policy_dir):
    """kill -9 in SELMFlow's start after the MLflow parent run was opened and round 0 logged; `resume`; a second
    `resume` typed while that one runs is refused; SIGTERM to the running one stops every process it started and
    closes its MLflow runs (FAILED or KILLED, whichever process saw the stop first); `resume` finishes; a last
    `resume` finds the experiment finished. In the end: one experiment, one parent run, one round, one registered
    version, round 0 logged once, nothing left RUNNING."""
    from metaflow import Flow

    from selm import tracking

    run_log, resume_log = home / "run.txt", home / "resume.txt"
    p = flow("run", "--overrides", ONE_ROUND, cwd=home, log=run_log, wait=False)
    wait_for("round 0 (initial policy)", run_log, p)
    kill(p)
    experiment = f"SELMFlow-{Flow('SELMFlow').latest_run.id}"

    p = flow("resume", cwd=home, log=resume_log, wait=False)
    wait_for("round 1: select", resume_log, p)
    busy = subprocess.run([sys.executable, SELM_FLOW, "resume"], cwd=home, capture_output=True, text=True)
    assert busy.returncode == 1 and f"experiment {experiment} is still running" in busy.stdout + busy.stderr

    c = tracking.client()
    p.send_signal(signal.SIGTERM)  # to the runtime only, as `kill PID` or a scheduler would send it
    assert p.wait(timeout=120) != 0
    assert "stopped by SIGTERM" in resume_log.read_text() and "resume" in resume_log.read_text()
    time.sleep(3)
    assert processes_in(home) == [], "a process of the stopped experiment is still running"
    runs = c.search_runs([c.get_experiment_by_name("selm").experiment_id])
    # the round's own run is opened when the finished round is logged: so far only the experiment's, closed
    assert [r.data.tags["selm_key"] for r in runs] == [experiment]
    assert all(r.info.status in ("KILLED", "FAILED") for r in runs)  # closed: the round stopped under it

    flow("resume", cwd=home, log=resume_log)
    done = subprocess.run([sys.executable, SELM_FLOW, "resume"], cwd=home, capture_output=True, text=True)
    assert done.returncode == 0 and "already finished" in done.stdout

    runs = c.search_runs([c.get_experiment_by_name("selm").experiment_id])
    assert sorted(r.data.tags["selm_key"] for r in runs) == [experiment, f"{experiment}/round-1"]
    assert all(r.info.status == "FINISHED" for r in runs)
    parent = next(r for r in runs if r.data.tags["selm_key"] == experiment).info.run_id
    assert [m.step for m in c.get_metric_history(parent, "heldout/reward")] == [0, 1]
    assert len(c.search_model_versions("name='tiny-selm-policy'")) == 1
    assert len(list(Flow("RoundFlow").runs(f"selm_experiment:{experiment}"))) == 2  # the stopped one, the resumed


def test_bad_recipe_fails_before_any_work(home):
    tmp_path = home
    log = tmp_path / "log.txt"
    p = flow("run", "--overrides", "train.lr_rate=0.1", cwd=tmp_path, log=log, wait=False)
    assert p.wait(timeout=300) != 0
    out = log.read_text()
    assert "train.lr_rate: unknown key" in out and "Nothing was started" in out
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / ".metaflow").exists()


def test_two_experiments_started_together_in_a_new_folder_both_finish(home, tiny_policy_dir, capsys, monkeypatch):
    """Same new folder, same moment, same registered model: no .metaflow or mlflow.db yet. One experiment is plain;
    the other spends a label budget (APL), ranks by LSC, trains with two torchrun processes inside its Metaflow step,
    sizes the round's @resources and, with the data present, runs the default recipe's benchmarks. Both create the
    stores race-free; each gets its own parent run, round run, registered version and aliases; every step of both
    flows has its card, rendered once; the two compare side by side, as a user compares methods."""
    from metaflow import Flow, Run
    from metaflow.cards import get_cards

    from evals import compare
    from selm import tracking
    from selm.orchestration import STEP_CARD

    apl = ONE_ROUND.replace(BENCHMARKS_OFF, "")  # benchmarks on
    apl += " select.acquisition=hybrid select.label_budget=24 select.hybrid_factor=2 judge.combine=lsc"
    apl += " train.processes=2"  # its train step runs two torchrun processes (DDP over gloo) inside the Metaflow step
    apl += " resources.train.gpu=2 resources.train.memory=12345"  # sizes the round's @resources (a Metaflow Config)
    monkeypatch.setenv("SELM_DATA_DIR", str(SHARED_DATA))  # its benchmarks need the data: skipped without it
    logs = {"plain": home / "plain.txt", "apl": home / "apl.txt"}
    procs = {name: flow("run", "--overrides", o, cwd=home, log=logs[name], wait=False)
             for name, o in (("plain", ONE_ROUND), ("apl", apl))}  # fmt: skip
    for name, p in procs.items():
        assert p.wait(timeout=900) == 0, logs[name].read_text()[-5000:]
    finished = {r["end"].task.data.config.select.acquisition: r for r in Flow("SELMFlow").runs() if r.successful}
    plain, again = finished["all"], finished["hybrid"]
    experiments = [f"SELMFlow-{r.id}" for r in (plain, again)]

    c = tracking.client()
    runs = c.search_runs([c.get_experiment_by_name("selm").experiment_id])
    assert sorted(r.data.tags["selm_key"] for r in runs) == sorted(
        key for e in experiments for key in (e, f"{e}/round-1")
    )
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len(c.search_model_versions("name='tiny-selm-policy'")) == 2
    for e in experiments:
        c.get_model_version_by_alias("tiny-selm-policy", f"{e.lower()}-round-1")

    data = plain["end"].task.data
    assert [r["round"] for r in data.rounds] == [0, 1] and Path(data.policy, "model.safetensors").exists()
    assert {r["metric"] for r in data.improvement} == {
        f"heldout/{n}" for n in ("reward", "correctness", "conciseness", "safety")
    }
    # cards with tables and plots on every step of both flows, each rendered once, when its step ended
    plain_round = Run(data.round_runs[0])
    for step in ("start", "sample", "judge", "select", "train", "evaluate", "end"):
        (step_card,) = step_cards(plain_round[step].task)
        assert step_card.type == STEP_CARD and "<html" in step_card.get().lower()
    assert [c.type for c in step_cards(plain["end"].task)] == [STEP_CARD]
    assert {c.type for t in plain["run_round"] for c in step_cards(t)} == {STEP_CARD}
    assert "data:image/png;base64" in step_cards(plain_round["train"].task)[0].get()
    assert "data:image/png;base64" in step_cards(plain["end"].task)[0].get()

    again_data = again["end"].task.data
    metrics = again_data.rounds[-1]
    assert metrics["select/labels"] == 24 and metrics["judge/calls"] + metrics["judge/cache_hits"] == 48
    assert metrics["train/final_loss"] > 0 and Path(again_data.policy, "model.safetensors").exists()
    apl_round = Run(again_data.round_runs[0])
    assert len(apl_round["select"].task.data.state.selection.picked) == 24
    assert "data:image/png;base64" in get_cards(apl_round["select"].task)[0].get()  # acquisition scores plot
    train_resources = apl_round["start"].task.data.step_resources["train"]
    assert (train_resources["gpu"], train_resources["memory"]) == (2, 12345)
    train_log = apl_round["train"].task.stderr
    assert "OMP_NUM_THREADS environment variable for each process" in train_log  # torchrun started 2 workers
    apl_mlflow = tracking.find_run(again_data.config, f"{again_data.experiment_id}/round-1")  # logged by SELMFlow
    assert "records/acquisition.json" in {a.path for a in c.list_artifacts(apl_mlflow, "records")}
    benchmark_records = {a.path for a in c.list_artifacts(apl_mlflow, "benchmarks")}
    if SHARED_DATA.is_dir():  # with the data, the recipe's benchmarks all ran, graded offline by the proxy (named so)
        assert benchmark_records == {"benchmarks/mt_bench.jsonl", "benchmarks/alpaca_eval.jsonl"}
        assert again_data.skipped == {}
        for r in again_data.rounds:  # round 0 (the initial policy) and round 1
            assert 1 <= r["mt_bench_proxy/score"] <= 10 and r["mt_bench_proxy/graded_turns"] == 32  # 2 × 8 × 2 turns
            assert 0 <= r["alpaca_eval_proxy/win_rate"] <= 100 and r["alpaca_eval_proxy/judged"] == 40
            assert 0 <= r["lm_eval/arc_challenge_local_acc"] <= 1 and 0 <= r["lm_eval/truthfulqa_mc1_local_acc"] <= 1

    # where a round's time goes (benchmarks/flow_timings.py): each step's share of its round, evaluate's split
    timings = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "flow_timings.py"), plain.id], cwd=home,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert timings.returncode == 0, timings.stderr[-3000:]
    assert re.search(r"round 1: .* train [\d.]+ = \d+ % \(work [\d.]+\)", timings.stdout), timings.stdout
    assert re.search(r"diagnostics [\d.]+ = \d+ %", timings.stdout), timings.stdout

    # the two experiments side by side
    compare.main([f"SELMFlow/{plain.id}", f"SELMFlow/{again.id}", "--out", str(home / "cmp")])
    table = capsys.readouterr().out
    assert re.search(r"heldout/reward\s+0\s", table)
    assert re.search(r"mt_bench_proxy/score\s+1\s+—\s+\d", table) or not SHARED_DATA.is_dir()
    assert (home / "cmp" / "heldout" / "reward.png").exists()
