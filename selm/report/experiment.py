"""One function per SELMFlow step: the experiment's MLflow run, its card and the lines printed to the terminal."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from selm import tracking
from selm.algorithms.statistics import paired_improvement
from selm.config import Recipe
from selm.pipeline.components import metric_names
from selm.pipeline.evaluate import Evaluation
from selm.pipeline.experiment import headline
from selm.pipeline.policy import precision_line
from selm.report import cards, describe, plots
from selm.report import rounds as report_rounds


def start(
    card,
    run_id: str,
    recipe_name: str,
    recipe: Recipe,
    experiment_id: str,
    policy: str,
    round0: Evaluation,
    skipped: Mapping[str, str],
    initial_policy_s: float,
    precisions: Mapping[str, str],
) -> None:
    """Round 0 (the initial policy): its benchmark records and metrics (once, even when start runs again), and the
    precisions chosen on this machine (``selm.pipeline.policy.resolved_precisions``, also the run's params)."""
    tracking.set_tags(run_id, {"benchmarks_skipped": tracking.describe(skipped)})
    tracking.describe_run(run_id, describe.experiment(recipe, recipe_name, experiment_id))
    for name, records in round0.benchmark_records.items():
        tracking.log_records(run_id, records, f"{name}_round0", "benchmarks")
    tracking.log_dict(run_id, round0.scores, "scores_per_prompt_round0.json")
    tracking.log_metrics_once(run_id, {**round0.metrics, "time/initial_policy_s": initial_policy_s}, step=0)
    print(precision_line(precisions))
    print(f"round 0 (initial policy): {headline(round0.metrics)}")
    card.append(
        cards.markdown(
            f"# Experiment `{experiment_id}`\nrecipe `{recipe_name}` · MLflow run `{run_id}` · "
            f"initial policy `{policy}`"
        )
    )
    card.append(cards.markdown(f"**Precision** — {precision_line(precisions)}"))
    card.append(cards.table([{"key": k, "value": v} for k, v in recipe.flat().items()]))
    card.append(cards.markdown("## Round 0 (initial policy), held-out"))
    card.append(cards.metrics_table(round0.metrics))
    cards.skipped(card, skipped)
    cards.benchmarks(card, round0.benchmark_metrics, round0.benchmark_records)


def heldout_curves(recipe: Recipe, rounds: Sequence[Mapping[str, float]]):
    """The held-out metrics of the world's rule judges against the round."""
    names = [f"heldout/{n}" for n in metric_names(recipe)]
    return plots.metric_curves({recipe.train.loss: rounds}, names, "held-out reward by round")


def round_done(
    card,
    run_id: str,
    recipe: Recipe,
    round: int,
    pathspec: str,
    rounds: Sequence[Mapping],
    round_run: str,
    registration: Mapping,
    attempts: Mapping[str, int],
) -> None:
    """A round finished: its metrics on the experiment's run at step ``round``, a line, the attempts its steps took
    and the card's curves."""
    tracking.log_metrics_once(run_id, report_rounds.without_round(rounds[-1]), step=round)
    retried = _retried((step, n) for step, n in attempts.items())
    print(f"round {round} done: {headline(rounds[-1])}" + (f"; retried: {retried}" if retried else ""))
    card.append(cards.markdown(f"# Round {round} — `{pathspec}`"))
    report_rounds.registered(card, round_run, registration)
    report_rounds.attempts(card, attempts)
    card.append(cards.figure(heldout_curves(recipe, rounds)))


def _retried(steps: Iterable[tuple[str, int]]) -> str:
    """``"train (2 attempts), …"`` for the steps that took more than one attempt ("" if none did)."""
    return ", ".join(f"{step} ({n} attempts)" for step, n in steps if n > 1)


def end(
    card,
    run_id: str,
    recipe: Recipe,
    experiment_id: str,
    policy: str,
    rounds: Sequence[Mapping],
    skipped: Mapping[str, str],
    first_scores: Mapping[str, Mapping[str, float]],
    last_scores: Mapping[str, Mapping[str, float]],
    attempts: Sequence[Mapping],
) -> list[dict]:
    """The experiment's summary: per-round curves, the last round against the initial policy, paired over the
    prompts both answered (returned; ``*_scores`` are each evaluation's per-prompt values), and the steps that took
    more than one attempt (``attempts``: rows of where, step, attempts)."""
    rows = paired_improvement(first_scores, last_scores)
    fig = heldout_curves(recipe, rounds)
    retried = [a for a in attempts if a["attempts"] > 1]
    tracking.log_figure(run_id, fig, "heldout_by_round")
    tracking.log_dict(run_id, {"rounds": list(rounds), "improvement": rows, "attempts": list(attempts)}, "summary.json")
    tracking.finish_run(run_id)
    card.append(
        cards.markdown(
            f"# Experiment `{experiment_id}`: {len(rounds) - 1} rounds of {recipe.train.loss}\nfinal policy `{policy}`"
        )
    )
    card.append(cards.figure(fig))
    card.append(
        cards.markdown(f"## Round {len(rounds) - 1} vs the initial policy (same prompts; z = Δ / paired SE of Δ)")
    )
    card.append(cards.table(rows))
    card.append(cards.table([{k: v for k, v in r.items() if not k.endswith("_se")} for r in rounds]))
    card.append(cards.markdown(f"## Attempts per step ({len(retried)} retried)"))
    card.append(cards.table(list(attempts)))
    print(f"experiment {experiment_id} done; MLflow run {run_id}")
    print("  retried: " + _retried((f"{a['where']} {a['step']}", a["attempts"]) for a in retried) if retried
          else "  every step succeeded on its first attempt")  # fmt: skip
    for name, why in skipped.items():
        print(f"  skipped {name}: {why}")
    for row in rows:
        print("  {metric:>45}: {before:.4f} -> {after:.4f}  (delta {delta:+.4f} ± {se_delta:.4f}, z {z:.1f}, "
              "n {n})".format(**row))  # fmt: skip
    print(next_steps(recipe, experiment_id))
    return rows


def next_steps(recipe: Recipe, experiment_id: str) -> str:
    """The run's closing lines: where to look at what it did."""
    uri = tracking.tracking_uri().replace(f"sqlite:///{Path.cwd()}/", "sqlite:///")  # run from this folder
    ui = f"open {uri}" if uri.startswith("http") else f"mlflow ui --backend-store-uri {uri}"
    model = recipe.tracking.registered_model
    return "\n".join([
        "next:",
        f"  {ui}   # MLflow: experiment '{recipe.tracking.mlflow_experiment}', run '{recipe.experiment.name}'",
        "  python flows/selm_flow.py card server   # every step's card, http://localhost:8324",
        f"  models:/{model}@{tracking.experiment_alias(experiment_id, tracking.CHAMPION)}   # this experiment's best "
        f"policy (models:/{model}@champion: the best so far)",
    ])  # fmt: skip
