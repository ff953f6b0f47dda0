"""The comparison command on a real sqlite MLflow store: experiments by run id, name and Metaflow tag, a registered
policy version by alias; side-by-side table with deltas and PNG plots."""

import pytest

from evals import compare
from selm import tracking
from selm.config import load_recipe


def experiment(recipe, name, metaflow_run, rewards, mt_bench):
    run = tracking.start_run(recipe, name, key=metaflow_run, tags={"metaflow_run": metaflow_run})
    for k, (r, mt) in enumerate(zip(rewards, mt_bench)):
        tracking.log_metrics(run, {"heldout/reward": r, "heldout/reward_se": 0.01, "mt_bench_proxy/score": mt}, step=k)
    tracking.log_metrics(run, {"time/train_s": 3.0}, step=1)  # not shown by default
    return run


def test_side_by_side_table_deltas_and_plots(mlflow_home, tiny_policy_dir, capsys):
    selm = experiment(load_recipe(), "tiny-selm", "SELMFlow/1", [1.6, 1.8, 1.9], [2.0, 2.5, 2.25])
    experiment(load_recipe(None, ["train.loss=dpo"]), "tiny-dpo", "SELMFlow/2", [1.6, 1.7, 1.75], [2.0, 2.0, 2.5])
    round_run = tracking.start_run(load_recipe(), "round-2", key="exp/round-2", parent_run_id=selm, tags={"round": "2"})
    tracking.log_metrics(round_run, {"heldout/reward": 1.8})
    registered = tracking.register_policy(
        round_run, str(tiny_policy_dir), load_recipe(), 2, {"heldout/reward": 1.8}, "SELMFlow-1"
    )

    c = tracking.client()
    by_id, by_tag, by_name = (compare.load_series(c, i) for i in (selm, "SELMFlow/2", "tiny-dpo"))
    assert by_id.rounds[2]["heldout/reward"] == 1.9 and by_tag.rounds == by_name.rounds
    version = compare.load_series(c, "models:/tiny-selm-policy@selmflow-1-round-2")
    assert version.label == f"tiny-selm-policy v{registered['version']}" and version.rounds == {
        2: {"heldout/reward": 1.8}
    }

    rows = compare.table([by_id, by_tag, version])
    row = next(r for r in rows if r["metric"] == "heldout/reward" and r["round"] == 2)
    assert row[f"Δ {by_tag.label}"] == 1.75 - 1.9 and row[f"Δ {version.label}"] == 1.8 - 1.9
    assert not any(r["metric"] in ("time/train_s", "heldout/reward_se") for r in rows)
    first = next(r for r in rows if r["metric"] == "heldout/reward" and r["round"] == 0)
    assert first[version.label] is None and first[f"Δ {version.label}"] is None

    assert compare.main([selm, "SELMFlow/2", "--out", str(mlflow_home / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "Δ tiny-dpo (SELMFlow/2)" in out and "-0.1500" in out and "+0.2500" in out
    pngs = sorted(str(p.relative_to(mlflow_home / "cmp")) for p in (mlflow_home / "cmp").rglob("*.png"))
    assert pngs == ["heldout/reward.png", "mt_bench_proxy/score.png"]  # a folder per metric group


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
        tracking.log_metrics(run, {"lm_eval/ifeval_local_prompt_level_loose_acc": sum(round0.values()) / 3}, step=0)
        tracking.log_dict(run, {"lm_eval/ifeval_local_prompt_level_loose_acc": round0}, "scores_per_prompt_round0.json")
        child = tracking.start_run(recipe, "round-1", key=f"{name}/round-1", parent_run_id=run, tags={"round": "1"})
        tracking.log_dict(child, {"lm_eval/ifeval_local_prompt_level_loose_acc": round1}, "scores_per_prompt.json")
        runs[name] = run

    c = tracking.client()
    selm, dpo = (compare.load_series(c, runs[n]) for n in ("smol-selm", "smol-dpo"))
    assert set(selm.scores) == {0, 1} and selm.scores[1]["lm_eval/ifeval_local_prompt_level_loose_acc"]["d"] == 1.0
    rows = {r["round"]: r for r in compare.paired_table([selm, dpo])}
    assert rows[0]["Δ"] == 0 and rows[0]["n"] == 3  # the same initial policy: no difference
    # round 1 over a b c (d only in the first): dpo − selm = (0−1, 1−1, 1−1) = (−1, 0, 0); s² = 1/3
    assert rows[1]["n"] == 3 and rows[1]["Δ"] == -1 / 3
    assert math.isclose(rows[1]["SE"], math.sqrt(1 / 3) / math.sqrt(3))
    assert compare.main([runs["smol-selm"], runs["smol-dpo"], "--out", str(mlflow_home / "cmp")]) == 0
    assert "paired over the same prompts" in capsys.readouterr().out


def test_pooled_over_seeds_paired_by_seed_and_prompt_and_exported(mlflow_home, capsys):
    """Two methods × two seeds as the flows log them: --pool finds each method's finished experiments by name, pairs
    them by seed, gives Δ with its SE across seeds and its paired SE over prompts; the export reads back the same."""
    import math
    import statistics

    # per (method, seed): round-1 IFEval per prompt; round 0 is the same initial policy everywhere
    ifeval = {("smol-dpo", 0): [0, 1, 0, 0], ("smol-dpo", 1): [1, 1, 0, 0],
              ("smol-selm", 0): [1, 1, 0, 1], ("smol-selm", 1): [1, 1, 1, 0]}  # fmt: skip
    kl = {("smol-dpo", 0): 1.5, ("smol-dpo", 1): 1.7, ("smol-selm", 0): 2.0, ("smol-selm", 1): 1.9}
    metric = "lm_eval/ifeval_local_prompt_level_loose_acc"
    for (name, seed), values in ifeval.items():
        recipe = load_recipe(None, [f"experiment.seed={seed}"])
        run = tracking.start_run(recipe, name, key=f"{name}-{seed}")
        tracking.log_metrics(run, {metric: 0.25}, step=0)
        tracking.log_dict(run, {metric: dict(zip("abcd", [0, 1, 0, 0]))}, "scores_per_prompt_round0.json")
        tracking.log_metrics(run, {metric: statistics.fmean(values), "explore/kl": kl[name, seed]}, step=1)
        child = tracking.start_run(recipe, "round-1", key=f"{name}-{seed}/round-1", parent_run_id=run,
                                   tags={"round": "1"})  # fmt: skip
        tracking.log_dict(child, {metric: dict(zip("abcd", values))}, "scores_per_prompt.json")
        tracking.finish_run(child)
        tracking.finish_run(run)
    failed = tracking.start_run(load_recipe(None, ["experiment.seed=2"]), "smol-selm", key="smol-selm-2")
    tracking.finish_run(failed, "FAILED")  # not finished: not pooled

    c = tracking.client()
    dpo, selm = compare.load_group(c, "smol-dpo"), compare.load_group(c, "smol-selm")
    assert [s.seed for s in selm] == [0, 1] and selm[0].commit == dpo[0].commit
    rows = {(r["metric"], r["round"]): r for r in compare.pooled_table(dpo, selm)}
    r0, r1 = rows[metric, 0], rows[metric, 1]
    assert r0["Δ"] == 0 and r0["SE prompts"] == 0 and r0["±95 %"] is None  # the same initial policy
    # seed 0: selm − dpo = +0.5, seed 1: +0.25 → Δ 0.375, SE seeds = s(0.5, 0.25)/√2 = 0.125
    assert r1["seeds"] == 2 and math.isclose(r1["Δ"], 0.375) and math.isclose(r1["SE seeds"], 0.125)
    # per prompt, averaged over seeds: a (1+0)/2, b 0, c (0+1)/2, d (1+0)/2 → s(.5, 0, .5, .5)/√4 = 0.125
    assert r1["prompts"] == 4 and math.isclose(r1["SE prompts"], 0.125)
    # two seeds: the interval is Student's t with 1 degree of freedom (12.706), wider than the prompts' 1.96 × 0.125
    assert math.isclose(r1["±95 %"], 12.7062 * 0.125, rel_tol=1e-4)
    assert r1["smol-dpo"] == 0.375 and r1["smol-selm"] == 0.75
    assert math.isclose(rows["explore/kl", 1]["Δ"], 0.35) and rows["explore/kl", 1]["prompts"] is None

    assert compare.main(["--pool", "smol-dpo", "smol-selm", "--out", str(mlflow_home / "cmp"),
                         "--export", str(mlflow_home / "exported")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "smol-selm − smol-dpo, paired by seed" in out and "+0.3750" in out
    assert (mlflow_home / "cmp" / f"{metric}.png").exists()
    exported = mlflow_home / "exported"
    assert sorted(p.name for p in exported.iterdir()) == ["smol-dpo", "smol-selm"]  # one folder per method
    files = sorted((exported / "smol-selm").iterdir())
    assert [f.name[: len("smol-selm-seed0-")] for f in files] == ["smol-selm-seed0-", "smol-selm-seed1-"]
    for group in (str(exported / "smol-selm"), ",".join(map(str, files))):  # a folder, or the files one by one
        again = compare.load_group(c, group)
        assert [(s.rounds, s.scores, s.seed, s.commit) for s in again] == [
            (s.rounds, s.scores, s.seed, s.commit) for s in selm
        ]
    assert compare.main(["--pool", str(exported / "smol-dpo"), str(exported / "smol-selm"), "--out", "cmp2"]) == 0
    assert "+0.3750" in capsys.readouterr().out  # the same comparison from the files alone
    with pytest.raises(SystemExit, match="smol-selm: no finished experiment at commit 0000000"):
        compare.load_group(c, "smol-selm", commit="0000000")
    with pytest.raises(SystemExit, match="mixes experiments"):
        compare.load_group(c, f"{files[0]},{sorted((exported / 'smol-dpo').iterdir())[1]}")


def test_pooled_means_cover_the_prompts_both_sides_scored():
    """One side evaluated more prompts than the other (IFEval's first 300 against all 541): Δ and the means are taken
    over the prompts both scored, not from the logged means over different sets."""
    metric = "lm_eval/ifeval_local_prompt_level_loose_acc"
    short = compare.Series("dpo", {1: {metric: 0.5}}, {1: {metric: {"a": 0.0, "b": 1.0}}}, "dpo", 0)
    long = compare.Series("selm", {1: {metric: 0.25}}, {1: {metric: {"a": 1.0, "b": 1.0, "c": 0.0, "d": 0.0}}},
                          "selm", 0)  # fmt: skip
    (row,) = compare.pooled_table([short], [long])
    assert row["prompts"] == 2 and row["dpo"] == 0.5 and row["selm"] == 1.0 and row["Δ"] == 0.5
