"""kill -9 at every point of an experiment, then `resume`: the full matrix (about 1.5 minutes a case).

Not in the default run (``-m "not kill_matrix"`` in pytest's options: with it CI would pass 40 minutes; the
default suite kills once in SELMFlow's start, in test_flows_e2e.py, and once in a round's train, in test_cluster.py).
Run it with ``python -m pytest -m kill_matrix``.

After each kill and resume: one experiment, one MLflow parent with exactly R nested FINISHED round runs, nothing
left RUNNING, exactly R registered versions, the steps that had finished before the kill reused (cloned, not run
again — so no judge call of a finished judgment is repeated), and the final numbers equal to an uninterrupted run
with the same seed.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
from test_flows_e2e import REDUCED, SELM_FLOW, wait_for

#: the sizes the kill points were validated with: each step lasts long enough to be killed inside it
ONE_ROUND = REDUCED.replace("experiment.rounds=2", "experiment.rounds=1").replace(
    "world.heldout_prompts=64", "world.heldout_prompts=200"
)

pytestmark = [pytest.mark.slow, pytest.mark.kill_matrix]

#: kill point → (what marks it: a log line, or RoundFlow's task of that step running; seconds to wait after it)
KILL_POINTS = {
    "SELMFlow start, before its first artifact": ("/start/1 (pid", 1.0),
    "SELMFlow start, after the MLflow parent run": ("round 0 (initial policy)", 0.0),
    "RoundFlow start": (("round_flow.py", "start"), 3.0),  # the light steps print no line of their own
    **{f"RoundFlow {step}": (f"round 1: {step}", 3.0) for step in ("sample", "select", "judge", "train")},
    "RoundFlow evaluate": ("round 1: evaluate", 3.0),
    "RoundFlow end (registering)": (("round_flow.py", "end"), 6.0),
    "between the last round and the end": ("round 1 done", 0.0),
}


def wait_for_task(flow: str, step: str, p, timeout=600) -> None:
    """Wait until a task of ``step`` of the flow file ``flow`` runs (a process ``… <flow> … step <step> …``); fail if
    ``p`` ends first."""
    from selm.orchestration import processes

    deadline = time.time() + timeout
    while not any(
        any(a.endswith(flow.encode()) for a in args) and args[args.index(b"step") + 1 :][:1] == [step.encode()]
        for _, args in processes()
        if b"step" in args
    ):
        if p.poll() is not None or time.time() > deadline:
            pytest.fail(f"never saw a task of {flow} {step}")
        time.sleep(0.2)



def run_experiment(folder, kill_at=None):
    """Run the one-round experiment in ``folder``; with ``kill_at``, kill it there and resume. Returns the
    experiment's final metrics."""
    from metaflow import Flow, namespace
    from metaflow.plugins.datastores.local_storage import LocalStorage

    folder.mkdir()
    os.chdir(folder)
    LocalStorage.datastore_root = None
    namespace(None)
    log = folder / "log.txt"
    p = subprocess.Popen(
        [sys.executable, SELM_FLOW, "run", "--overrides", ONE_ROUND],
        cwd=folder,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if kill_at is not None:
        mark, delay = kill_at
        if isinstance(mark, tuple):
            wait_for_task(*mark, p)
        else:
            wait_for(mark, log, p)
        time.sleep(delay)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        p = subprocess.Popen(
            [sys.executable, SELM_FLOW, "resume"], cwd=folder, stdout=log.open("a"), stderr=subprocess.STDOUT
        )
    assert p.wait(timeout=900) == 0, log.read_text()[-5000:]
    return Flow("SELMFlow").latest_run["end"].task.data


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_policy_dir):
    cwd = os.getcwd()
    try:
        return run_experiment(tmp_path_factory.mktemp("uninterrupted") / "x").rounds
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_then_resume(point, uninterrupted, tmp_path, monkeypatch):
    from metaflow import Flow

    from selm import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cwd = os.getcwd()
    try:
        data = run_experiment(tmp_path / "x", KILL_POINTS[point])
        c = tracking.client()
        runs = c.search_runs([c.get_experiment_by_name("selm").experiment_id])
    finally:
        os.chdir(cwd)
    experiment = data.experiment_id
    assert sorted(r.data.tags["selm_key"] for r in runs) == [experiment, f"{experiment}/round-1"]
    assert all(r.info.status == "FINISHED" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    assert len(c.search_model_versions("name='tiny-selm-policy'")) == 1
    rounds = list(Flow("RoundFlow").runs(f"selm_experiment:{experiment}"))
    assert rounds and rounds[0].successful  # the newest round run finished
    if len(rounds) == 2:  # the killed round was resumed: what had finished before the kill was cloned, not rerun
        killed, resumed = sorted(rounds, key=lambda r: r.created_at)
        for step in killed:
            if step.task is not None and step.task.successful:
                assert resumed[step.id].task.origin_pathspec is not None, step.id
    final, expected = data.rounds[-1], uninterrupted[-1]
    for key in ("heldout/reward", "heldout/correctness", "train/pairs", "train/final_loss"):
        assert final[key] == pytest.approx(expected[key], abs=1e-9), key
