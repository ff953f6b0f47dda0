"""The cluster contract without a cluster: each task on a private disk, sharing only an S3 server and a tracking server.

The experiment runs with ``--datastore s3`` against moto's S3 server, logs to an MLflow tracking server that serves
its artifacts (``infra/mlflow_server.sh``, as the docs start it), and every task gets its own working directory,
``HOME``, ``SELM_CACHE`` and temporary folder (``private_disk``, a test-only step decorator given with ``--with``):
a policy or a judgment handed over through a local path would not be found. One task is killed with SIGKILL (Metaflow
retries it on a fresh disk), then the whole experiment is killed and resumed from another folder. Not exercised
here: Kubernetes or Batch themselves, a metadata service (Metaflow's local metadata under a fixed folder stands in),
and real S3 credentials.
"""

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_proxy import FaultProxy
from test_flows_e2e import SELM_FLOW, kill, wait_for
from test_kill_matrix import wait_for_task
from test_unattended import client_in, llm_judged

from conftest import ROOT, free_port, wait_for_http

pytestmark = pytest.mark.slow


@pytest.fixture
def tracking_server(tmp_path):
    """``infra/mlflow_server.sh`` on a free port, its store under ``tmp_path/mlflow``; yields its URI."""
    port = free_port()
    log = open(tmp_path / "mlflow-server.log", "w")
    proc = subprocess.Popen(["bash", str(ROOT / "infra" / "mlflow_server.sh"), str(tmp_path / "mlflow")],
                            env={**os.environ, "PORT": str(port), "PYTHON": sys.executable},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    wait_for_http(f"{uri}/health", proc, "mlflow server", timeout=180)
    yield uri
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def launch(*args, cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    cwd.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, SELM_FLOW, "--datastore", "s3", *args], cwd=cwd, env=env,
                            stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def probe(command: str) -> str:
    """A decorator spec that leaves a visible trace in every task it reaches: a card of its own id, naming the
    command (an ``@environment`` variable would prove nothing: a round's process inherits its launcher's)."""
    return f"card:type=blank,id=probe_{command}"


def probes(run) -> dict[str, set[str]]:
    """Each step's probe cards (a step cloned by a resume shows its origin's)."""
    from metaflow.cards import get_cards

    return {s.id: {c.id for c in get_cards(s.task) if c.id and c.id.startswith("probe_")} for s in run}


def task_pids(step: str) -> list[int]:
    from selm.orchestration import processes

    return [pid for pid, args in processes()
            if b"step" in args and args[args.index(b"step") + 1 :][:1] == [step.encode()]]  # fmt: skip


def test_an_experiment_whose_tasks_share_only_s3_and_a_tracking_server(
    home, s3_env, tracking_server, judge_server, tiny_policy_dir, monkeypatch, tmp_path_factory
):
    """The tiny experiment (2 rounds, an LLM judge behind a proxy that counts every paid call) runs in one process
    (``run_experiment``), then as flows on S3 + a tracking server with every task on its own disk: round 1's judge
    task is killed mid-way (Metaflow retries it on a fresh disk, which finds the verdicts already paid in the
    experiment's mirror), the whole experiment is killed during round 2's training and resumed from another folder,
    each command with a ``--with`` probe that must reach every step it ran. Same numbers, no verdict paid twice but
    the calls in flight, the finished steps cloned, one experiment / parent run / run and version per round."""
    from selm import storage, tracking
    from selm.config import load_recipe
    from selm.pipeline.experiment import run_experiment

    base_url, judge_model = judge_server
    # 16 prompts: 64 paid calls a round
    overrides = f'{llm_judged("PROXY", Path("CACHE"))} judge.llm.model="{judge_model}" world.train_prompts_per_round=16'

    # the same experiment in one process, without Metaflow or MLflow (``run_experiment``, the stages the flows run):
    # what the cluster set-up must reproduce, number for number
    with FaultProxy(base_url) as proxy:
        straight = overrides.replace("PROXY", proxy.base_url).replace("CACHE", str(home / "straight.db"))
        expected = run_experiment(load_recipe(None, shlex.split(straight)), home / "straight", log=lambda _: None)
        asked = set(proxy.bodies)

    disks = home / "disks"
    disks.mkdir()
    env = {**os.environ, **s3_env, "MLFLOW_TRACKING_URI": tracking_server, "SELM_TEST_DISKS": str(disks),
           "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(home),  # Metaflow's metadata, in one place as a service keeps it
           "PYTHONPATH": str(ROOT / "tests"), "SELM_CACHE": str(home / "launcher-cache")}  # fmt: skip
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    private = ("--with", "private_disk.private_disk")
    log = home / "cluster.log"
    with FaultProxy(base_url) as proxy:
        cluster = overrides.replace("PROXY", proxy.base_url).replace('judge.cache="CACHE"', "judge.cache=auto")
        # the command line's --with specs reach every step of every round, on run and on resume
        p = launch(*private, "--with", probe("run"), "run", "--overrides", cluster, cwd=home / "first", env=env,
                   log=log)  # fmt: skip
        wait_for("round 1: judge", log, p)
        while len(proxy.bodies) < 24:  # well inside the step: 24 of its 64 calls paid
            assert p.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        (judge,) = task_pids("judge")
        os.kill(judge, signal.SIGKILL)  # one task dies; Metaflow retries it on a fresh private disk
        wait_for("round 2: train", log, p)
        wait_for_task("round_flow.py", "train", p)
        kill(p)  # the whole experiment dies during round 2's training

        Flow = client_in(home)  # the cluster's metadata, kept under home
        first = Flow("SELMFlow").latest_run
        experiment = f"SELMFlow-{first.id}"
        resumed = launch(*private, "--with", probe("resume"), "resume", "--origin-run-id", first.id,
                         cwd=home / "elsewhere", env=env, log=log)  # fmt: skip
        assert resumed.wait(timeout=1200) == 0, log.read_text()[-5000:]
    repeated = len(proxy.bodies) - len(set(proxy.bodies))
    # asked again: at most the calls in flight when the judge task died (concurrency 2) and the verdict it was writing
    # to the mirror
    assert set(proxy.bodies) == asked and repeated <= 3

    done = Flow("SELMFlow").latest_run
    assert done.successful and done.id != first.id
    data = done["end"].task.data
    for key in ("heldout/reward", "heldout/correctness", "train/pairs", "train/final_loss", "samples/reward"):
        assert [r[key] for r in data.rounds[1:]] == pytest.approx([r[key] for r in expected[1:]], abs=1e-9), key
    assert data.rounds[0]["heldout/reward"] == expected[0]["heldout/reward"]

    # every task ran on a disk of its own and every hand-off went through S3
    assert data.store == f"s3://selm/metaflow/selm/{experiment}" and data.policy.startswith(data.store)
    assert len(list(disks.iterdir())) >= 17  # a disk for each task that ran, retries included
    assert not (home / "first" / "outputs").exists() and not (home / "elsewhere" / "outputs").exists()
    rounds = {k: [r for r in Flow("RoundFlow").runs(f"selm_experiment:{experiment}", f"round:{k}") if r.successful]
              for k in (1, 2)}  # fmt: skip
    assert all(len(runs) == 1 and runs[0]["train"].task.metadata_dict["ds-type"] == "s3" for runs in rounds.values())
    assert rounds[1][0]["judge"].task.current_attempt == 1  # the killed judge task was retried, by the run itself
    assert done["start"].task.origin_pathspec is not None  # start (and its MLflow run) was not repeated
    killed, second = sorted(Flow("RoundFlow").runs(f"selm_experiment:{experiment}", "round:2"),
                            key=lambda r: r.created_at)  # fmt: skip
    assert not killed.successful and second.id == rounds[2][0].id
    for name in ("start", "sample", "select", "judge"):  # round 2's paid work was cloned, not redone
        assert second[name].task.origin_pathspec == f"RoundFlow/{killed.id}/{name}/{killed[name].task.id}"
    assert second["train"].task.origin_pathspec is None
    every_step = ("start", "sample", "select", "judge", "train", "evaluate", "end")
    assert probes(rounds[1][0]) == {s: {"probe_run"} for s in every_step}
    assert probes(second) == {**{s: {"probe_run"} for s in ("start", "sample", "select", "judge")},
                              **{s: {"probe_resume"} for s in ("train", "evaluate", "end")}}  # fmt: skip
    mirror = storage.RemoteFolder(f"{data.store}/judgments").get_json_all()
    rows = [tuple(row[:2]) for entries in mirror for row in entries]
    assert len(rows) == len(set(rows)) > 0  # each verdict mirrored once: the retry paid only for the rest
    assert data.rounds[1]["judge/cache_hits"] > 0  # on its fresh disk, the retry found what the killed task paid for

    # MLflow behind the tracking server: one experiment, one parent, one run and one version per round
    c = tracking.client()
    runs = c.search_runs([c.get_experiment_by_name("selm").experiment_id])
    assert sorted(r.data.tags["selm_key"] for r in runs) == [experiment, f"{experiment}/round-1",
                                                            f"{experiment}/round-2"]  # fmt: skip
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len(c.search_model_versions("name='tiny-selm-policy'")) == 2
    for r in runs:
        if r.data.tags["selm_key"] != experiment:  # each round's records, in the server's artifact store
            assert {a.path for a in c.list_artifacts(r.info.run_id, "records")} >= {
                "records/samples.jsonl", "records/judgments.jsonl", "records/pairs.jsonl"}  # fmt: skip
        for key in r.data.metrics:
            steps = [m.step for m in c.get_metric_history(r.info.run_id, key)]
            assert len(steps) == len(set(steps)), (r.data.tags["selm_key"], key, steps)

    # the champion, from a folder that never saw the run: the model comes from the server's artifact store
    import mlflow

    os.chdir(tmp_path_factory.mktemp("another-folder"))
    pipe = mlflow.transformers.load_model("models:/tiny-selm-policy@champion")
    assert pipe.model.num_parameters() > 0


def test_the_argo_workflows_template_runs_each_step_in_a_sized_pod_and_launches_rounds_where_it_runs(home, s3_env):
    """What ``argo-workflows create`` would submit (``--only-json``: no cluster needed): a pod per SELMFlow step,
    ``start`` sized from the recipe's ``[resources]``, and a ``run_round`` whose command line carries the datastore
    and the ``kubernetes`` spec that ``launch_options`` hands to each round's RoundFlow run."""
    import json

    from selm.config import load_recipe
    from selm.orchestration import launch_options

    out = subprocess.run(
        [sys.executable, SELM_FLOW, "--datastore", "s3", "--with", "kubernetes", "argo-workflows", "create",
         "--only-json"], cwd=home, capture_output=True, text=True, env={**os.environ, **s3_env},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    template = json.loads(out.stdout[out.stdout.index("{") :])
    pods = {t["name"]: t["container"] for t in template["spec"]["templates"] if "container" in t}
    assert {"start", "recursive-run-round", "end"} <= set(pods)  # run_round loops onto itself: a recursive template
    wanted = load_recipe(None).resources.flow_settings()["experiment_start"]
    requests = pods["start"]["resources"]["requests"]
    assert float(requests["cpu"]) == wanted["cpu"] and float(requests["memory"].rstrip("M")) == wanted["memory"]
    requests = pods["recursive-run-round"]["resources"]["requests"]  # it holds the round's policy to register it
    assert float(requests["memory"].rstrip("M")) == wanted["memory"] and "nvidia.com/gpu" not in pods[
        "recursive-run-round"]["resources"].get("limits", {})  # fmt: skip
    command = pods["recursive-run-round"]["command"][-1]
    task_argv = ["selm_flow.py", *command[command.index("python selm_flow.py") + 19 :].split(" step ")[0].split()]
    options = launch_options([*task_argv, "step", "run_round"])
    assert options["datastore"] == "s3" and any(s.startswith("'kubernetes:") for s in options["decospecs"])


def test_a_tasks_options_are_read_in_both_spellings_and_a_schedulers_own_decorators_stay_behind():
    from selm.orchestration import launch_options

    local = ["f.py", "--quiet", "--datastore", "s3", "--datastore-root", "s3://b/mf", "--with", "kubernetes:cpu=4",
             "step", "run_round", "--with", "ignored"]  # fmt: skip
    argo = ["f.py", "--with", "kubernetes:cpu=4", "--metadata=service", "--datastore=s3", "--datastore-root=s3://b/mf",
            "--with=argo_workflows_internal:auto-emit-argo-events=1", "step", "run_round"]  # fmt: skip
    where = {"datastore": "s3", "datastore_root": "s3://b/mf", "decospecs": ["kubernetes:cpu=4"]}
    assert launch_options(local) == where
    assert launch_options(argo) == {**where, "metadata": "service"}
