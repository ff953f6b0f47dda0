"""The flow's command line as a user types it: bad input fails in seconds with the reason and leaves nothing behind
(no .metaflow, no mlflow.db, no run, no parameter on disk); `resume` with nothing to resume says so.

Each case runs ``python flows/selm_flow.py run ...`` for real in an empty folder."""

import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT

SELM_FLOW = str(ROOT / "flows" / "selm_flow.py")


def selm_flow(tmp_path, *args, env=None):
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, SELM_FLOW, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    return p.returncode, p.stdout + p.stderr, time.perf_counter() - t0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CASES = {
    "unknown key": ("train.lr_rate=0.1", {}, "train.lr_rate: unknown key"),
    "negative learning rate": ("train.learning_rate=-1", {}, "train.learning_rate: Input should be greater than 0"),
    "zero rounds": ("experiment.rounds=0", {}, "experiment.rounds: Input should be greater than or equal to 1"),
    "missing prompts file": (
        "world.name=prompts world.prompts_file=nowhere.jsonl judge.backend=embedding",
        {},
        "world.prompts_file = 'nowhere.jsonl'",
    ),
    "missing policy folder": ("policy.init=./no-such-policy", {}, "policy.init = './no-such-policy': no such folder"),
    "LLM judge where nothing listens": (
        "judge.backend=llm judge.llm.base_url=http://127.0.0.1:{port}/v1",
        {},
        "nothing listens at http://127.0.0.1:{port}/v1",
    ),
    "unset API key variable": (
        "judge.backend=llm judge.llm.api_key_env=SELM_TEST_UNSET_KEY judge.llm.base_url=http://127.0.0.1:{port}/v1",
        {},
        "the environment variable SELM_TEST_UNSET_KEY (the API key) is not set",
    ),
    "misspelt judge template": (
        "judge.backend=llm judge.llm.template=pairwse judge.llm.base_url=http://127.0.0.1:{port}/v1",
        {},
        "judge template 'pairwse': no such file, and shipped templates are pairwise",
    ),
    "unreachable MLflow server": ("", {"MLFLOW_TRACKING_URI": "http://127.0.0.1:{port}"}, "no MLflow server answered"),
    "required benchmark without data": (
        "eval.lm_eval.required=true",
        {"SELM_DATA_DIR": "{tmp}/empty"},
        "arc_challenge_local needs",
    ),
    "unwritable output folder": ("experiment.output_dir=blocker/out", {}, "is not writable: "),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_fails_in_seconds_and_leaves_nothing_behind(case, tmp_path):
    overrides, env, expected = CASES[case]
    port = closed_port()
    fill = dict(port=port, tmp=tmp_path)
    (tmp_path / "blocker").write_text("a file where the output folder should be")
    (tmp_path / "empty").mkdir()
    env = {k: v.format(**fill) for k, v in env.items()}
    rc, out, seconds = selm_flow(tmp_path, "run", "--overrides", overrides.format(**fill), env=env)
    print(f"{case}: {seconds:.1f} s\n{out}")
    assert rc == 1 and expected.format(**fill) in out, out
    assert "Nothing was started" in out
    assert not (tmp_path / ".metaflow").exists() and not (tmp_path / "mlflow.db").exists()


def test_a_pasted_api_key_is_refused_and_never_stored(tmp_path):
    secret = "sk-proj-THISISASECRETKEY1234567890"
    rc, out, _ = selm_flow(tmp_path, "run", "--overrides", f"judge.backend=llm judge.llm.api_key_env={secret}")
    assert rc == 1 and "must be the NAME of the environment variable" in out and secret not in out
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not any(secret in p.read_text(errors="ignore") for p in files), files


def test_misspelt_recipe_name_lists_the_shipped_ones(tmp_path):
    rc, out, _ = selm_flow(tmp_path, "run", "--recipe", "tiny_slem")
    assert rc == 1 and "no recipe named 'tiny_slem'; shipped recipes:" in out and "tiny_selm" in out


def test_malformed_toml_names_the_file_and_line(tmp_path):
    (tmp_path / "r.toml").write_text('[train]\nloss = "dpo"\nbeta = = 0.1\n')
    rc, out, _ = selm_flow(tmp_path, "run", "--recipe", "r.toml")
    assert rc == 1 and "r.toml: not valid TOML" in out and "line 3" in out


def test_no_user_name(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("USERNAME", "USER", "METAFLOW_USER", "SUDO_USER")}
    p = subprocess.run([sys.executable, SELM_FLOW, "run"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert p.returncode == 1 and "neither USERNAME nor USER is set" in p.stdout + p.stderr


def test_root_as_the_user_name_is_refused_before_anything_is_written(tmp_path):
    """Metaflow refuses "root" ("Unknown user"): said first, with nothing on disk (no .metaflow, no lock)."""
    env = {k: v for k, v in os.environ.items() if k not in ("METAFLOW_USER", "SUDO_USER")}
    for command in ("run", "resume"):
        p = subprocess.run([sys.executable, SELM_FLOW, command], cwd=tmp_path, capture_output=True, text=True,
                           env={**env, "USERNAME": "root", "USER": "root"})  # fmt: skip
        assert p.returncode == 1 and "does not accept the user name 'root'" in p.stdout + p.stderr, p.stderr
        assert list(tmp_path.iterdir()) == []


def test_list_overrides_in_the_natural_shell_spelling(tmp_path):
    """`eval.lm_eval.tasks=["a","b"]` reaches the program as [a,b] once the shell took the quotes: still a list
    (here of a misspelt task, so that the run stops at validation)."""
    rc, out, _ = selm_flow(tmp_path, "run", "--overrides", "eval.lm_eval.tasks=[arc_challenge_local,nope_local]")
    assert rc == 1 and "unknown local task 'nope_local'" in out


def test_step_cards_are_metaflows_blank_card_without_live_updates():
    """The flows' step cards (``selm.orchestration.step_card``) are rendered by one process, not two: Metaflow finds
    the type, it takes components like "blank" and has no live updates; Metaflow's own "blank" is left as it was."""
    from metaflow.plugins import CARDS
    from metaflow.plugins.cards.card_modules.basic import BlankCard
    from metaflow.plugins.cards.component_serializer import get_card_class

    from selm.orchestration import STEP_CARD, step_card

    assert step_card() == step_card() == STEP_CARD
    assert [c.type for c in CARDS].count(STEP_CARD) == 1
    card = get_card_class(STEP_CARD)
    assert issubclass(card, BlankCard) and card.ALLOW_USER_COMPONENTS and not card.RUNTIME_UPDATABLE
    assert get_card_class("blank").RUNTIME_UPDATABLE


EXITING = """
import atexit, sys, threading, time
from selm.orchestration import exit_code_of, exit_without_teardown

class Noisy:
    def __del__(self):
        print("module teardown", flush=True)

noisy = Noisy()  # freed only by the interpreter's teardown of this module
threading.Thread(target=lambda: (time.sleep(0.3), print("thread joined"))).start()
atexit.register(lambda: print("atexit handler ran"))
sys.stdout.write("buffered, ")
exit_without_teardown(exit_code_of(lambda: sys.exit(eval(sys.argv[1]))))
"""


@pytest.mark.parametrize("code, returncode", [("0", 0), ("None", 0), ("3", 3)])
def test_a_flow_process_exits_like_python_without_the_module_teardown(code, returncode):
    """Flow files leave through ``exit_without_teardown``: same exit code, threads joined, atexit handlers run and
    buffered output kept — and the slow teardown of every imported module skipped."""
    p = subprocess.run([sys.executable, "-c", EXITING, code], capture_output=True, text=True, timeout=60)
    assert p.returncode == returncode, p.stderr
    assert p.stdout == "buffered, thread joined\natexit handler ran\n"


def test_an_exit_with_a_message_takes_the_normal_path():
    p = subprocess.run([sys.executable, "-c", EXITING, "'why it stopped'"], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stderr) == (1, "why it stopped\n")
    assert p.stdout.endswith("atexit handler ran\nmodule teardown\n")


PERMANENT = """
import errno, sys
from selm.orchestration import exit_code_of, exit_without_teardown

def step():  # as Metaflow's command line ends a failed task: sys.exit(1) from inside its handler of the error
    try:
        raise eval(sys.argv[1])
    except Exception:
        sys.exit(1)

exit_without_teardown(exit_code_of(step))
"""


@pytest.mark.parametrize(
    "error, returncode",
    [
        ("__import__('selm.config').config.RecipeError('bad key')", 202),
        ("__import__('selm.judges.llm').judges.llm.JudgeRefused('HTTP 401')", 202),
        ("OSError(errno.ENOSPC, 'No space left on device')", 202),
        ("RuntimeError('CUDA error: an illegal memory access')", 1),
        ("__import__('selm.judges.llm').judges.llm.JudgeUnavailable('HTTP 503, 6 times')", 1),
        ("OSError(errno.ECONNRESET, 'reset')", 1),
    ],
)
def test_a_permanent_error_exits_with_the_status_metaflow_never_retries(error, returncode):
    """202 (``METAFLOW_EXIT_DISALLOW_RETRY``) for a bad recipe, a refused judge call, a full disk; a failure that may
    pass keeps status 1, which ``@retry`` retries. (The end-to-end check: tests/test_unattended.py.)"""
    from metaflow.exception import METAFLOW_EXIT_DISALLOW_RETRY

    assert METAFLOW_EXIT_DISALLOW_RETRY == 202
    p = subprocess.run([sys.executable, "-c", PERMANENT, error], capture_output=True, text=True, timeout=60)
    assert p.returncode == returncode, p.stderr
    assert ("is not retried" in p.stderr) == (returncode == 202)


def test_a_failed_process_does_not_wait_for_a_hung_thread():
    """After a failure (a step stopped by its @timeout with a judge call still hanging) the threads get 10 s in all,
    then the process exits: it does not wait the 10 minutes of the hung call."""
    code = (
        "import threading, time\nfrom selm.orchestration import exit_without_teardown\n"
        "threading.Thread(target=time.sleep, args=(600,)).start()\nexit_without_teardown(1)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 1


def test_a_run_takes_its_retries_and_timeouts_from_the_recipe(tmp_path, monkeypatch):
    """``run``: SELMFlow's Config ``resources`` (its @retry and @timeout) is set from the recipe, before ``run``;
    one given on the command line is kept as given."""
    import json

    from selm.orchestration import guard_command_line

    monkeypatch.chdir(tmp_path)
    argv = ["selm_flow.py", "run", "--overrides", "resources.retries=1 resources.judge.timeout_minutes=5"]
    guard_command_line(argv)
    assert argv[1:3] == ["--config-value", "resources"] and argv[4] == "run"
    given = json.loads(argv[3])
    assert given["retries"] == 1 and given["judge"]["timeout_minutes"] == 5
    argv = ["selm_flow.py", "--config-value", "resources", '{"retries": 0}', "run"]
    guard_command_line(argv)
    assert argv[:5] == ["selm_flow.py", "--config-value", "resources", '{"retries": 0}', "run"]


def test_work_done_while_a_round_runs_is_waited_for_and_its_error_kept():
    """SELMFlow opens MLflow in a thread while the round runs (``run_round_flow``'s ``meanwhile``): the caller waits
    for it (a resumed round's MLflow run is reopened before anything logs to it), and what it raised is raised."""
    from selm.orchestration import _Background

    done = []
    ok = _Background(lambda: (time.sleep(0.2), done.append(1)))
    ok.start()
    ok.wait()
    ok.raise_error()
    assert done == [1]

    def fails():
        raise OSError("no tracking store")

    bad = _Background(fails)
    bad.start()
    bad.wait()
    with pytest.raises(OSError, match="no tracking store"):
        bad.raise_error()
    _Background(None).wait()  # never started (the launch failed): nothing to wait for
