"""Figures for cards, MLflow and comparisons (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from selm.records import Judgment  # noqa: E402


def reward_histograms(judgments: Sequence[Judgment], title: str = ""):
    """One histogram per objective and one of the combined reward."""
    names = ["reward", *judgments[0].scores] if judgments else ["reward"]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        xs = [j.reward if name == "reward" else j.scores[name] for j in judgments]
        ax.hist(xs, bins=20, color="#4c72b0")
        ax.set_title(name, fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def training_curves(steps: Sequence[Mapping[str, float]], title: str = ""):
    """Loss, implicit reward margin and pair accuracy against optimizer step."""
    keys = ["loss", "reward_margin", "reward_accuracy", "lr"]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.6), squeeze=False)
    x = [s["step"] for s in steps]
    for ax, k in zip(axes[0], keys):
        ax.plot(x, [s[k] for s in steps], color="#dd8452")
        ax.set_title(k, fontsize=10)
        ax.set_xlabel("step")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def metric_curves(
    series: Mapping[str, Sequence[Mapping[str, float]]], metrics: Sequence[str], title: str = "", x: str = "round"
):
    """Metrics against ``x`` (the round) for one or more runs, with ±1 error bars where ``<metric>_se`` exists.

    ``series`` maps a label (run, method) to its rows, one per round, each with an ``x`` key.
    """
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(4.8, 3.4 * len(metrics)), 3.2), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for label, rows in series.items():
            rows = [r for r in rows if m in r]
            ax.errorbar(
                [r[x] for r in rows],
                [r[m] for r in rows],
                yerr=[r.get(f"{m}_se", 0.0) for r in rows],
                marker="o",
                capsize=3,
                label=label,
            )
        ax.set_title(m, fontsize=10)
        ax.set_xlabel(x)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
    if len(series) > 1:
        axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def acquisition_scores(selection, title: str = ""):
    """Entropy against certainty of every candidate comparison, the acquired ones highlighted."""
    picked = set(selection.picked)
    xs = [selection.entropy[c.prompt_id] for c in selection.candidates]
    ys = selection.certainty
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    for chosen, color, label in ((False, "#bbbbbb", "not labelled"), (True, "#c44e52", "acquired")):
        idx = [k for k in range(len(xs)) if (k in picked) == chosen]
        ax.scatter([xs[k] for k in idx], [ys[k] for k in idx], s=10, color=color, label=f"{label} ({len(idx)})")
    ax.set_xlabel("predictive entropy Ĥ(y|x)")
    ax.set_ylabel("certainty |r̂a − r̂b|")
    ax.legend(fontsize=8)
    ax.set_title(title or f"acquisition: {selection.method}", fontsize=10)
    fig.tight_layout()
    return fig


def mt_bench_categories(metrics: Mapping[str, float], title: str = ""):
    """MT-Bench mean score per category (and per turn), as horizontal bars on the 1–10 scale."""
    from selm.benchmarks.mt_bench import TEMPERATURE

    prefix = "mt_bench_proxy" if any(k.startswith("mt_bench_proxy/") for k in metrics) else "mt_bench"
    names = [c for c in [*TEMPERATURE, "turn1", "turn2", "score"] if f"{prefix}/{c}" in metrics]
    fig, ax = plt.subplots(figsize=(5.5, 0.32 * len(names) + 1))
    ax.barh(names, [metrics[f"{prefix}/{c}"] for c in names], color="#4c72b0")
    ax.set_xlim(1, 10)
    ax.invert_yaxis()
    ax.set_title(title or prefix, fontsize=10)
    fig.tight_layout()
    return fig


def close(fig) -> None:
    plt.close(fig)
