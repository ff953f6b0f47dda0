"""Running an experiment with Metaflow: one RoundFlow run per round, and a command line that never duplicates work.

**Experiment identity.** An experiment is ``SELMFlow-<id of its first run>``. ``resume`` creates a new Metaflow run,
so the command line tags it ``selm_experiment:<experiment>`` (the experiment of the run it resumes): every run of
one experiment, however often it was resumed and wherever it was killed, names the same experiment, MLflow parent
run, round runs and registered versions.

**Rounds.** Each round's RoundFlow run carries the tags ``selm_experiment:<id>`` and ``round:<k>``; before
launching, the newest run with those tags is looked up: a successful one is reused as is, an unfinished or failed
one is resumed with Metaflow's ``resume`` (which clones its finished steps), and only when there is none is a new run
started.

**Retries.** Every step of both flows has Metaflow's ``@retry`` and ``@timeout`` from the recipe's ``[resources]``
(the flows' Config ``resources``, which ``guard_command_line`` sets from the recipe for a ``run``). A task that
fails for a reason that may pass (killed, node lost, timed out, judge down) runs again in the same run; one that
fails permanently (``selm.errors``) exits with the status Metaflow never retries (``exit_code_of``). A retried step
is idempotent as a resumed one is: its inputs are the previous step's artifacts, judgments come from the cache,
checkpoints are atomic and SELMFlow logs and registers a round once. A round whose step failed for good is not
retried again by SELMFlow (``RoundStepFailed``); a round whose own Metaflow process died is (``RoundFailed``).

**The command line** (``guard_command_line``, called before Metaflow parses it) refuses, before any run exists:
a ``run`` whose recipe or environment is bad (nothing is written: no Metaflow run, no parameters on disk, no
MLflow database); a ``resume`` of a finished experiment (it says so and does nothing); a ``resume`` of an experiment
that is still running. "Running" is not a guess: every ``run`` / ``resume`` process holds an ``flock`` on a file in
``.metaflow/selm-locks`` for its whole life, which the kernel releases when the process dies, even by ``kill -9``.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import re
import signal
import sys
import threading
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from selm.errors import Permanent, permanent

FLOW = "SELMFlow"
EXPERIMENT_TAG = "selm_experiment:"


class RoundFailed(RuntimeError):
    """The round's Metaflow run did not finish because its own process died (killed, node lost): SELMFlow's
    ``@retry`` resumes it."""


class RoundStepFailed(RoundFailed, Permanent):
    """A step of the round failed on every attempt it was given: a retry of the whole round would repeat them."""


# ---------------------------------------------------------------- experiment identity


def experiment_of(run_id: str, tags=()) -> str:
    """The experiment a SELMFlow run belongs to: its ``selm_experiment:`` tag (a resumed run), else its own id."""
    for t in tags:
        if t.startswith(EXPERIMENT_TAG):
            return t[len(EXPERIMENT_TAG) :]
    return f"{FLOW}-{run_id}"


def experiment_of_run(run_id: str) -> str:
    from metaflow import Run, namespace

    namespace(None)
    return experiment_of(run_id, Run(f"{FLOW}/{run_id}").tags)


# ---------------------------------------------------------------- rounds


def latest_round_run(experiment_id: str, round: int):
    """Newest RoundFlow run of this experiment and round, or None."""
    from metaflow import Flow, namespace
    from metaflow.exception import MetaflowNotFound

    namespace(None)
    try:
        runs = list(Flow("RoundFlow").runs(f"{EXPERIMENT_TAG}{experiment_id}", f"round:{round}"))
    except MetaflowNotFound:
        return None
    return max(runs, key=lambda r: r.created_at) if runs else None


#: the top-level options of a task's command line that say where and how its flow runs
WHERE = ("--datastore", "--datastore-root", "--metadata", "--environment")


def launch_options(argv: Sequence[str]) -> dict[str, Any]:
    """Where and how the flow of the task whose command line is ``argv`` runs, as Metaflow's ``Runner`` takes it:
    ``datastore``, ``datastore_root``, ``metadata``, ``environment`` and the decorator specs given with ``--with``
    (``decospecs``). Metaflow hands every task these top-level options before its ``step`` command, from the
    command line the user typed (``python flows/selm_flow.py --datastore s3 run --with kubernetes``); a round
    launched with them runs where its experiment runs: its steps are pods too, its artifacts go to the same store."""
    words = list(argv[1:])
    words = words[: words.index("step")] if "step" in words else words
    # both spellings: `--datastore s3` (the local runtime) and `--datastore=s3` (an Argo Workflows pod)
    pairs = [tuple(w.split("=", 1)) for w in words if w.startswith("--") and "=" in w] + list(zip(words, words[1:]))
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name == "--with" and not value.split(":", 1)[0].endswith("_internal"):  # a scheduler's own, not ours
            out.setdefault("decospecs", []).append(value)
        elif name in WHERE:
            out[name[2:].replace("-", "_")] = value
    return out


def datastore_of(argv: Sequence[str]) -> tuple[str, str | None]:
    """(kind, root) of the datastore of the task whose command line is ``argv``: what it names, else Metaflow's
    configured default."""
    from metaflow import metaflow_config

    options = launch_options(argv)
    kind = str(options.get("datastore") or metaflow_config.DEFAULT_DATASTORE)
    return kind, options.get("datastore_root") or getattr(metaflow_config, f"DATASTORE_SYSROOT_{kind.upper()}", None)


def store_for(output_uri: str, experiment_id: str, argv: Sequence[str]) -> str:
    """The experiment's store (``selm.storage.experiment_store``) for the task whose command line is ``argv``: the
    recipe's ``experiment.output_uri``, else the datastore's root when it is not local, else "" — the tasks share
    this machine's disk and nothing is copied."""
    from selm.storage import experiment_store

    return experiment_store(output_uri, *datastore_of(argv), experiment_id)


