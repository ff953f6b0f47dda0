"""A whole experiment in one process, without Metaflow or MLflow: the same stages as the flows, in a loop.

For quick studies (method × seed sweeps) and benchmarks; the flows remain the tracked, resumable way to run.
"""

from __future__ import annotations

from pathlib import Path

from selm import worlds
from selm.config import Recipe
from selm.pipeline.evaluate import evaluate
from selm.pipeline.explore import diagnostics
from selm.pipeline.judge import judge_and_pair
from selm.pipeline.policy import initial_policy_path, precision_line, resolved_precisions
from selm.pipeline.sample import sample
from selm.pipeline.select import select_comparisons
from selm.pipeline.train import train
from selm.progress import timed


def run_experiment(recipe: Recipe, out_dir: str | Path, log=print) -> list[dict]:
    """Round 0 (initial policy) and every round's metrics: held-out reward, labels spent, judge calls, timings."""
    from selm.models.cache import ModelCache

    out_dir = Path(out_dir)
    world = worlds.of(recipe)
    policy = reference = initial_policy_path(recipe)
    log(precision_line(resolved_precisions(recipe)))
    metrics, _, _ = evaluate(policy, recipe, 0, "sft")
    rows = [{"round": 0, "labels_total": 0, **metrics}]
    labels_total = 0
    for k in range(1, recipe.experiment.rounds + 1):
        timing: dict = {}
        prompts = world.train_prompts(recipe, k)
        with timed(timing, "sample"):
            samples = sample(policy, prompts, recipe, k, f"round-{k - 1}")
        with timed(timing, "select"):
            selection = select_comparisons(samples, recipe, policy, reference, k)
        with timed(timing, "judge"):
            judged = judge_and_pair(prompts, samples, selection, recipe, k)
        with timed(timing, "train"):
            history = train(policy, judged.pairs, recipe, k, out_dir / f"round-{k}")
        reference, policy = policy, str(out_dir / f"round-{k}")
        models = ModelCache()  # one per step, as in RoundFlow: the new policy and its reference, each loaded once
        with timed(timing, "evaluate"):
            metrics, completions, judgments = evaluate(policy, recipe, k, f"round-{k}", models)
        with timed(timing, "diagnostics"):
            explore = diagnostics(
                policy, reference, samples, selection, judged.judgments, (completions, judgments), recipe, k, models
            )
        labels_total += selection.labels
        rows.append(
            {
                "round": k,
                "labels": selection.labels,
                "labels_total": labels_total,
                "pairs": len(judged.pairs),
                **judged.usage,
                **history.summary(),
                **metrics,
                **explore,
                **timing,
            }
        )
        log(f"round {k}: {len(judged.pairs)} pairs from {selection.labels} labels; {headline(metrics)}; {timing}")
    return rows


def headline(metrics: dict[str, float]) -> str:
    """One log line of a round's held-out result: the combined reward (± SE) and the benchmarks' main numbers."""
    parts = []
    if "heldout_reward" in metrics:
        parts.append(f"held-out reward {metrics['heldout_reward']:.4f} ± {metrics['heldout_reward_se']:.4f}")
    for key in ("mt_bench_proxy_score", "mt_bench_score", "alpaca_eval_proxy_win_rate", "alpaca_eval_win_rate"):
        if key in metrics:
            parts.append(f"{key} {metrics[key]:.2f}")
    return ", ".join(parts) or "no held-out metrics"
