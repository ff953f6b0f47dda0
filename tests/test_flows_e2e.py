"""Both flows end to end, for real: Metaflow local runs, MLflow on sqlite, the tiny policy on CPU.

A reduced recipe (2 rounds, fewer prompts, a quickly built policy) is killed with SIGKILL during round 2's
``train`` step and then resumed; the test checks that nothing finished was repeated. The full default run has
its own test below.
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


def probe(command: str) -> str:
    """A decorator spec that leaves a visible trace in every task it reaches: a card of its own id, naming the
    command (an ``@environment`` variable would prove nothing: a round's process inherits its launcher's)."""
    return f"card:type=blank,id=probe_{command}"


def probes(run) -> dict[str, set[str]]:
    """Each step's probe cards (a step cloned by a resume shows its origin's)."""
    from metaflow.cards import get_cards

    return {s.id: {c.id for c in get_cards(s.task) if c.id and c.id.startswith("probe_")} for s in run}


def step_cards(task) -> list:
    """The task's own cards, not the probes."""
    from metaflow.cards import get_cards

    return [c for c in get_cards(task) if not (c.id or "").startswith("probe_")]


def kill_during_second_train(p, log: Path) -> None:
    wait_for("round 2: train", log, p)
    time.sleep(2)  # inside the step: its process is loading the policy or training
    kill(p)