def run_round_flow(
    flow_file: str | Path,
    experiment_id: str,
    round: int,
    params: dict,
    resources: dict | None = None,
    meanwhile: Callable[[], object] | None = None,
    options: Mapping[str, Any] | None = None,
):
    """Reuse, resume or start the round's RoundFlow run; return the successful client ``Run``.

    ``meanwhile`` runs in a thread of this process once the round is under way (SELMFlow opens MLflow and imports
    what registering the round's policy needs while the round works), or at once when a finished run is reused; it
    has finished when this returns or raises, and its error is raised after the round's own.

    ``resources`` (the recipe's ``[resources]``) becomes the RoundFlow Config that sizes each step's ``@resources``;
    ``options`` (``launch_options``: datastore, metadata, environment, ``--with`` specs) go to the RoundFlow run as
    its top-level options, on a new run and on a resumed one alike.
    One line per step is printed (``round 1: train``); the child's full log stays in Metaflow, and the tail of a
    failed round's log is printed."""
    import asyncio

    tags = [f"{EXPERIMENT_TAG}{experiment_id}", f"round:{round}"]
    configs: dict[str, Any] = {}  # the Config of a new run (a resumed one keeps its own)
    _wait_for_running_round(tags, round)
    previous = latest_round_run(experiment_id, round)
    if previous is not None and previous.successful:
        print(f"round {round}: reusing finished run {previous.pathspec}")
        if meanwhile is not None:
            meanwhile()
        return previous
    if previous is not None:  # a resumed run keeps the Config of the run it resumes (Metaflow refuses a new one)
        print(f"round {round}: resuming unfinished run {previous.pathspec}")
        launch = dict(method="async_resume", origin_run_id=previous.id, tags=tags)
    else:
        if resources is not None:
            configs["config_value"] = [("resources", resources)]
        launch = dict(method="async_run", tags=tags, **params)
    with _typing_kept():
        from metaflow import Runner

        runner = Runner(str(flow_file), **(options or {}), **configs)
        background = _Background(meanwhile)
        try:
            run, log, returncode = asyncio.run(_follow(runner, f"round {round}", background, **launch))
        finally:
            background.wait()
    if not run.successful:
        print("\n".join(log.splitlines()[-40:]), file=sys.stderr)
        if returncode is not None and returncode < 0:  # the round's runtime itself was killed: a retry resumes it
            raise RoundFailed(f"round {round}: its Metaflow run {run.pathspec} stopped (exit status {returncode})")
        failed = failed_step(run)
        raise RoundStepFailed(
            f"round {round} failed in {run.pathspec}: {failed}. Full log: python flows/round_flow.py logs "
            f"{run.id}/{failed.split()[0]}; fix the cause and run `python flows/selm_flow.py resume`"
        )
    background.raise_error()
    return run


