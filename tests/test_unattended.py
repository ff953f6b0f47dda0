"""Unattended runs: a hung step is bounded, a permanent error is not retried, a killed launcher does not run its round
twice. (A task killed with SIGKILL and retried by the run itself, on a fresh disk: ``tests/test_cluster.py``.)

Real processes throughout: SELMFlow and its rounds under Metaflow's local runtime, task processes killed with
SIGKILL while they work (nothing else is touched: the run has to recover on its own, with no ``resume``), and the
tiny judge LM served by ``transformers serve`` behind a proxy that counts every call.
"""

import os
import signal
import time
from pathlib import Path

import pytest
from fault_proxy import FaultProxy
from test_flows_e2e import ONE_ROUND, REDUCED, flow, wait_for

pytestmark = pytest.mark.slow

#: the LLM judge (single 1–10 ratings) on fewer prompts: 4 replies × 32 prompts = 128 calls a round
LLM_JUDGE = "world.train_prompts_per_round=32 judge.backend=llm judge.llm.template=tiny-single judge.llm.concurrency=2"


def llm_judged(base_url: str, cache: Path, rounds: str = REDUCED) -> str:
    return f'{rounds} {LLM_JUDGE} judge.llm.base_url="{base_url}" judge.cache="{cache}"'


def task_pid(folder: Path, step: str, timeout: float = 60, flow_file: str = "round_flow.py") -> int:
    """The pid of the task process now running ``step`` of ``flow_file``'s flow for the run started in ``folder``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes().split(b"\0")
                cwd = (cmdline.parent / "cwd").resolve()
            except OSError:
                continue
            if cwd == folder.resolve() and any(a.endswith(flow_file.encode()) for a in args) and b"step" in args:
                if args[args.index(b"step") + 1] == step.encode():
                    return int(cmdline.parent.name)
        time.sleep(0.1)
    pytest.fail(f"no task process of step {step} in {folder}")


def client_in(folder: Path):
    """Metaflow's client reading the runs of ``folder`` (it caches the first datastore it found)."""
    from metaflow import Flow, namespace
    from metaflow.plugins.datastores.local_storage import LocalStorage

    os.chdir(folder)
    LocalStorage.datastore_root = None
    namespace(None)
    return Flow


def test_a_hung_judge_is_stopped_by_its_step_timeout(home, tiny_policy_dir, judge_server):
    """A judge endpoint that passes the preflight probe, accepts every call and never answers (the client's own
    timeout is 10 minutes): the judge step's 15 s @timeout stops each of its 2 attempts, and the run fails with a
    message naming the step, the limit and the attempts; SELMFlow does not retry the failed round."""
    from metaflow import Flow

    log = home / "log"
    hang = "resources.judge.timeout_minutes=0.25 resources.retries=1 judge.llm.timeout_s=600"
    with FaultProxy(judge_server[0], default="hang") as proxy:
        p = flow("run", "--overrides", f"{llm_judged(proxy.base_url, home / 'j.sqlite', ONE_ROUND)} {hang}",
                 cwd=home, log=log, wait=False)  # fmt: skip
        assert p.wait(timeout=600) != 0
    text = log.read_text()
    assert "Step judge timed out after 0 hours, 0 minutes, 15 seconds" in text
    assert "judge after 2 attempts: TimeoutException" in text
    assert len(proxy.bodies) == 2 * 2  # two calls in flight (concurrency 2), once per attempt: no call after the stop
    [round_run] = list(Flow("RoundFlow"))
    assert round_run["judge"].task.current_attempt == 1
    assert Flow("SELMFlow").latest_run["run_round"].task.current_attempt == 0  # the failed round was not run again


def test_a_permanent_error_fails_on_its_first_attempt(home, tiny_policy_dir):
    """A NaN loss (a learning rate of 1e30) is not retried, though the recipe allows 2 retries: the run fails on the
    train step's first attempt, with the error's message."""
    from metaflow import Flow

    log = home / "log"
    p = flow("run", "--overrides", f"{ONE_ROUND} train.learning_rate=1e30", cwd=home, log=log, wait=False)
    assert p.wait(timeout=600) != 0
    text = log.read_text()
    assert "NonFiniteLossError is not retried" in text
    assert "train after 1 attempt: NonFiniteLossError: round 1, epoch" in text
    [round_run] = list(Flow("RoundFlow"))
    assert round_run["train"].task.current_attempt == 0
    assert Flow("SELMFlow").latest_run["run_round"].task.current_attempt == 0


def test_a_killed_round_launcher_waits_for_its_round_instead_of_running_it_twice(home, tiny_policy_dir):
    """kill -9 of SELMFlow's ``run_round`` task alone (not its machine) while round 1 samples: the round's own run
    goes on; the retried ``run_round`` waits for it and reuses it, so the round runs once and is logged once."""
    from metaflow import Flow

    from selm import tracking

    log = home / "log"
    p = flow("run", "--overrides", ONE_ROUND, cwd=home, log=log, wait=False)
    wait_for("round 1: sample", log, p)
    os.kill(task_pid(home, "run_round", flow_file="selm_flow.py"), signal.SIGKILL)
    assert p.wait(timeout=900) == 0, log.read_text()[-5000:]
    assert "its run from an earlier attempt still works" in log.read_text()
    [round_run] = list(Flow("RoundFlow"))
    assert round_run.successful
    run = Flow("SELMFlow").latest_run
    assert run["run_round"].task.current_attempt == 1
    c = tracking.client()
    keys = sorted(r.data.tags["selm_key"] for r in c.search_runs([c.get_experiment_by_name("selm").experiment_id]))
    experiment = run["end"].task.data.experiment_id
    assert keys == [experiment, f"{experiment}/round-1"]
    assert len(c.search_model_versions("name='tiny-selm-policy'")) == 1
