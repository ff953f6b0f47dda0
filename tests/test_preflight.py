"""Preflight against real components: closed ports, a socket that never answers, real HTTP servers, real files."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from selm import worlds
from selm.config import RecipeError, load_recipe
from selm.pipeline.preflight import check

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
NO_BENCHMARKS = ["eval.mt_bench.enabled=false", "eval.alpaca_eval.enabled=false", "eval.lm_eval.tasks=[]"]
SECRET = "sk-live-Zq81vK3xT0pL9wQ2"


@pytest.fixture(autouse=True)
def clean_env(tmp_path, monkeypatch):
    """Each test in its own working directory (output_dir and ./mlflow.db land there), with a user name, a local
    MLflow store, an empty download cache and the hub offline (as conftest sets it)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USERNAME", "selm-tests")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SELM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    empty = tmp_path / "empty-data"
    empty.mkdir()
    monkeypatch.setenv("SELM_DATA_DIR", str(empty))
    return empty


@pytest.fixture
def shared_data(monkeypatch):
    if not (SHARED_DATA / "mt_bench" / "question.jsonl").is_file():
        pytest.skip(f"the shared evaluation data is not at {SHARED_DATA}")
    monkeypatch.setenv("SELM_DATA_DIR", str(SHARED_DATA))
    return SHARED_DATA


def recipe(*overrides: str):
    """The default recipe with no benchmarks, so that each test sees only the problem it sets up."""
    return load_recipe(None, [*NO_BENCHMARKS, *overrides])


