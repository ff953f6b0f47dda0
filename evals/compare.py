"""Compare experiments, runs or registered policies side by side: every metric per round, deltas against the first,
paired deltas with their standard errors where both answered the same prompts, and PNG plots against round.

    python -m evals.compare RUN [RUN ...] [--metrics REGEX] [--out DIR]

RUN is any of: an experiment's MLflow run id or run name (the latest run with that name), a Metaflow run
(``SELMFlow/123``, matched by its tag), or a registered policy version (``models:/NAME/VERSION`` or
``models:/NAME@ALIAS``), which stands for the one round that trained it. Reads the tracking store of
``MLFLOW_TRACKING_URI`` (default ``./mlflow.db``). Example: SELM vs iterative DPO on the tiny world::

    python flows/selm_flow.py run && python flows/selm_flow.py run --recipe tiny_dpo
    python -m evals.compare SELMFlow/1 SELMFlow/2 --out comparison
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_METRICS = r"^(heldout_|mt_bench|alpaca_eval|lm_eval_|explore_|train_reward|pairs$|loss$|judge_calls|judge_cost)"
HEADLINE_PLOTS = re.compile(
    r"^(mt_bench(_proxy)?_score|alpaca_eval(_proxy)?_(lc_)?win_rate|lm_eval_\w+_(acc|acc_norm|exact_match)"
    r"|lm_eval_ifeval\w*_prompt_level_loose_acc|explore_(kl|y0_log_ratio|win_over_y0|distinct_2))$"
)
SCORES = "scores_per_prompt.json"  # each round run's per-prompt values; the experiment run holds round 0's


def plotted(metric: str) -> bool:
    """The headline metrics: held-out reward, good_all and every registered world's objectives; benchmark scores;
    the main exploration diagnostics."""
    from selm import worlds

    heldout = {"reward", "good_all", *(o for w in worlds.REGISTRY.values() for o in w.objectives)}
    return bool(HEADLINE_PLOTS.match(metric)) or metric in {f"heldout_{n}" for n in heldout}


@dataclass
class Series:
    label: str
    rounds: dict[int, dict[str, float]]  # round → metric → value
    scores: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)  # round → metric → prompt → value


def load_series(client, ident: str) -> Series:
    """Metrics per round of one RUN (see the module docstring)."""
    from mlflow.exceptions import MlflowException

    if ident.startswith("models:/"):
        name, _, ref = ident.removeprefix("models:/").partition("@")
        try:
            version = (
                client.get_model_version_by_alias(name, ref) if ref else client.get_model_version(*name.rsplit("/", 1))
            )
        except MlflowException as e:
            raise SystemExit(f"{ident}: no such registered model version ({e.message})") from None
        run = client.get_run(version.run_id)
        rnd = int(version.tags.get("round", run.data.tags.get("round", 0)))
        scores = {rnd: s} if (s := _scores(client, run.info.run_id, SCORES)) else {}
        return Series(f"{version.name} v{version.version}", {rnd: dict(run.data.metrics)}, scores)
    run = _find_run(client, ident)
    rounds: dict[int, dict[str, float]] = {}
    for key in run.data.metrics:
        for m in client.get_metric_history(run.info.run_id, key):
            rounds.setdefault(m.step, {})[key] = m.value
    label = f"{run.data.tags.get('mlflow.runName', ident)} ({run.data.tags.get('metaflow_run', run.info.run_id[:8])})"
    scores = {0: _scores(client, run.info.run_id, SCORES.replace(".json", "_round0.json"))}
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    for child in children:
        if "round" in child.data.tags:
            scores[int(child.data.tags["round"])] = _scores(client, child.info.run_id, SCORES)
    return Series(label, rounds, {k: v for k, v in scores.items() if v})


def _scores(client, run_id: str, name: str) -> dict:
    """The per-prompt scores a run logged as ``name``, or {} (runs from before they were logged)."""
    import json
    import tempfile

    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            return json.loads(Path(client.download_artifacts(run_id, name, tmp)).read_text())
        except (MlflowException, OSError):
            return {}


def _find_run(client, ident: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(ident)
    except MlflowException:
        pass
    if re.fullmatch(r"\w+Flow/\d+", ident):  # a Metaflow run: its start step knows its MLflow run (even when resumed)
        try:
            from metaflow import Run, namespace

            namespace(None)
            task = Run(ident)["start"].task
            if task is not None:
                return client.get_run(task.data.mlflow_run)
        except Exception:  # not in this folder's Metaflow datastore: fall back to the tag below
            pass
    experiments = [e.experiment_id for e in client.search_experiments()]
    for query in (f"tags.metaflow_run = '{ident}'", f"tags.mlflow.runName = '{ident}'"):
        runs = client.search_runs(experiments, query, order_by=["attributes.start_time DESC"], max_results=1)
        if runs:
            return runs[0]
    raise SystemExit(f"{ident}: no MLflow run with that id, Metaflow run tag or run name")


def table(series: list[Series], pattern: str = DEFAULT_METRICS) -> list[dict]:
    """One row per (metric, round): each series' value and its delta against the first series."""
    keep = re.compile(pattern)
    metrics = sorted(
        {k for s in series for r in s.rounds.values() for k in r if keep.search(k) and not k.endswith("_se")}
    )
    rounds = sorted({r for s in series for r in s.rounds})
    rows = []
    for m in metrics:
        for r in rounds:
            values = [s.rounds.get(r, {}).get(m) for s in series]
            if all(v is None for v in values):
                continue
            row = {"metric": m, "round": r, **{s.label: v for s, v in zip(series, values)}}
            for s, v in zip(series[1:], values[1:]):
                row[f"Δ {s.label}"] = None if v is None or values[0] is None else v - values[0]
            rows.append(row)
    return rows