def run_and_log_round(
    flow_file: str | Path, recipe, experiment_id: str, round: int, params: dict, parent_run: str, argv: Sequence[str]
):
    """SELMFlow's round: run (reuse, resume) its RoundFlow run where the experiment runs (``argv``: the launching
    task's command line, ``launch_options``), then log it to MLflow and register its policy from this process
    (``selm.report.rounds.to_mlflow``). Returns (the client ``Run``, its ``RoundState``, the round's MLflow run id,
    ``register_policy``'s result).

    MLflow is imported, its store opened and a resumed round's MLflow run reopened in a thread while the round runs
    (≈ 2 s a round off the critical path on 2 cores). Whatever fails, the experiment's run and the round's are
    closed as FAILED (KILLED on Ctrl-C) before the error goes on: ``resume`` reopens them."""
    round_key = f"{experiment_id}/round-{round}"

    def round_run() -> str | None:
        from selm import tracking

        return tracking.find_run(recipe, round_key)

    def open_mlflow() -> None:
        from selm import tracking

        tracking.reopen(parent_run, round_run())
        tracking.prepare_registration()

    try:
        child = run_round_flow(flow_file, experiment_id, round, params, recipe.resources.model_dump(), open_mlflow,
                               launch_options(argv))  # fmt: skip
        state = child["end"].task.data.state
        from selm.report.rounds import to_mlflow

        mlflow_run, registered = to_mlflow(recipe, state, parent_run, child.pathspec)
    except BaseException:
        from selm import tracking

        with tracking.failed_on_error(parent_run, round_run):
            raise  # closes both runs, then the error goes on
    return child, state, mlflow_run, registered


class _Background(threading.Thread):
    """``fn`` (if any) in a daemon thread: ``wait`` joins it if it started, ``raise_error`` re-raises what it raised."""

    def __init__(self, fn: Callable[[], object] | None):
        super().__init__(name="meanwhile", daemon=True)
        self._fn = fn
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            if self._fn is not None:
                self._fn()
        except BaseException as e:  # handed to the caller's thread by raise_error
            self._error = e

    def wait(self) -> None:
        if self.ident is not None:
            self.join()

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error


def _wait_for_running_round(tags: list[str], round: int) -> None:
    """Wait while this round's Metaflow process from an earlier attempt still runs on this machine.

    When only the step that launched a round is killed (not its machine), the round's own run goes on without it;
    the step's retry must not resume that run beside it. The round's process is found by the tags on its command
    line (``run --tag selm_experiment:… --tag round:k``)."""
    wanted = [t.encode() for t in tags]
    said = False
    while True:
        running = [pid for pid, args in processes() if any(a.endswith(b"round_flow.py") for a in args)
                   and all(t in args for t in wanted) and pid != os.getpid()]  # fmt: skip
        if not running:
            return
        if not said:
            print(f"round {round}: its run from an earlier attempt still works (process {running[0]}); waiting for it")
            said = True
        time.sleep(2)


