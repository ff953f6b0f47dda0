"""What a round shows: one card function per RoundFlow step, each reading the ``RoundState``, and ``to_mlflow``,
which writes the finished round to MLflow at once — from SELMFlow's ``run_round`` (the process that already holds
MLflow), or from RoundFlow's ``end`` when a round runs alone.

Only ``to_mlflow`` imports MLflow (through ``selm.tracking``, inside the function): the round's steps never pay its
import (1.2–3.7 s a process, with the sqlite store's set-up, on the 2-core machines measured).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from selm.report import cards, describe, plots

if TYPE_CHECKING:  # annotations only: importing them here would load torch in steps that never use it
    from selm.config import Recipe
    from selm.pipeline.runtime import RoundState
    from selm.pipeline.select import Selection
    from selm.records import Prompt


def start(card, state: RoundState, skipped: Mapping[str, str]) -> None:
    """The round's card header; ``skipped`` (benchmarks without data) is non-empty only for a round run alone —
    in an experiment SELMFlow reports them once."""
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    card.append(
        cards.markdown(
            f"# Round {state.round} of `{state.experiment_id}`\npolicy in: `{state.policy_in}` · "
            f"{len(state.prompts)} prompts"
        )
    )
    cards.skipped(card, skipped)
    card.append(cards.table([{"id": p.id, "prompt": p.text, **p.meta} for p in state.prompts[:20]]))


def samples(card, state: RoundState) -> None:
    assert state.samples is not None
    s, texts = state.samples, {p.id: p.text for p in state.prompts}
    card.append(cards.markdown(f"# Samples: {len(s.completions)} replies, {len(s.greedy)} greedy y0"))
    rows = [
        {"prompt": texts[c.prompt_id], "reply": c.text, "logprob": c.logprob, "tokens": len(c.token_ids)}
        for c in s.completions[:40]
    ]
    card.append(cards.table(rows))


def selection(card, state: RoundState) -> None:
    assert state.selection is not None and state.samples is not None
    sel = state.selection
    card.append(
        cards.markdown(
            f"# Selection: `{sel.method}` — {sel.labels} comparisons, {len(sel.completion_ids)} replies "
            f"to judge out of {len(state.samples.completions)}"
        )
    )
    if sel.candidates:
        rows = acquisition_rows(sel, state.prompts)
        card.append(cards.figure(plots.acquisition_scores(sel)))
        card.append(cards.table(sorted(rows, key=lambda r: r["rank"] or 10**9)[:40]))


def acquisition_rows(sel: Selection, prompts: list[Prompt]) -> list[dict]:
    """One row per candidate: prompt, entropy, certainty and rank among the picked (or None)."""
    text = {p.id: p.text for p in prompts}
    rank = {k: r for r, k in enumerate(sel.picked)}
    return [
        {
            "prompt": text[c.prompt_id],
            "entropy": sel.entropy[c.prompt_id],
            "certainty": sel.certainty[k],
            "rank": rank.get(k),
        }
        for k, c in enumerate(sel.candidates)
    ]


def judged(card, state: RoundState) -> None:
    shown = ("samples/", "judge/", "select/", "train/pairs")
    judge_metrics = {k: v for k, v in state.metrics.items() if k.startswith(shown)}
    card.append(cards.markdown(f"# Judgments of {len(state.judgments)} replies → {len(state.pairs)} pairs"))
    card.append(cards.metrics_table(judge_metrics))
    card.append(cards.figure(plots.reward_histograms(state.judgments, "reward per objective (train)")))
    card.append(cards.table(pair_rows(state)[:40]))


def pair_rows(state: RoundState) -> list[dict]:
    """The round's preference pairs as text: prompt, chosen and rejected reply, their rewards."""
    text = {p.id: p.text for p in state.prompts}
    return [
        {
            "prompt_id": p.prompt_id,
            "prompt": text[p.prompt_id],
            "chosen": p.chosen_text,
            "rejected": p.rejected_text,
            "chosen_reward": p.chosen_reward,
            "rejected_reward": p.rejected_reward,
        }
        for p in state.pairs
    ]


def training(card, state: RoundState, loss: str) -> None:
    summary: dict[str, float] = {
        k: v for k, v in state.metrics.items() if k.startswith("train/final_")
    }
    card.append(cards.markdown(f"# Training ({loss}), {len(state.train_steps)} steps"))
    card.append(cards.metrics_table(summary))
    card.append(cards.figure(plots.training_curves(state.train_steps, f"round {state.round}")))


def evaluation(card, state: RoundState) -> None:
    """The held-out evaluation, the benchmarks and the ``explore/*`` diagnostics with what each one means."""
    assert state.evaluation is not None
    ev = state.evaluation
    card.append(cards.markdown(f"# Held-out evaluation ({len(ev.judgments)} prompts)"))
    card.append(cards.metrics_table(ev.metrics))
    card.append(cards.figure(plots.reward_histograms(ev.judgments, "reward per objective (held-out)")))
    cards.benchmarks(card, ev.benchmark_metrics, ev.benchmark_records)
    explore = {k: v for k, v in state.metrics.items() if k.startswith("explore/")}
    if explore:
        card.append(cards.markdown("# Exploration\n" + EXPLORATION_HELP))
        card.append(cards.metrics_table(explore))


