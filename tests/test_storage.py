"""Hand-offs between tasks that share no disk (``selm.storage``), against a real S3-compatible server (moto's)."""

from pathlib import Path

import pytest

from selm import storage
from selm.judges.cache import JudgmentCache


def test_a_published_folder_arrives_whole_on_another_disk_once(s3_env, tmp_path, monkeypatch):
    folder = tmp_path / "written" / "policy"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 100)

    uri = storage.publish(folder, "s3://selm/exp-a", "round-1/policy")
    assert uri == "s3://selm/exp-a/round-1/policy"

    monkeypatch.setenv("SELM_CACHE", str(tmp_path / "other-disk"))  # the reading task's own cache
    local = Path(storage.local_copy(uri))
    assert local.is_relative_to(tmp_path / "other-disk")
    files = {p.relative_to(local): p.read_bytes() for p in local.rglob("*") if p.is_file()}
    assert files == {Path("config.json"): b'{"a": 1}', Path("sub/weights.bin"): bytes(range(256)) * 100}
    (local / "config.json").write_text("kept")  # a second read is the copy already there, not a second download
    assert (Path(storage.local_copy(uri)) / "config.json").read_text() == "kept"


def test_a_missing_remote_folder_and_a_local_path_from_another_machine_say_what_to_configure(s3_env, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing at s3://selm/exp-none/round-1/policy"):
        storage.local_copy("s3://selm/exp-none/round-1/policy")
    with pytest.raises(FileNotFoundError, match=r"not on this machine .*experiment.output_uri = 's3://"):
        storage.local_copy(str(tmp_path / "elsewhere" / "policy"))
    assert storage.local_copy("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_without_a_store_a_hand_off_is_the_folder_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "policy").mkdir(parents=True)
    assert storage.publish("outputs/policy", "", "round-1/policy") == str(tmp_path / "outputs" / "policy")


def test_the_store_is_the_recipe_uri_else_a_remote_datastore_root_else_none():
    assert storage.experiment_store("", "local", "/x/.metaflow", "e1") == ""
    assert storage.experiment_store("", None, None, "e1") == ""
    assert storage.experiment_store("", "s3", "s3://b/mf/", "e1") == "s3://b/mf/selm/e1"
    assert storage.experiment_store("s3://mine/p/", "s3", "s3://b/mf", "e1") == "s3://mine/p/e1"
    assert storage.experiment_store("s3://mine", "local", None, "e1") == "s3://mine/e1"
    with pytest.raises(ValueError, match="only s3:// is supported"):
        storage.experiment_store("", "gs", "gs://b/mf", "e1")


def test_judgments_paid_in_one_task_are_found_by_a_retry_on_a_fresh_disk(s3_env, tmp_path):
    mirror = "s3://selm/exp-j/judgments"
    first = JudgmentCache(tmp_path / "pod-1" / "judgments.sqlite", mirror)
    first.put_many("judge-a", [("p1", ["r1"], {"score": 1.0}), ("p1", ["r2"], {"score": 0.0})])
    first.put("judge-a", "p2", ["r1", "r2"], [0.3, 0.7])
    # the task is killed here; Metaflow retries it in a fresh pod with an empty disk
    retry = JudgmentCache(tmp_path / "pod-2" / "judgments.sqlite", mirror)
    assert len(retry) == 3
    assert retry.get("judge-a", "p1", ["r2"]) == {"score": 0.0}
    assert retry.get("judge-a", "p2", ["r1", "r2"]) == [0.3, 0.7]
    assert retry.get("judge-b", "p1", ["r1"]) is None
    other = JudgmentCache(tmp_path / "pod-3" / "judgments.sqlite", "s3://selm/exp-other/judgments")
    assert len(other) == 0  # another experiment's store starts empty


def test_a_remote_datastore_with_a_tracking_store_on_local_disk_is_refused_before_anything_starts(monkeypatch):
    from selm.orchestration import _unshared_tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    problem = _unshared_tracking(["flows/selm_flow.py", "--datastore", "s3", "run"])
    assert problem is not None and "MLFLOW_TRACKING_URI" in problem and "sqlite:///mlflow.db" in problem
    assert _unshared_tracking(["flows/selm_flow.py", "run"]) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert _unshared_tracking(["flows/selm_flow.py", "--datastore", "s3", "run"]) is None