def test_experiment_survives_a_kill_during_train_and_reruns_cleanly(home, tiny_policy_dir, capsys, monkeypatch):
    from metaflow import Flow, Run
    from metaflow.cards import get_cards

    from selm import tracking
    from selm.orchestration import STEP_CARD

    tmp_path = home
    log = tmp_path / "log.txt"

    # the command line's --with specs reach every step of every round, on run and on resume
    run = flow("--with", probe("run"), "run", "--overrides", REDUCED, cwd=tmp_path, log=log, wait=False)
    kill_during_second_train(run, log)
    killed = Flow("SELMFlow").latest_run
    assert not killed.successful
    experiment = f"SELMFlow-{killed.id}"

    flow("--with", probe("resume"), "resume", cwd=tmp_path, log=log)
    resumed = Flow("SELMFlow").latest_run
    assert resumed.successful and resumed.id != killed.id
    assert resumed["start"].task.origin_pathspec is not None  # start (and its MLflow run) was not repeated

    round_runs = {
        k: sorted(Flow("RoundFlow").runs(f"selm_experiment:{experiment}", f"round:{k}"), key=lambda r: r.created_at)
        for k in (1, 2)
    }
    assert len(round_runs[1]) == 1 and round_runs[1][0].successful  # round 1 ran exactly once
    first, second = round_runs[2]
    assert not first.successful and second.successful
    for name in ("start", "sample", "judge", "select"):  # paid work of round 2 was cloned, not redone
        assert second[name].task.origin_pathspec == f"RoundFlow/{first.id}/{name}/{first[name].task.id}"
    assert second["train"].task.origin_pathspec is None
    steps = ("start", "sample", "select", "judge", "train", "evaluate", "end")
    assert probes(round_runs[1][0]) == {s: {"probe_run"} for s in steps}
    assert probes(second) == {**{s: {"probe_run"} for s in ("start", "sample", "select", "judge")},
                              **{s: {"probe_resume"} for s in ("train", "evaluate", "end")}}  # fmt: skip

    data = resumed["end"].task.data
    assert [r["round"] for r in data.rounds] == [0, 1, 2]
    assert {r["metric"] for r in data.improvement} == {
        f"heldout/{n}" for n in ("reward", "correctness", "conciseness", "safety")
    }
    assert Path(data.policy, "model.safetensors").exists()

    # MLflow: one experiment run with two nested rounds, each with metrics, records and a registered policy
    c = tracking.client()
    exp = c.get_experiment_by_name("selm")
    parents = c.search_runs([exp.experiment_id], "tags.mlflow.runName = 'tiny-selm'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0].info.run_id
    rounds = c.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.data.tags["round"] for r in rounds) == ["1", "2"]
    for r in rounds:
        wanted = {"heldout/reward", "heldout/reward_se", "samples/reward", "train/pairs", "train/final_loss"}
        assert wanted | {"time/train_s"} <= set(r.data.metrics)
        assert {a.path for a in c.list_artifacts(r.info.run_id, "records")} >= {
            "records/samples.jsonl",
            "records/judgments.jsonl",
            "records/pairs.jsonl",
        }
    assert [m.step for m in c.get_metric_history(parent, "heldout/reward")] == [0, 1, 2]
    assert all(r.info.status == "FINISHED" for r in rounds)  # the killed round's run was continued, then closed
    versions = c.search_model_versions("name='tiny-selm-policy'")
    assert len(versions) == 2
    round_2 = c.get_model_version_by_alias("tiny-selm-policy", f"{experiment.lower()}-round-2")
    assert round_2.run_id in {r.info.run_id for r in rounds}
    c.get_model_version_by_alias("tiny-selm-policy", "champion")

    # a second resume of the finished experiment says so and adds nothing
    out = subprocess.run([sys.executable, SELM_FLOW, "resume"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0 and f"experiment {experiment} already finished" in out.stdout
    assert len(c.search_model_versions("name='tiny-selm-policy'")) == 2

    # cards with tables and plots on every step of both flows, each rendered once, when its step ended
    for step in ("start", "sample", "judge", "select", "train", "evaluate", "end"):
        (step_card,) = step_cards(second[step].task)
        assert step_card.type == STEP_CARD and "<html" in step_card.get().lower()
    assert [c.type for c in step_cards(resumed["end"].task)] == [STEP_CARD]
    assert {c.type for t in resumed["run_round"] for c in step_cards(t)} == {STEP_CARD}
    assert "data:image/png;base64" in step_cards(second["train"].task)[0].get()
    assert "data:image/png;base64" in step_cards(resumed["end"].task)[0].get()

    # a second run in the same folder is a new experiment; this one spends a label budget (APL), ranks by LSC and,
    # with the data present, runs the default recipe's benchmarks
    apl = REDUCED.replace("experiment.rounds=2", "experiment.rounds=1").replace(BENCHMARKS_OFF, "")  # benchmarks on
    apl += " select.acquisition=hybrid select.label_budget=24 select.hybrid_factor=2 judge.combine=lsc"
    apl += " train.processes=2"  # its train step runs two torchrun processes (DDP over gloo) inside the Metaflow step
    apl += " resources.train.gpu=2 resources.train.memory=12345"  # sizes the round's @resources (a Metaflow Config)
    monkeypatch.setenv("SELM_DATA_DIR", str(SHARED_DATA))  # its benchmarks need the data: skipped without it
    flow("run", "--overrides", apl, cwd=tmp_path, log=log)
    again = Flow("SELMFlow").latest_run
    assert again.successful and again.id not in (killed.id, resumed.id)
    assert len(c.search_runs([exp.experiment_id], "tags.mlflow.runName = 'tiny-selm'")) == 2
    assert len(c.search_model_versions("name='tiny-selm-policy'")) == 3
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

    # the two experiments side by side, as a user compares methods
    from evals import compare

    compare.main([f"SELMFlow/{resumed.id}", f"SELMFlow/{again.id}", "--out", str(tmp_path / "cmp")])
    table = capsys.readouterr().out
    assert re.search(r"heldout/reward\s+0\s", table)
    assert re.search(r"mt_bench_proxy/score\s+1\s+—\s+\d", table) or not SHARED_DATA.is_dir()
    assert (tmp_path / "cmp" / "heldout" / "reward.png").exists()


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


def test_two_experiments_started_together_in_a_new_folder_both_finish(home, tiny_policy_dir):
    """Same new folder, same moment: no shared .metaflow or mlflow.db yet. Both create them (race-free), and each
    experiment gets its own parent run, round run, registered version and aliases."""
    from metaflow import Flow

    from selm import tracking

    logs = [home / "a.txt", home / "b.txt"]
    procs = [flow("run", "--overrides", ONE_ROUND, cwd=home, log=log, wait=False) for log in logs]
    for p, log in zip(procs, logs):
        assert p.wait(timeout=900) == 0, log.read_text()[-5000:]
    experiments = {f"SELMFlow-{r.id}" for r in Flow("SELMFlow").runs() if r.successful}
    assert len(experiments) == 2
    c = tracking.client()
    runs = c.search_runs([c.get_experiment_by_name("selm").experiment_id])
    assert sorted(r.data.tags["selm_key"] for r in runs) == sorted(
        key for e in experiments for key in (e, f"{e}/round-1")
    )
    assert all(r.info.status == "FINISHED" for r in runs)
    versions = c.search_model_versions("name='tiny-selm-policy'")
    assert len(versions) == 2
    for e in experiments:
        c.get_model_version_by_alias("tiny-selm-policy", f"{e.lower()}-round-1")
