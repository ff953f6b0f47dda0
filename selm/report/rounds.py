"""One function per RoundFlow step: log the step's result to the round's MLflow run and render its card."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from selm import tracking
from selm.report import cards, plots

if TYPE_CHECKING:  # annotations only: importing them here would load torch in steps that never use it
    from selm.models.training import TrainHistory
    from selm.pipeline.evaluate import Evaluation
    from selm.pipeline.judge import Judged
    from selm.pipeline.sample import Samples
    from selm.pipeline.select import Selection
    from selm.records import Prompt


def start(
    card, round: int, experiment_id: str, policy: str, prompts: list[Prompt], run_id: str, skipped: Mapping[str, str]
) -> None:
    """The round's card header; ``skipped`` (benchmarks without data) is non-empty only for a round run alone —
    in an experiment SELMFlow reports them once."""
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    card.append(
        cards.markdown(
            f"# Round {round} of `{experiment_id}`\npolicy in: `{policy}` · {len(prompts)} prompts · "
            f"MLflow run `{run_id}`"
        )
    )
    cards.skipped(card, skipped)
    card.append(cards.table([{"id": p.id, "prompt": p.text, **p.meta} for p in prompts[:20]]))


def samples(card, run_id: str, samples: Samples, prompts: list[Prompt], timings: Mapping[str, float]) -> None:
    tracking.log_records(run_id, samples.completions, "samples")
    tracking.log_records(run_id, samples.greedy, "greedy")
    tracking.log_metrics(run_id, {"time_sample_s": timings["time_sample_s"]})
    texts = {p.id: p.text for p in prompts}
    card.append(cards.markdown(f"# Samples: {len(samples.completions)} replies, {len(samples.greedy)} greedy y0"))
    rows = [
        {"prompt": texts[c.prompt_id], "reply": c.text, "logprob": c.logprob, "tokens": len(c.token_ids)}
        for c in samples.completions[:40]
    ]
    card.append(cards.table(rows))


def selection(
    card, run_id: str, sel: Selection, prompts: list[Prompt], n_replies: int, timings: Mapping[str, float]
) -> None:
    metrics = {"labels": sel.labels, "replies_to_judge": len(sel.completion_indices)}
    tracking.log_metrics(run_id, {**metrics, "time_select_s": timings["time_select_s"]})
    card.append(
        cards.markdown(
            f"# Selection: `{sel.method}` — {sel.labels} comparisons, {len(sel.completion_indices)} replies "
            f"to judge out of {n_replies}"
        )
    )
    if sel.candidates:
        rows = acquisition_rows(sel, prompts)
        tracking.log_dict(run_id, {"method": sel.method, "candidates": rows}, "records/acquisition.json")
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


def judged(card, run_id: str, judged: Judged, timings: Mapping[str, float]) -> None:
    tracking.log_records(run_id, judged.judgments, "judgments")
    tracking.log_records(run_id, judged.pairs, "pairs")
    tracking.log_metrics(
        run_id,
        {**judged.metrics, **judged.usage, "pairs": len(judged.pairs), "time_judge_s": timings["time_judge_s"]},
    )
    card.append(cards.markdown(f"# Judgments of {len(judged.judgments)} replies → {len(judged.pairs)} pairs"))
    card.append(cards.metrics_table({**judged.metrics, **judged.usage}))
    card.append(cards.figure(plots.reward_histograms(judged.judgments, "reward per objective (train)")))
    rows = [
        {
            "chosen": p.chosen_text,
            "rejected": p.rejected_text,
            "r_chosen": p.chosen_reward,
            "r_rejected": p.rejected_reward,
        }
        for p in judged.pairs[:40]
    ]
    card.append(cards.table(rows))


def training(card, run_id: str, history: TrainHistory, loss: str, round: int, timings: Mapping[str, float]) -> None:
    tracking.log_curves(run_id, history.steps, "train")
    tracking.log_metrics(run_id, {**history.summary(), "time_train_s": timings["time_train_s"]})
    card.append(cards.markdown(f"# Training ({loss}), {len(history.steps)} steps"))
    card.append(cards.metrics_table(history.summary()))
    card.append(cards.figure(plots.training_curves(history.steps, f"round {round}")))


def evaluation(card, run_id: str, ev: Evaluation) -> None:
    tracking.log_records(run_id, ev.completions, "heldout_samples")
    tracking.log_records(run_id, ev.judgments, "heldout_judgments")
    tracking.log_dict(run_id, ev.scores, "scores_per_prompt.json")
    for name, records in ev.benchmark_records.items():  # answers and judgments of each benchmark
        tracking.log_records(run_id, records, name, "benchmarks")
    tracking.log_metrics(run_id, {**ev.metrics, **ev.timings})
    card.append(cards.markdown(f"# Held-out evaluation ({len(ev.judgments)} prompts)"))
    card.append(cards.metrics_table(ev.metrics))
    card.append(cards.figure(plots.reward_histograms(ev.judgments, "reward per objective (held-out)")))
    cards.benchmarks(card, ev.benchmark_metrics, ev.benchmark_records)


def exploration(card, run_id: str, metrics: Mapping[str, float]) -> None:
    """The ``explore_*`` diagnostics: logged, and a card table with what each one means."""
    if not metrics:
        return
    tracking.log_metrics(run_id, metrics)
    card.append(cards.markdown("# Exploration\n" + EXPLORATION_HELP))
    card.append(cards.metrics_table(metrics))


EXPLORATION_HELP = """\
On the held-out prompts, new policy πθ vs the round's reference πref: `explore_kl` — Monte-Carlo KL(πθ ‖ πref) from
πθ's replies; `explore_y0_log_ratio` — log πθ(y0) − log πref(y0), y0 = πref's greedy reply (SELM pushes it down);
`explore_win_over_y0` — share of prompts where πθ's reply beats y0. On the round's samples (from πref):
`explore_distinct_1/2` — distinct n-grams per prompt; `explore_self_overlap` — pairwise bigram overlap;
`explore_best_of_n_reward`, `explore_reward_spread` — best judged reward per prompt and max − min."""


def end(card, round: int, policy: str, registered: Mapping, metrics: Mapping[str, float]) -> None:
    card.append(
        cards.markdown(
            f"# Round {round} done\npolicy `{policy}` registered as `{registered['name']}` v{registered['version']}"
            + (" — new **champion**" if registered["champion"] else "")
        )
    )
    card.append(cards.metrics_table(metrics, [k for k in metrics if k.startswith("time_")]))
