"""A whole experiment in one process, without Metaflow or MLflow: the same stages as the flows, in a loop.

For quick studies (method × seed sweeps) and benchmarks; the flows remain the tracked, resumable way to run.
"""

from __future__ import annotations

from pathlib import Path

from selm import stages
from selm.config import Recipe
from selm.judging import JudgeUsage


def run_experiment(recipe: Recipe, out_dir: str | Path, log=print) -> list[dict]:
    """Round 0 (initial policy) and every round's metrics: held-out reward, labels spent, judge calls, timings."""
    out_dir = Path(out_dir)
    policy = reference = stages.initial_policy_path(recipe)
    metrics, _, _ = stages.evaluate(policy, recipe, 0, "sft")
    rows = [{"round": 0, "labels_total": 0, **metrics}]
    cache = stages.judgment_cache(recipe)
    labels_total = 0
    for k in range(1, recipe.experiment.rounds + 1):
        timing: dict = {}
        prompts = stages.train_prompts(recipe, k)
        with stages.timed(timing, "sample"):
            samples = stages.sample(policy, prompts, recipe, k, f"round-{k - 1}")
        with stages.timed(timing, "select"):
            selection = stages.select_comparisons(samples, recipe, policy, reference, k)
        usage = JudgeUsage()
        with stages.timed(timing, "judge"):
            judged = [samples.completions[i] for i in selection.completion_indices]
            judgments = stages.judge_completions(prompts, judged, recipe, cache, usage, training=True)
            pairs = stages.make_pairs(samples, selection, judgments, recipe, k)
        with stages.timed(timing, "train"):
            history = stages.train(policy, pairs, recipe, k, out_dir / f"round-{k}")
        reference, policy = policy, str(out_dir / f"round-{k}")
        with stages.timed(timing, "evaluate"):
            metrics, _, _ = stages.evaluate(policy, recipe, k, f"round-{k}")
        labels_total += selection.labels
        rows.append(
            {
                "round": k,
                "labels": selection.labels,
                "labels_total": labels_total,
                "pairs": len(pairs),
                **usage.metrics(),
                **history.summary(),
                **metrics,
                **timing,
            }
        )
        log(
            f"round {k}: {len(pairs)} pairs from {selection.labels} labels; held-out reward "
            f"{metrics['heldout_reward']:.4f} ± {metrics['heldout_reward_se']:.4f}; {timing}"
        )
    return rows
