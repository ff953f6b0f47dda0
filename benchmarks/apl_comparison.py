"""APL on the tiny world: the same label budget per round with random, certainty, entropy and hybrid acquisition.

    python benchmarks/apl_comparison.py [--seeds 0 1 2] [--budget 128] [--out apl.png] [section.key=value ...]

Each (method, seed) is a whole in-process experiment (no Metaflow / MLflow). Prints held-out reward against
labels spent (mean ± std over seeds), how many labels each method needs to reach the final held-out reward of
``random``, and saves the curve as a PNG.
"""

import argparse
import statistics
import tempfile

from selm import plots
from selm.config import load_recipe
from selm.local_experiment import run_experiment

METHODS = ("random", "certainty", "entropy", "hybrid")


def labels_to_reach(rows: list[dict], target: float) -> float | None:
    """Labels spent when the held-out reward first reaches ``target``, interpolating linearly between rounds."""
    for prev, row in zip(rows, rows[1:]):
        if row["heldout_reward"] >= target:
            span = row["heldout_reward"] - prev["heldout_reward"]
            frac = 1.0 if span <= 0 else (target - prev["heldout_reward"]) / span
            return prev["labels_total"] + max(0.0, min(1.0, frac)) * (row["labels_total"] - prev["labels_total"])
    return None


def mean_std(xs):
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=128)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--out", default="apl_comparison.png")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    results: dict[str, list[list[dict]]] = {}
    for method in args.methods:
        for seed in args.seeds:
            recipe = load_recipe(
                None,
                [
                    f"select.acquisition={method}",
                    f"select.label_budget={args.budget}",
                    f"experiment.seed={seed}",
                    "judge.cache=off",
                    *args.overrides,
                ],
            )
            print(f"== {method}, seed {seed}")
            results.setdefault(method, []).append(run_experiment(recipe, tempfile.mkdtemp(), log=lambda *_: None))

    print(f"\nheld-out reward (mean ± std over seeds {args.seeds}) against labels spent, budget {args.budget}/round")
    series = {}
    for method, runs in results.items():
        rows = []
        for r in range(len(runs[0])):
            m, s = mean_std([run[r]["heldout_reward"] for run in runs])
            rows.append({"labels": runs[0][r]["labels_total"], "heldout_reward": m, "heldout_reward_se": s})
        series[method] = rows
        print(
            f"{method:>12}: "
            + "  ".join(f"{r['labels']:>4}: {r['heldout_reward']:.4f}±{r['heldout_reward_se']:.4f}" for r in rows)
        )
    if "random" in results:
        target = statistics.fmean(run[-1]["heldout_reward"] for run in results["random"])
        print(f"\nlabels needed to reach random's final held-out reward {target:.4f}:")
        for method, runs in results.items():
            needed = [labels_to_reach(run, target) for run in runs]
            reached = [n for n in needed if n is not None]
            text = "±".join(f"{v:.0f}" for v in mean_std(reached)) if reached else "—"
            print(f"{method:>12}: {text}  (reached in {len(reached)}/{len(runs)} seeds)")
    fig = plots.metric_curves(series, ["heldout_reward"], "held-out reward (± std over seeds)", x="labels")
    fig.savefig(args.out, dpi=110)
    print(f"\nsaved {args.out}")


if __name__ == "__main__":
    main()