def problems(r, timeout: float = 1) -> str:
    with pytest.raises(RecipeError) as e:
        check(r, probe_timeout_s=timeout)
    return str(e.value)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.1)
    held, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def http_server():
    """A real HTTP server: ``status`` maps a path to the code it answers (default 404); ``seen`` records the
    Authorization header of each request."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            server.seen.append((self.path, self.headers.get("Authorization")))
            code = server.status.get(self.path, 404)
            body = json.dumps({"data": []} if code == 200 else {"error": "no"}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.status, server.seen = {}, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def llm_judge(base_url: str, *more: str):
    return recipe("judge.backend=llm", f"judge.llm.base_url={base_url}", *more)


# ---------------------------------------------------------------- the default recipe


def test_default_recipe_without_data_skips_every_benchmark_with_the_reason(no_data):
    p = check(load_recipe(None), probe_timeout_s=1)
    assert set(p.skipped) == {"mt_bench", "alpaca_eval", "lm_eval:arc_challenge_local", "lm_eval:truthfulqa_mc1_local"}
    assert "mt_bench/question.jsonl" in p.skipped["mt_bench"] and "eval.mt_bench.questions" in p.skipped["mt_bench"]
    alpaca = p.skipped["alpaca_eval"]
    assert "SELM_DATA_DIR" in alpaca and "pass the file's path as eval.alpaca_eval.baseline_outputs" in alpaca
    arc = p.skipped["lm_eval:arc_challenge_local"]
    assert str(no_data / "arc_challenge") in arc and "set SELM_DATA_DIR to the folder holding arc_challenge/" in arc
    e = p.recipe.eval
    assert not e.mt_bench.enabled and not e.alpaca_eval.enabled and e.lm_eval.tasks == []
    assert p.recipe.train == load_recipe(None).train  # nothing else changed


def test_required_lm_eval_without_data_is_an_error_naming_the_key(no_data):
    msg = problems(load_recipe(None, ["eval.lm_eval.required=true"]))
    assert "eval.lm_eval.tasks: arc_challenge_local needs" in msg and "eval.lm_eval.required = true" in msg
    assert "truthfulqa_mc1_local needs" in msg and "mt_bench" not in msg  # the others are still skipped


def test_required_mt_bench_without_data_is_an_error(no_data):
    msg = problems(load_recipe(None, ["eval.mt_bench.required=true"]))
    assert "eval.mt_bench.required = true, but mt_bench/question.jsonl" in msg


def test_default_recipe_with_the_shared_data_runs_everything(shared_data):
    r = load_recipe(None)
    t0 = time.perf_counter()
    p = check(r, probe_timeout_s=1)
    print(f"preflight of the default recipe with the data present: {time.perf_counter() - t0:.3f} s")
    assert p.skipped == {}
    # the recipe to run is the recipe, with the world's default objective weights written out
    assert p.recipe.model_dump(exclude={"judge": {"weights"}}) == r.model_dump(exclude={"judge": {"weights"}})
    assert r.judge.weights == {} and p.recipe.judge.weights == worlds.get("tiny").default_weights


def test_an_explicit_data_path_that_does_not_exist_is_an_error_not_a_skip(shared_data, tmp_path):
    missing = tmp_path / "outputs.json"
    msg = problems(load_recipe(None, [f"eval.alpaca_eval.baseline_outputs={missing}"]))
    assert f"eval.alpaca_eval.baseline_outputs = '{missing}': no such file" in msg


# ---------------------------------------------------------------- lm-eval task names


def test_unknown_local_task_lists_the_local_tasks(shared_data):
    msg = problems(recipe("eval.lm_eval.tasks=[arc_chalenge_local]"))
    assert "eval.lm_eval.tasks: unknown local task 'arc_chalenge_local'" in msg and "truthfulqa_mc2_local" in msg


def test_unknown_standard_task_suggests_close_names(shared_data):
    msg = problems(recipe("eval.lm_eval.tasks=[arc_chalenge]"))
    assert "eval.lm_eval.tasks: unknown lm-eval task 'arc_chalenge'; close: arc_challenge" in msg


def test_a_standard_task_offline_is_skipped_with_the_local_alternative(shared_data):
    p = check(recipe("eval.lm_eval.tasks=[arc_challenge,truthfulqa_mc1_local]"), probe_timeout_s=1)
    why = p.skipped["lm_eval:arc_challenge"]
    assert "needs the Hugging Face hub; HF_HUB_OFFLINE=1" in why and "arc_challenge_local" in why
    assert p.recipe.eval.lm_eval.tasks == ["truthfulqa_mc1_local"]


# ---------------------------------------------------------------- environment, models


def test_no_user_name(monkeypatch):
    monkeypatch.delenv("USERNAME", raising=False)
    monkeypatch.delenv("USER", raising=False)
    msg = problems(recipe())
    assert "USERNAME: neither USERNAME nor USER is set" in msg and "export USERNAME=$(whoami)" in msg


def test_missing_policy_folder(tmp_path):
    missing = tmp_path / "no-such-policy"
    assert f"policy.init = '{missing}': no such folder" in problems(recipe(f"policy.init={missing}"))


def test_policy_folder_without_config_json(tmp_path):
    (tmp_path / "half").mkdir()
    assert "holds no config.json" in problems(recipe(f"policy.init={tmp_path / 'half'}"))


def test_hub_id_not_in_the_cache_offline():
    msg = problems(recipe("policy.init=selm-tests/no-such-model"))
    assert "policy.init = 'selm-tests/no-such-model': no such folder, and not in the Hugging Face cache" in msg
    assert "(offline: HF_HUB_OFFLINE=1)" in msg and "repo id" not in msg.lower()


def test_hub_id_online_but_the_hub_cannot_be_reached_or_has_no_such_model(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")  # this machine has no hub: either it does not answer, or knows no such model
    msg = problems(recipe("policy.init=selm-tests/no-such-model"))
    assert "policy.init = 'selm-tests/no-such-model': no such folder" in msg


def test_hub_id_in_the_local_cache_is_accepted(tmp_path, monkeypatch):
    from huggingface_hub import constants

    snapshot = tmp_path / "hub" / "models--selm-tests--cached" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # read when called, not at import
    assert check(recipe("policy.init=selm-tests/cached"), probe_timeout_s=1).skipped == {}


def test_missing_reward_model_folder(tmp_path):
    missing = tmp_path / "rm"
    msg = problems(recipe("judge.backend=reward_model", f"judge.reward_model={missing}"))
    assert f"judge.reward_model = '{missing}': no such folder" in msg


# ---------------------------------------------------------------- prompts file


def prompts_recipe(path, *more: str):
    return recipe("world.name=prompts", f"world.prompts_file={path}", "judge.backend=embedding", *more)


def write_prompts(path: Path, n: int, pair: bool = True) -> Path:
    rows = [{"prompt": f"q{i}", **({"chosen": "good", "rejected": "bad"} if pair else {})} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_missing_prompts_file(tmp_path):
    msg = problems(prompts_recipe(tmp_path / "nope.jsonl"))
    assert "world.prompts_file = " in msg and "nope.jsonl" in msg and "not found" in msg


def test_malformed_prompts_line_names_file_and_line(tmp_path):
    f = write_prompts(tmp_path / "file.jsonl", 4)
    lines = f.read_text().splitlines()
    lines[2] = '{"prompt": "broken'
    f.write_text("\n".join(lines) + "\n")
    assert "file.jsonl:3" in problems(prompts_recipe(f))


def test_too_few_prompts_says_how_many_are_needed(tmp_path):
    f = write_prompts(tmp_path / "few.jsonl", 5)
    msg = problems(prompts_recipe(f, "experiment.rounds=3", "world.train_prompts_per_round=2"))
    assert "5 prompts, but experiment.rounds = 3 × world.train_prompts_per_round = 2 need 6" in msg


def test_dataset_candidates_need_chosen_and_rejected(tmp_path):
    f = write_prompts(tmp_path / "bare.jsonl", 6, pair=False)
    msg = problems(prompts_recipe(f, "world.train_prompts_per_round=2", "pairs.dataset_candidates=true"))
    assert "pairs.dataset_candidates = true: 6 of 6 prompts" in msg and "(first: record 1)" in msg


# ---------------------------------------------------------------- LLM judges


def test_misspelt_judge_template_lists_the_shipped_ones(http_server):
    msg = problems(llm_judge(f"http://127.0.0.1:{http_server.server_port}/v1", "judge.llm.template=tiny-pairwize"))
    assert "judge.llm.template = 'tiny-pairwize'" in msg and "tiny-pairwise" in msg and "tiny-single" in msg


def test_api_key_variable_not_set(http_server, monkeypatch):
    monkeypatch.delenv("SELM_TEST_JUDGE_KEY", raising=False)
    url = f"http://127.0.0.1:{http_server.server_port}/v1"
    msg = problems(llm_judge(url, "judge.llm.api_key_env=SELM_TEST_JUDGE_KEY"))
    assert "judge.llm.api_key_env = 'SELM_TEST_JUDGE_KEY': the environment variable SELM_TEST_JUDGE_KEY" in msg


def test_nothing_listens_at_the_judge_endpoint():
    url = f"http://127.0.0.1:{closed_port()}/v1"
    assert f"judge.llm.base_url = '{url}': nothing listens at {url} (connection refused)" in problems(llm_judge(url))


def test_a_judge_endpoint_that_never_answers_times_out(silent_port):
    url = f"http://127.0.0.1:{silent_port}/v1"
    t0 = time.perf_counter()
    msg = problems(llm_judge(url), timeout=1)
    assert f"{url} accepted the connection but did not answer within 1 s" in msg
    assert time.perf_counter() - t0 < 30  # bounded by the probe, not by the judge's own timeout_s (60 s)


def test_a_listening_judge_endpoint_passes_and_gets_the_key(http_server, monkeypatch):
    monkeypatch.setenv("SELM_TEST_JUDGE_KEY", SECRET)
    url = f"http://127.0.0.1:{http_server.server_port}/v1"  # /v1/models answers 404: listening is enough
    assert check(llm_judge(url, "judge.llm.api_key_env=SELM_TEST_JUDGE_KEY"), probe_timeout_s=1).skipped == {}
    assert http_server.seen == [("/v1/models", f"Bearer {SECRET}")]


def test_a_refused_key_is_named_by_its_variable_never_by_its_value(http_server, monkeypatch):
    monkeypatch.setenv("SELM_TEST_JUDGE_KEY", SECRET)
    http_server.status["/v1/models"] = 401
    url = f"http://127.0.0.1:{http_server.server_port}/v1"
    msg = problems(llm_judge(url, "judge.llm.api_key_env=SELM_TEST_JUDGE_KEY"))
    assert "judge.llm.api_key_env = 'SELM_TEST_JUDGE_KEY': the endpoint refused the key in $SELM_TEST_JUDGE_KEY " in msg
    assert SECRET not in msg and "Zq81vK3x" not in msg


def test_benchmark_llm_grader_is_probed_only_when_a_graded_benchmark_runs(no_data):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    graded = ["eval.judge.backend=llm", f"eval.judge.llm.base_url={url}"]
    assert check(recipe(*graded), probe_timeout_s=1).skipped == {}  # no benchmark: nobody grades
    # the data is absent: mt_bench is skipped, so the grader is not needed either
    assert "mt_bench" in check(recipe(*graded, "eval.mt_bench.enabled=true"), probe_timeout_s=1).skipped


def test_benchmark_llm_grader_unreachable(shared_data):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    msg = problems(recipe("eval.judge.backend=llm", f"eval.judge.llm.base_url={url}", "eval.mt_bench.enabled=true"))
    assert f"eval.judge.llm.base_url = '{url}': nothing listens at {url}" in msg


# ---------------------------------------------------------------- output folder, MLflow


def test_output_dir_blocked_by_a_file(tmp_path):
    (tmp_path / "blocker").write_text("a file where the folder should be")
    msg = problems(recipe(f"experiment.output_dir={tmp_path / 'blocker' / 'out'}"))
    assert f"experiment.output_dir = '{tmp_path / 'blocker' / 'out'}' is not writable: " in msg
    assert f"{tmp_path / 'blocker'} is a file, not a folder" in msg


def test_mlflow_server_not_running(monkeypatch):
    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    msg = problems(recipe())
    assert f"MLFLOW_TRACKING_URI={uri}: no MLflow server answered within 1 s (connection refused)" in msg
    assert "infra/mlflow_server.sh" in msg


def test_mlflow_server_that_answers_health_passes(http_server, monkeypatch):
    http_server.status["/health"] = 200
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{http_server.server_port}")
    assert check(recipe(), probe_timeout_s=1).skipped == {}


def test_mlflow_credentials_in_the_uri_are_never_shown(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{SECRET}@127.0.0.1:{closed_port()}")
    msg = problems(recipe())
    assert "MLFLOW_TRACKING_URI=http://***@127.0.0.1:" in msg and SECRET not in msg


def test_mlflow_sqlite_folder_not_writable(tmp_path, monkeypatch):
    (tmp_path / "db-file").write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'db-file' / 'mlflow.db'}")
    assert f"{tmp_path / 'db-file'} is a file, not a folder" in problems(recipe())


# ---------------------------------------------------------------- every problem at once


def test_every_problem_is_listed_one_line_each(tmp_path, monkeypatch):
    monkeypatch.delenv("USERNAME", raising=False)
    monkeypatch.delenv("USER", raising=False)
    (tmp_path / "blocker").write_text("")
    url = f"http://127.0.0.1:{closed_port()}/v1"
    msg = problems(llm_judge(url, f"experiment.output_dir={tmp_path / 'blocker'}", f"policy.init={tmp_path / 'x'}"))
    lines = msg.splitlines()
    assert lines[0] == "preflight found 4 problem(s); nothing has run yet:"
    keys = [line.strip().split(" ")[0].split(":")[0] for line in lines[1:]]
    assert keys == ["USERNAME", "policy.init", "experiment.output_dir", "judge.llm.base_url"]


def test_a_failed_preflight_creates_no_output_folder(tmp_path):
    out = tmp_path / "runs" / "out"
    msg = problems(recipe(f"experiment.output_dir={out}", "world.name=nope"))
    assert "world.name = 'nope': no such world" in msg and not (tmp_path / "runs").exists()
    assert check(recipe(f"experiment.output_dir={out}")).skipped is not None and not (tmp_path / "runs").exists()