def processes():
    """(pid, command line as a list of bytes) of every process this user can read (empty where /proc is absent)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            yield int(cmdline.parent.name), cmdline.read_bytes().split(b"\0")
        except OSError:
            continue


def step_attempts(run) -> dict[str, int]:
    """How many attempts each step of a client ``Run`` took (1 = no retry), in the order the steps ran."""
    steps = sorted(run, key=lambda s: s.created_at)
    return {s.id: s.task.current_attempt + 1 for s in steps if s.task is not None}


def failed_step(run) -> str:
    """``"<step> after N attempt(s): <the error's type and first line>"`` for the step of a client ``Run`` that did
    not succeed (a task killed without a word says so)."""
    for s in sorted(run, key=lambda s: s.created_at, reverse=True):
        task = s.task
        if task is not None and not task.successful:
            wrapper = task.exception  # Metaflow's MetaflowExceptionWrapper: .type "module.Class", .exception text
            lines = str(getattr(wrapper, "exception", "")).strip().splitlines()
            what = f"{getattr(wrapper, 'type', '').rsplit('.', 1)[-1]}: {lines[0] if lines else ''}"
            n = task.current_attempt + 1
            return f"{s.id} after {n} attempt{'s' * (n > 1)}: " + (what if wrapper else "killed, no error recorded")
    return "no step failed"


@contextmanager
def _typing_kept():
    """Undo what Metaflow's ``Runner`` does to ``typing`` while it runs.

    The Runner loads Metaflow's vendored, older ``typing_extensions``, which replaces ``typing._collect_parameters``
    with a version that rejects the real ``typing_extensions``' type-parameter defaults: every later class such as
    ``Generic[_T0, _T1]`` with a default (torch.export, transformers' configs) then fails to import
    (Netflix/metaflow#2462). Putting the process's own function back lets the step that launched a round load torch
    afterwards, to register the round's policy."""
    try:
        yield
    finally:
        _restore_typing()


_COLLECT_PARAMETERS = getattr(typing, "_collect_parameters", None)  # the process's own, before any Runner


def _restore_typing() -> None:
    if _COLLECT_PARAMETERS is not None:
        typing._collect_parameters = _COLLECT_PARAMETERS  # type: ignore[attr-defined]


_STEP_STARTS = re.compile(r"\[[^/\]]+/(\w+)/\d+ \(pid \d+\)\] Task is starting")


async def _follow(runner, label: str, meanwhile: _Background, method: str, **kwargs):
    """Launch the child run, start ``meanwhile``, print ``<label>: <step>`` as each stage's step starts (not the
    light start and end: the round's own lines frame them); return (client Run, its whole log, the exit status of
    its Metaflow process)."""
    async with runner:
        executing = await getattr(runner, method)(**kwargs)
        _restore_typing()  # the Runner has done its harm to typing by now: undone before torch is imported
        meanwhile.start()
        async for _, line in executing.stream_log("stdout"):
            m = _STEP_STARTS.search(line)
            if m and m.group(1) not in ("start", "end"):
                print(f"{label}: {m.group(1)}", flush=True)
        await executing.wait()
        return executing.run, executing.stdout + executing.stderr, executing.returncode


# ---------------------------------------------------------------- the command line


def guard_command_line(argv: list[str]):
    """Checks made before Metaflow sees the command line; returns the held process lock (keep it open).

    ``run``: the recipe and everything it names are validated (``selm.pipeline.preflight``); a bad one exits 1 with the
    reason, before Metaflow stores the run's parameters (a pasted API key never reaches the disk).
    ``resume``: a finished experiment exits 0 saying so; one still running in another process exits 1.
    Both: ``.metaflow`` is created race-free (two experiments may start together in one folder) and the process
    takes its lock."""
    command = next((a for a in argv if a in ("run", "resume")), None)
    if command is None:
        return None
    from selm.pipeline.preflight import user_name

    if problems := user_name():  # Metaflow would refuse it only after creating .metaflow
        sys.exit(f"{problems[0]}\nNothing was started.")
    if command == "run":
        recipe = _validate_run(argv)  # first: a bad recipe leaves nothing behind, not even a .metaflow folder
        _set_resources_config(argv, argv.index(command), recipe.resources.model_dump_json())
    if problem := _unshared_tracking(argv):
        sys.exit(f"{problem}\nNothing was started.")
    root = _datastore_root()
    experiment = None
    if command == "resume":
        origin = _option(argv, "--origin-run-id") or _latest_run_id(root)
        if origin is None:
            return None  # Metaflow explains that there is nothing to resume
        experiment = experiment_of_run(origin)
        _refuse_finished(origin, experiment)
        argv.extend(["--tag", f"{EXPERIMENT_TAG}{experiment}"])
    return _take_lock(root / "selm-locks", experiment, argv)


def _unshared_tracking(argv: Sequence[str]) -> str | None:
    """With a datastore other than the local one the steps may run on other machines: an MLflow store in a local
    file (the default, ``mlflow.db`` here) would be a different one in every task."""
    kind, _ = datastore_of(argv)
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if kind != "local" and (not uri or uri.startswith(("sqlite:", "file:")) or "://" not in uri):
        return (f"--datastore {kind}: the steps may run on other machines, but the MLflow tracking store "
                f"{uri or 'sqlite:///mlflow.db'} is a file on this one. Set MLFLOW_TRACKING_URI to a tracking server "
                "every task reaches (one that serves its artifacts: infra/mlflow_server.sh).")  # fmt: skip
    return None


def _option(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _datastore_root() -> Path:
    """The local ``.metaflow`` folder Metaflow will use (found upwards from the cwd), created if absent — with
    ``exist_ok``, because Metaflow's own ``os.mkdir`` fails when two runs start together in a new folder."""
    from metaflow.plugins.datastores.local_storage import LocalStorage

    found = LocalStorage.get_datastore_root_from_config(lambda *a, **k: None, create_on_absent=False)
    root = Path(found) if found else Path.cwd() / LocalStorage.DATASTORE_DIR
    root.mkdir(parents=True, exist_ok=True)  # METAFLOW_DATASTORE_SYSROOT_LOCAL may name a folder not made yet
    return root


def _latest_run_id(root: Path) -> str | None:
    path = root / FLOW / "latest_run"
    return path.read_text().strip() if path.is_file() else None


def _validate_run(argv: list[str]):
    """The recipe the ``run`` names, checked (``selm.pipeline.preflight``); exits with the reason if it is bad."""
    import shlex

    from selm.config import RecipeError, load_recipe
    from selm.pipeline import preflight

    try:
        recipe = load_recipe(_option(argv, "--recipe"), shlex.split(_option(argv, "--overrides") or ""))
        preflight.check(recipe)
    except RecipeError as e:
        sys.exit(f"{e}\nNothing was started. Fix the recipe or the environment and `run` again.")
    return recipe


def _set_resources_config(argv: list[str], command_at: int, resources_json: str) -> None:
    """SELMFlow's Config ``resources`` (its steps' ``@retry`` and ``@timeout``) from the recipe's ``[resources]``,
    unless the command line sets it itself. A Config is fixed when the flow is defined, before any Parameter is read:
    so it goes in as ``--config-value``, a top-level option (before ``run``). ``resume`` keeps the Config of the run
    it resumes."""
    if any(a in ("--config-value", "--config") and argv[i + 1 : i + 2] == ["resources"] for i, a in enumerate(argv)):
        return
    argv[command_at:command_at] = ["--config-value", "resources", resources_json]


def _refuse_finished(origin: str, experiment: str) -> None:
    """Exit 0 if the experiment already finished: in ``origin`` itself, or in a resume of it (Metaflow resumes
    the latest *started* run, which stays the failed original after a successful resume)."""
    from metaflow import Flow, Run

    runs = [Run(f"{FLOW}/{origin}"), *Flow(FLOW).runs(f"{EXPERIMENT_TAG}{experiment}")]
    done = next((r for r in runs if r.successful), None)
    if done is not None:
        print(f"experiment {experiment} already finished (run {done.pathspec}); nothing to resume.")
        sys.exit(0)


def _take_lock(folder: Path, experiment: str | None, argv: list[str]):
    """Lock this process's file and record which experiment it runs; refuse if another live process runs it.

    A ``run`` learns its experiment only once Metaflow allocated the run id: it is read from the ``--run-id-file``
    added here. The check-and-register is serialised by a folder-wide lock, so two ``resume`` typed at once cannot
    both pass."""
    folder.mkdir(exist_ok=True)
    with open(folder / ".guard", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if experiment is not None:
            for pid, other in _live_experiments(folder):
                if other == experiment:
                    sys.exit(
                        f"experiment {experiment} is still running (process {pid}); wait for it to finish, or stop "
                        f"it (Ctrl-C / kill {pid}) and then resume."
                    )
        me = folder / f"{os.getpid()}.lock"
        lock = open(me, "w")
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        record = {"experiment": experiment}
        if experiment is None and _option(argv, "--run-id-file") is None:
            run_id_file = str(folder / f"{os.getpid()}.run_id")
            record["run_id_file"] = run_id_file
            argv.extend(["--run-id-file", run_id_file])
        (folder / f"{os.getpid()}.json").write_text(json.dumps(record))
    return lock


def _live_experiments(folder: Path):
    """(pid, experiment) of every process that holds its lock; files of dead processes are removed."""
    for lock_file in folder.glob("*.lock"):
        pid = lock_file.stem
        with open(lock_file, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                alive = True
            else:
                alive = False
        if not alive:
            for stale in folder.glob(f"{pid}.*"):
                stale.unlink(missing_ok=True)
            continue
        try:
            record = json.loads((folder / f"{pid}.json").read_text())
        except (OSError, ValueError):
            continue
        experiment = record.get("experiment")
        if experiment is None and record.get("run_id_file") and os.path.exists(record["run_id_file"]):
            experiment = f"{FLOW}-{Path(record['run_id_file']).read_text().strip()}"
        yield pid, experiment


_stopped_by: list[str] = []  # the signal that stopped this process, for the last message


def _interrupt(signum, frame):
    """SIGTERM is handled like Ctrl-C: every process under this one (Metaflow's tasks, a round's own Metaflow run
    and its tasks) gets the SIGINT a terminal would have sent them, so that none goes on alone; then Metaflow stops
    as on Ctrl-C."""
    if not _stopped_by and signum == signal.SIGTERM:
        for pid in _descendants(os.getpid()):
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    _stopped_by.append(signal.Signals(signum).name)
    raise KeyboardInterrupt


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` (read from /proc; empty where there is none)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def main(flow_class) -> NoReturn:
    """SELMFlow's entry point: guard the command line, run Metaflow, and say what happened on a stop."""
    lock = guard_command_line(sys.argv)  # noqa: F841  (held until the process exits)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        code = exit_code_of(flow_class)
    finally:
        if _stopped_by:
            print(
                f"\nselm: stopped by {_stopped_by[0]}; finished steps are kept. Continue the experiment with "
                "`python flows/selm_flow.py resume`.",
                file=sys.stderr,
            )
    exit_without_teardown(code)


# ---------------------------------------------------------------- cards


#: the card type of every step whose card is written once, when the step ends (``step_card``)
STEP_CARD = "selm_step"


def step_card() -> str:
    """Register Metaflow's blank card without live updates as the card type ``STEP_CARD`` and return its name.

    A runtime-updatable card (Metaflow's "blank") is rendered twice at the end of each task, each time by a process
    of its own, ≈ 0.6 s on 2 cores: once as the card, once more as a "refresh" for a live viewer. The flows' cards
    are written by their steps and never refreshed while a step runs, so the second render shows nothing new: with
    this type each card costs one process (26 fewer in the default run). Metaflow finds card types in
    ``metaflow.plugins.CARDS``; every process that renders one (the flow's, each task's, each card's) imports the
    flow file, which calls this. Calling it again adds nothing."""
    from metaflow.plugins import CARDS
    from metaflow.plugins.cards.card_modules.basic import BlankCard

    if not any(c.type == STEP_CARD for c in CARDS):
        CARDS.append(type("StepCard", (BlankCard,), {"type": STEP_CARD, "RUNTIME_UPDATABLE": False}))
    return STEP_CARD


# ---------------------------------------------------------------- leaving a process


#: the exit status with which Metaflow's runtime never retries a task (``metaflow.exception``)
EXIT_DISALLOW_RETRY = 202


def exit_code_of(entry_point) -> int | str | None:
    """Call a Metaflow entry point (it ends with ``sys.exit``) and return the code it exits with:
    ``EXIT_DISALLOW_RETRY`` when the error that stopped it is permanent (``selm.errors.permanent``), so that a step
    which failed that way is not run again by its ``@retry``. Metaflow exits from inside its handler of the step's
    error, so that error is the ``SystemExit``'s context."""
    try:
        entry_point()
    except SystemExit as e:
        if e.code and permanent(e.__context__):
            print(f"selm: {type(e.__context__).__name__} is not retried (a retry would fail the same way)",
                  file=sys.stderr)  # fmt: skip
            return EXIT_DISALLOW_RETRY
        return e.code
    return 0


def exit_without_teardown(code: int | str | None) -> NoReturn:
    """``sys.exit(code)`` minus the interpreter's teardown of its modules.

    A flow file runs as a process for every Metaflow step, once more for its card and once for each run's
    runtime, and a process that imported MLflow, SQLAlchemy and torch spends 0.5–2.5 s after its last line freeing
    module objects one by one (the default tiny run: 313 s with that teardown, 251 s without). Everything a normal
    exit guarantees is kept, in its order: non-daemon threads are joined, ``atexit`` handlers run (MLflow's
    queues, ``logging.shutdown``, temporary folders), stdio is flushed; then ``os._exit``. A message
    (``sys.exit("why")``) takes the normal path. After a failure the threads get 10 s in all: a step stopped by its
    ``@timeout`` may have left a judge call hanging, and waiting for it would undo the timeout."""
    if not (code is None or isinstance(code, int)):
        sys.exit(code)
    deadline = None if not code else time.monotonic() + 10  # a failed step may leave a thread hung on the network
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing left to say
            pass
    os._exit(code or 0)