def paired_table(series: list[Series]) -> list[dict]:
    """Per (metric, round) that the first series and another both scored prompt by prompt: the other's Δ against the
    first over their common prompts, with the paired SE and z (``selm.algorithms.statistics.paired_improvement``)."""
    from selm.algorithms.statistics import paired_improvement

    rows = []
    for other in series[1:]:
        for r in sorted(set(series[0].scores) & set(other.scores)):
            for row in paired_improvement(series[0].scores[r], other.scores[r]):
                rows.append({"metric": row["metric"], "round": r, "vs": other.label, "n": row["n"],
                             "Δ": row["delta"], "SE": row["se_delta"], "z": row["z"]})  # fmt: skip
    return sorted(rows, key=lambda row: (row["metric"], row["round"], row["vs"]))


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no metrics matched)"
    columns = list(rows[0])
    cell = [[_fmt(r.get(c), signed=c.startswith("Δ")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cell)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += [
        "  ".join(v.rjust(w) if i > 0 else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))) for row in cell
    ]
    return "\n".join(lines)


def _fmt(v, signed: bool = False) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:+.4f}" if signed else f"{v:.4f}"
    return str(v)


def plot(series: list[Series], out: Path) -> list[Path]:
    """One PNG per headline metric (held-out reward and objectives, benchmark scores) against round."""
    from selm.report import plots

    out.mkdir(parents=True, exist_ok=True)
    by_label = {s.label: [{"round": r, **m} for r, m in sorted(s.rounds.items())] for s in series}
    names = sorted({k for s in series for m in s.rounds.values() for k in m if plotted(k)})
    paths = []
    for name in names:
        fig = plots.metric_curves(by_label, [name], name)
        paths.append(out / f"{name}.png")
        fig.savefig(paths[-1], dpi=110)
        plots.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    from selm import tracking

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="experiment run ids / names, SELMFlow/N, models:/NAME/VERSION or @ALIAS")
    ap.add_argument("--metrics", default=DEFAULT_METRICS, help="regex of metric names to show")
    ap.add_argument("--out", default="comparison", help="folder for the PNG plots")
    args = ap.parse_args(argv)
    client = tracking.client()
    series = [load_series(client, ident) for ident in args.runs]
    print(format_table(table(series, args.metrics)))
    paired = [r for r in paired_table(series) if re.search(args.metrics, r["metric"])]
    if paired:
        print(f"\npaired over the same prompts, each against {series[0].label} (z = Δ / SE):")
        print(format_table(paired))
    paths = plot(series, Path(args.out))
    print(f"\n{len(paths)} plots in {args.out}/: " + ", ".join(p.name for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
