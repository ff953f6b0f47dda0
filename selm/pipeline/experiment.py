"""A whole experiment in one process, without Metaflow or MLflow: the same stages as the flows, in a loop.

For quick studies (method × seed sweeps) and benchmarks; the flows remain the tracked, resumable way to run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from selm.config import Recipe
from selm.pipeline.components import Components
from selm.pipeline.evaluate import evaluate
from selm.pipeline.policy import initial_policy_path, precision_line, resolved_precisions
from selm.pipeline.runtime import begin, run_round


def run_experiment(recipe: Recipe, out_dir: str | Path, log=print) -> list[dict]:
    """Round 0 (initial policy) and every round's metrics (``RoundState.metrics``: held-out reward, labels spent,
    judge calls, training, exploration, timings) with ``select/labels_total``, the labels spent so far."""
    out_dir = Path(out_dir)
    policy = reference = initial_policy_path(recipe)
    log(precision_line(resolved_precisions(recipe)))
    metrics, _, _ = evaluate(Components(recipe), policy, 0, "sft")
    rows = [{"round": 0, "select/labels_total": 0, **metrics}]
    for k in range(1, recipe.experiment.rounds + 1):
        state = begin(Components(recipe), k, out_dir.name, policy, reference, out_dir / f"round-{k}")
        state = run_round(state, recipe)
        reference, policy = policy, state.policy_out
        m = state.metrics
        rows.append({**m, "select/labels_total": rows[-1]["select/labels_total"] + m["select/labels"]})
        timing = {key: round(v, 1) for key, v in m.items() if key.startswith("time/")}
        log(f"round {k}: {m['train/pairs']} pairs from {m['select/labels']} labels; {headline(m)}; {timing}")
    return rows


def headline(metrics: Mapping[str, float]) -> str:
    """One log line of a round's held-out result: the combined reward (± SE) and the benchmarks' main numbers."""
    parts = []
    if "heldout/reward" in metrics:
        parts.append(f"held-out reward {metrics['heldout/reward']:.4f} ± {metrics['heldout/reward_se']:.4f}")
    for key in ("mt_bench_proxy/score", "mt_bench/score", "alpaca_eval_proxy/win_rate", "alpaca_eval/win_rate"):
        if key in metrics:
            parts.append(f"{key} {metrics[key]:.2f}")
    return ", ".join(parts) or "no held-out metrics"
