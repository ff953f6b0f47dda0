"""The comparison command on a real sqlite MLflow store: experiments by run id, name and Metaflow tag, a registered
policy version by alias; side-by-side table with deltas and PNG plots."""

from evals import compare
from selm import tracking
from selm.config import load_recipe


def experiment(recipe, name, metaflow_run, rewards, mt_bench):
    run = tracking.start_run(recipe, name, key=metaflow_run, tags={"metaflow_run": metaflow_run})
    for k, (r, mt) in enumerate(zip(rewards, mt_bench)):
        tracking.log_metrics(run, {"heldout_reward": r, "heldout_reward_se": 0.01, "mt_bench_proxy_score": mt}, step=k)
    tracking.log_metrics(run, {"time_train_s": 3.0}, step=1)  # not shown by default
    return run


def test_side_by_side_table_deltas_and_plots(mlflow_home, tiny_policy_dir, capsys):
    selm = experiment(load_recipe(), "tiny-selm", "SELMFlow/1", [1.6, 1.8, 1.9], [2.0, 2.5, 2.25])
    experiment(load_recipe(None, ["train.loss=dpo"]), "tiny-dpo", "SELMFlow/2", [1.6, 1.7, 1.75], [2.0, 2.0, 2.5])
    round_run = tracking.start_run(load_recipe(), "round-2", key="exp/round-2", parent_run_id=selm, tags={"round": "2"})
    tracking.log_metrics(round_run, {"heldout_reward": 1.8})
    registered = tracking.register_policy(
        round_run, str(tiny_policy_dir), load_recipe(), 2, {"heldout_reward": 1.8}, "SELMFlow-1"
    )

    c = tracking.client()
    by_id, by_tag, by_name = (compare.load_series(c, i) for i in (selm, "SELMFlow/2", "tiny-dpo"))
    assert by_id.rounds[2]["heldout_reward"] == 1.9 and by_tag.rounds == by_name.rounds
    version = compare.load_series(c, "models:/tiny-selm-policy@selmflow-1-round-2")
    assert version.label == f"tiny-selm-policy v{registered['version']}" and version.rounds == {
        2: {"heldout_reward": 1.8}
    }

    rows = compare.table([by_id, by_tag, version])
    row = next(r for r in rows if r["metric"] == "heldout_reward" and r["round"] == 2)
    assert row[f"Δ {by_tag.label}"] == 1.75 - 1.9 and row[f"Δ {version.label}"] == 1.8 - 1.9
    assert not any(r["metric"] in ("time_train_s", "heldout_reward_se") for r in rows)
    first = next(r for r in rows if r["metric"] == "heldout_reward" and r["round"] == 0)
    assert first[version.label] is None and first[f"Δ {version.label}"] is None

    assert compare.main([selm, "SELMFlow/2", "--out", str(mlflow_home / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "Δ tiny-dpo (SELMFlow/2)" in out and "-0.1500" in out and "+0.2500" in out
    assert sorted(p.name for p in (mlflow_home / "cmp").iterdir()) == ["heldout_reward.png", "mt_bench_proxy_score.png"]


def test_paired_deltas_over_the_prompts_both_experiments_answered(mlflow_home, capsys):
    """Per-prompt scores as the flows log them (round 0 on the experiment run, round k on its round run): the
    comparison pairs the prompts both answered and gives Δ with its paired SE."""
    import math

    runs = {}
    for name, round0, round1 in (
        ("smol-selm", {"a": 0.0, "b": 1.0, "c": 0.0}, {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}),
        ("smol-dpo", {"a": 0.0, "b": 1.0, "c": 0.0}, {"a": 0.0, "b": 1.0, "c": 1.0}),
    ):
        recipe = load_recipe()
        run = tracking.start_run(recipe, name, key=name, tags={"metaflow_run": f"SELMFlow/{name}"})
        tracking.log_metrics(run, {"lm_eval_ifeval_local_prompt_level_loose_acc": sum(round0.values()) / 3}, step=0)
        tracking.log_dict(run, {"lm_eval_ifeval_local_prompt_level_loose_acc": round0}, "scores_per_prompt_round0.json")
        child = tracking.start_run(recipe, "round-1", key=f"{name}/round-1", parent_run_id=run, tags={"round": "1"})
        tracking.log_dict(child, {"lm_eval_ifeval_local_prompt_level_loose_acc": round1}, "scores_per_prompt.json")
        runs[name] = run

    c = tracking.client()
    selm, dpo = (compare.load_series(c, runs[n]) for n in ("smol-selm", "smol-dpo"))
    assert set(selm.scores) == {0, 1} and selm.scores[1]["lm_eval_ifeval_local_prompt_level_loose_acc"]["d"] == 1.0
    rows = {r["round"]: r for r in compare.paired_table([selm, dpo])}
    assert rows[0]["Δ"] == 0 and rows[0]["n"] == 3  # the same initial policy: no difference
    # round 1 over a b c (d only in the first): dpo − selm = (0−1, 1−1, 1−1) = (−1, 0, 0); s² = 1/3
    assert rows[1]["n"] == 3 and rows[1]["Δ"] == -1 / 3
    assert math.isclose(rows[1]["SE"], math.sqrt(1 / 3) / math.sqrt(3))
    assert compare.main([runs["smol-selm"], runs["smol-dpo"], "--out", str(mlflow_home / "cmp")]) == 0
    assert "paired over the same prompts" in capsys.readouterr().out