EXPLORATION_HELP = """\
On the held-out prompts, new policy πθ vs the round's reference πref: `explore/kl` — Monte-Carlo KL(πθ ‖ πref) from
πθ's replies; `explore/y0_log_ratio` — log πθ(y0) − log πref(y0), y0 = πref's greedy reply (SELM pushes it down);
`explore/win_over_y0` — share of prompts where πθ's reply beats y0. On the round's samples (from πref):
`explore/distinct_1`, `_2` — distinct n-grams per prompt; `explore/self_overlap` — pairwise bigram overlap;
`explore/best_of_n_reward`, `explore/reward_spread` — best judged reward per prompt and max − min."""


def to_mlflow(recipe: Recipe, state: RoundState, parent_run_id: str | None, metaflow_run: str) -> tuple[str, dict]:
    """The finished round to MLflow, from one place: its run (nested under ``parent_run_id``; found again on a
    resume, started at the round's start), every record (samples, y0, judgments, pairs, held-out replies and
    judgments, benchmark answers, APL's acquisition), the per-prompt scores, the training curves and
    ``state.metrics``; then the policy registered and the run closed. Returns (run id, ``register_policy``'s result).

    Repeating it (a resumed or retried step) duplicates nothing: the run is found by its key, artifacts are
    overwritten in place, the numbers are logged once (``tracking.log_metrics_once``), the policy registered once."""
    from selm import tracking

    assert state.samples is not None and state.selection is not None and state.evaluation is not None
    tags = {"round": str(state.round), "selm_experiment": state.experiment_id, "metaflow_run": metaflow_run}
    key = f"{state.experiment_id}/round-{state.round}"
    run_id = tracking.start_run(recipe, f"round-{state.round}", key, parent_run_id, tags, start_time=state.started_ms)
    with tracking.failed_on_error(run_id):
        tracking.describe_run(run_id, describe.round_run(recipe, state.round, state.experiment_id, state.metrics))
        ev = state.evaluation
        records: dict[str, list[Any]] = {"samples": state.samples.completions, "greedy": state.samples.greedy,
                   "judgments": state.judgments, "pairs": state.pairs, "heldout_samples": ev.completions,
                   "heldout_judgments": ev.judgments}  # fmt: skip
        for name, rows in records.items():
            tracking.log_records(run_id, rows, name)
        for name, rows in ev.benchmark_records.items():  # answers and judgments of each benchmark
            tracking.log_records(run_id, rows, name, "benchmarks")
        tracking.log_dict(run_id, ev.scores, "scores_per_prompt.json")
        tracking.log_table(run_id, pair_rows(state), "records/pairs_text.json")
        if state.selection.candidates:
            rows = acquisition_rows(state.selection, state.prompts)
            tracking.log_dict(
                run_id, {"method": state.selection.method, "candidates": rows}, "records/acquisition.json"
            )
        if tracking.log_metrics_once(run_id, without_round(state.metrics), step=0):
            tracking.log_curves(run_id, state.train_steps, "train")
        texts = {
            "README.md": describe.model_card(
                recipe, state.round, state.experiment_id, state.metrics, recipe.tracking.registered_model
            ),
            "LICENSE.txt": describe.licence(recipe),
            "description": describe.version(recipe, state.round, state.experiment_id, state.metrics),
        }
        registered = tracking.register_policy(
            run_id, state.policy_out, recipe, state.round, state.metrics, state.experiment_id, texts
        )
    tracking.finish_run(run_id)
    return run_id, registered


def without_round(metrics: Mapping[str, float]) -> dict[str, float]:
    """A round's metrics as logged: its number is the step (the experiment's run) or the run's name, not a metric."""
    return {k: v for k, v in metrics.items() if k != "round"}


def end(card, state: RoundState, step_attempts: Mapping[str, int]) -> None:
    card.append(cards.markdown(f"# Round {state.round} done\npolicy `{state.policy_out}`"))
    card.append(cards.metrics_table(state.metrics, [k for k in state.metrics if k.startswith("time/")]))
    attempts(card, step_attempts)


def attempts(card, step_attempts: Mapping[str, int]) -> None:
    """How many attempts each step took (``@retry``: more than one means it failed and ran again)."""
    retried = sum(n > 1 for n in step_attempts.values())
    card.append(cards.markdown(f"**Attempts per step** ({retried} retried)"))
    card.append(cards.table([{"step": step, "attempts": n} for step, n in step_attempts.items()]))


def registered(card, run_id: str, registration: Mapping) -> None:
    """Where the round went in MLflow: its run, and the policy's registered version."""
    r = registration
    card.append(
        cards.markdown(
            f"MLflow run `{run_id}` · policy registered as `{r['name']}` v{r['version']}"
            + (" — new **champion**" if r["champion"] else "")
        )
    )
