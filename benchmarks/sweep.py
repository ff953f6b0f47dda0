"""Compare recipe variants over several seeds, each a whole in-process experiment (no Metaflow / MLflow).

    # APL: the same label budget per round, four acquisition functions
    python benchmarks/sweep.py --reach random \\
        --variant random="select.acquisition=random select.label_budget=128" \\
        --variant certainty="select.acquisition=certainty select.label_budget=128" \\
        --variant entropy="select.acquisition=entropy select.label_budget=128" \\
        --variant hybrid="select.acquisition=hybrid select.label_budget=128"
    # LSC: transformed-and-combined vs raw weighted-sum rewards for pair construction
    python benchmarks/sweep.py --variant raw-sum="judge.combine=sum" --variant lsc="judge.combine=lsc"

    # SELM vs iterative DPO, and SELM's optimism coefficient α: 0 (= DPO's loss), the paper's 1e-3, and larger
    python benchmarks/sweep.py --variant dpo="train.loss=dpo" --variant selm="train.loss=selm" \
        --variant alpha0="train.loss=selm train.alpha=0" --variant alpha0.1="train.loss=selm train.alpha=0.1"

Prints held-out metrics and exploration diagnostics (``explore_*``) per round, mean ± std over seeds, against labels
spent; each variant against the first one paired by seed (Δ = mean over seeds of the per-seed difference, ± its
standard error over seeds); with ``--reach NAME``, how many labels each variant needs to reach NAME's final held-out
reward; saves the curves as a PNG (held-out metrics and diagnostics).
"""

import argparse
import shlex
import statistics
import tempfile

from selm.algorithms.statistics import mean_and_se
from selm.config import load_recipe
from selm.pipeline.components import metric_names
from selm.pipeline.experiment import run_experiment
from selm.report import plots


def labels_to_reach(rows: list[dict], target: float) -> float | None:
    """Labels spent when the held-out reward first reaches ``target``, interpolating linearly between rounds."""
    for prev, row in zip(rows, rows[1:]):
        if row["heldout/reward"] >= target:
            span = row["heldout/reward"] - prev["heldout/reward"]
            frac = 1.0 if span <= 0 else (target - prev["heldout/reward"]) / span
            return prev["labels_total"] + max(0.0, min(1.0, frac)) * (row["labels_total"] - prev["labels_total"])
    return None


def mean_std(xs) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


EXPLORE = [
    "explore/kl",
    "explore/y0_log_ratio",
    "explore/win_over_y0",
    "explore/distinct_2",
    "explore/self_overlap",
    "explore/best_of_n_reward",
    "explore/reward_spread",
]
EXPLORE_PLOTS = ["explore/kl", "explore/y0_log_ratio", "explore/win_over_y0", "explore/distinct_2"]


def cell(row: dict, metric: str) -> str:
    return f"{metric.removeprefix('heldout_').removeprefix('explore_')} {row[metric]:.4f}±{row[f'{metric}_se']:.4f}"


def paired_cell(base_runs: list[list[dict]], runs: list[list[dict]], r: int, metric: str) -> str:
    """Δ of ``metric`` at round ``r``: the per-seed differences (same seed: same prompts and held-out draws), mean ±
    their standard error."""
    mean, se = mean_and_se([run[r][metric] - base[r][metric] for base, run in zip(base_runs, runs)])
    return f"{metric.removeprefix('heldout_')} {mean:+.4f}±{se:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", action="append", required=True, help='NAME="section.key=value ..."')
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--recipe", default=None)
    ap.add_argument("--reach", help="variant whose final held-out reward the others must reach")
    ap.add_argument("--out", default="sweep.png")
    args = ap.parse_args()

    results: dict[str, list[list[dict]]] = {}
    metrics = [f"heldout/{n}" for n in metric_names(load_recipe(args.recipe))]
    for spec in args.variant:
        name, _, overrides = spec.partition("=")
        for seed in args.seeds:
            recipe = load_recipe(args.recipe, [*shlex.split(overrides), f"experiment.seed={seed}", "judge.cache=off"])
            print(f"== {name}, seed {seed}", flush=True)
            results.setdefault(name, []).append(run_experiment(recipe, tempfile.mkdtemp(), log=lambda *_: None))

    series = {}
    for name, runs in results.items():
        print(f"\n{name} (mean ± std over seeds {args.seeds})")
        rows = []
        for r in range(len(runs[0])):
            row = {"round": r, "labels": statistics.fmean(run[r]["select/labels_total"] for run in runs)}
            for m in metrics + EXPLORE:
                if m in runs[0][r]:
                    row[m], row[f"{m}_se"] = mean_std([run[r][m] for run in runs])
            rows.append(row)
            print(f"  round {r} labels {row['labels']:>6.0f}: " + "  ".join(cell(row, m) for m in metrics))
            if r:
                print(" " * 24 + "  ".join(cell(row, m) for m in EXPLORE if m in row))
        series[name] = rows
    first = next(iter(results))
    for name in [n for n in results if n != first]:
        print(f"\n{name} − {first}, paired by seed (mean ± SE over {len(args.seeds)} seeds)")
        for r in range(len(results[first][0])):
            print(f"  round {r}: " + "  ".join(paired_cell(results[first], results[name], r, m) for m in metrics))
    if args.reach:
        target = statistics.fmean(run[-1]["heldout/reward"] for run in results[args.reach])
        print(f"\nlabels needed to reach {args.reach}'s final held-out reward {target:.4f}:")
        for name, runs in results.items():
            reached = [n for n in (labels_to_reach(run, target) for run in runs) if n is not None]
            text = "{:.0f} ± {:.0f}".format(*mean_std(reached)) if reached else "not reached"
            print(f"  {name:>12}: {text}  (reached in {len(reached)}/{len(runs)} seeds)")
    fig = plots.metric_curves(series, metrics, "held-out metrics (± std over seeds)", x="labels")
    fig.savefig(args.out, dpi=100)
    explore = [m for m in EXPLORE_PLOTS if any(m in row for rows in series.values() for row in rows)]
    if explore:
        out = args.out.removesuffix(".png") + "_exploration.png"
        plots.metric_curves(series, explore, "exploration diagnostics (± std over seeds)").savefig(out, dpi=100)
        print(f"\nsaved {args.out} and {out}")
    else:
        print(f"\nsaved {args.out}")


if __name__ == "__main__":
    main()
