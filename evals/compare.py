"""Compare experiments, runs or registered policies side by side: every metric per round, deltas against the first,
paired deltas with their standard errors where both answered the same prompts, and PNG plots against round.
Or pool several experiments per method (seeds) and compare the methods, paired by seed and by prompt.

    python -m evals.compare RUN [RUN ...] [--metrics REGEX] [--out DIR] [--export DIR]
    python -m evals.compare --pool GROUP GROUP [...] [--commit SHA] [--metrics REGEX] [--out DIR] [--export DIR]

RUN is any of: an experiment's MLflow run id or run name (the latest run with that name), a Metaflow run
(``SELMFlow/123``, matched by its tag), or a registered policy version (``models:/NAME/VERSION`` or
``models:/NAME@ALIAS``), which stands for the one round that trained it. Reads the tracking store of
``MLFLOW_TRACKING_URI`` (default ``./mlflow.db``). Example: SELM vs iterative DPO on the tiny world, by the
recipes' experiment names::

    python flows/selm_flow.py run && python flows/selm_flow.py run --recipe tiny_dpo
    python -m evals.compare tiny-selm tiny-dpo --out comparison

Plots go to ``<out>/<group>/<name>.png``, one folder per metric group.

RUN may also be a file written by ``--export`` (one experiment's metrics and per-prompt scores as JSON: results
travel without the tracking store). With ``--pool`` each GROUP is a method's experiments: an experiment name (every
finished experiment run of that name, the latest per seed; ``--commit`` keeps those of one commit), a folder of
exported files, or comma-separated RUNs. Each later group is compared with the first, per round and metric: Δ = the
mean over the seeds both ran of (later − first), its SE across those seeds, and — where both scored prompt by
prompt — the paired SE over prompts of the seed-averaged per-prompt differences. SELM against DPO over seeds::

    python -m evals.compare --pool smol-dpo smol-selm --out comparison
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_METRICS = (
    r"^(heldout/|mt_bench|alpaca_eval|lm_eval/|explore/|samples/reward|train/pairs$|train/final_loss$|judge/calls"
    r"|judge/cost)"
)
HEADLINE_PLOTS = re.compile(
    r"^(mt_bench(_proxy)?/score|alpaca_eval(_proxy)?/(lc_)?win_rate|lm_eval/\w+_(acc|acc_norm|exact_match)"
    r"|lm_eval/ifeval\w*_prompt_level_loose_acc|explore/(kl|y0_log_ratio|win_over_y0|distinct_2))$"
)
SCORES = "scores_per_prompt.json"  # each round run's per-prompt values; the experiment run holds round 0's


def plotted(metric: str) -> bool:
    """The headline metrics: held-out reward, good_all and every registered world's objectives; benchmark scores;
    the main exploration diagnostics."""
    from selm import worlds

    heldout = {"reward", "good_all", *(o for w in worlds.REGISTRY.values() for o in w.objectives)}
    return bool(HEADLINE_PLOTS.match(metric)) or metric in {f"heldout/{n}" for n in heldout}


@dataclass
class Series:
    label: str
    rounds: dict[int, dict[str, float]]  # round → metric → value
    scores: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)  # round → metric → prompt → value
    name: str = ""  # the experiment's name (its recipe's experiment.name): what --pool groups by
    seed: int | None = None  # its recipe's experiment.seed: what --pool pairs by
    commit: str | None = None  # the code that produced it (mlflow.source.git.commit)

    def to_json(self) -> dict:
        return {"label": self.label, "name": self.name, "seed": self.seed, "commit": self.commit,
                "rounds": self.rounds, "scores": self.scores}  # fmt: skip

    @classmethod
    def from_json(cls, d: dict) -> Series:
        """The inverse of ``to_json`` (JSON turned the round numbers into strings; files exported before the metric
        names were grouped are read with today's names)."""
        rounds = {int(r): _grouped(m) for r, m in d["rounds"].items()}
        scores = {int(r): _grouped(s) for r, s in d["scores"].items()}
        return cls(d["label"], rounds, scores, d["name"], d["seed"], d["commit"])


def _grouped(by_metric: dict) -> dict:
    """``by_metric`` with its keys as selm names them now (``selm.metric_names.grouped``)."""
    from selm.metric_names import grouped

    return {grouped(k): v for k, v in by_metric.items()}


def load_series(client, ident: str) -> Series:
    """Metrics per round of one RUN (see the module docstring)."""
    import json

    from mlflow.exceptions import MlflowException

    if ident.endswith(".json") and Path(ident).is_file():
        return Series.from_json(json.loads(Path(ident).read_text()))
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
        return Series(f"{version.name} v{version.version}", {rnd: _grouped(run.data.metrics)}, scores)
    return _experiment_series(client, _find_run(client, ident), ident)


def _experiment_series(client, run, ident: str) -> Series:
    """An experiment run's metrics per round and per-prompt scores (round 0's on it, round k's on its round runs)."""
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

    from selm.metric_names import grouped

    rounds: dict[int, dict[str, float]] = {}
    for key in run.data.metrics:
        for m in client.get_metric_history(run.info.run_id, key):
            rounds.setdefault(m.step, {})[grouped(key)] = m.value
    label = f"{run.data.tags.get('mlflow.runName', ident)} ({run.data.tags.get('metaflow_run', run.info.run_id[:8])})"
    scores = {0: _scores(client, run.info.run_id, SCORES.replace(".json", "_round0.json"))}
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    for child in children:
        if "round" in child.data.tags:
            scores[int(child.data.tags["round"])] = _scores(client, child.info.run_id, SCORES)
    seed = run.data.params.get("experiment.seed")
    return Series(label, rounds, {k: v for k, v in scores.items() if v}, run.data.tags.get("mlflow.runName", ident),
                  None if seed is None else int(seed), run.data.tags.get(MLFLOW_GIT_COMMIT))  # fmt: skip


def _scores(client, run_id: str, name: str) -> dict:
    """The per-prompt scores a run logged as ``name``, or {} (runs from before they were logged)."""
    import json
    import tempfile

    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            return _grouped(json.loads(Path(client.download_artifacts(run_id, name, tmp)).read_text()))
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


def load_group(client, spec: str, commit: str | None = None) -> list[Series]:
    """One method's experiments (``--pool``'s GROUP): a folder of exported files, comma-separated RUNs, or an
    experiment name — its finished experiment runs (not round runs), the latest per seed, of ``commit`` if given."""
    if Path(spec).is_dir():
        series = [load_series(client, str(p)) for p in sorted(Path(spec).glob("*.json"))]
    elif "," in spec:
        series = [load_series(client, ident) for ident in spec.split(",") if ident]
    else:
        experiments = [e.experiment_id for e in client.search_experiments()]
        query = f"tags.mlflow.runName = '{spec}' and attributes.status = 'FINISHED'"
        runs = [r for r in client.search_runs(experiments, query, order_by=["attributes.start_time DESC"])
                if "mlflow.parentRunId" not in r.data.tags]  # fmt: skip
        series = [_experiment_series(client, r, spec) for r in runs] if runs else [load_series(client, spec)]
    if commit:
        series = [s for s in series if (s.commit or "").startswith(commit)]
    if len({s.name for s in series}) > 1:
        raise SystemExit(f"{spec} mixes experiments ({', '.join(sorted({s.name for s in series}))}): one per group")
    latest: dict[int | None, Series] = {}
    for s in series:  # newest first for a name: a seed run again (a fix, a rerun) counts once, as its latest run
        latest.setdefault(s.seed, s)
    if not latest:
        raise SystemExit(f"{spec}: no finished experiment" + (f" at commit {commit}" if commit else ""))
    return sorted(latest.values(), key=lambda s: -1 if s.seed is None else s.seed)


def pooled_table(base: list[Series], other: list[Series], pattern: str = DEFAULT_METRICS) -> list[dict]:
    """Per (metric, round): each group's mean over the seeds both ran, Δ = mean over those seeds of (other − base),
    its SE across seeds s(Δ_seed)/√k, and — where every one of those runs scored prompt by prompt — the means over
    the prompts all of them scored, with the paired SE over those prompts s(d̄_p)/√n of d̄_p = the mean over seeds
    of (other − base) on prompt p; ±95 % = the larger of t(k − 1)·SE seeds and 1.96·SE prompts
    (``ci95_half_width``).

    The seed SE holds all of the training's randomness but, with a few seeds, is itself uncertain (hence Student's
    t); the prompt SE is steadier but misses what moves every prompt together in one seed. Read both."""
    import statistics

    from selm.algorithms.statistics import ci95_half_width, mean_and_se

    keep = re.compile(pattern)
    by_seed = {s.seed: s for s in other}
    pairs = [(a, by_seed[a.seed]) for a in base if a.seed is not None and a.seed in by_seed]
    pairs = pairs or [(base[0], other[0])]  # no seed known (older runs): the first of each
    metrics = {m for a, _ in pairs for r in a.rounds.values() for m in r if keep.search(m) and not m.endswith("_se")}
    rows = []
    for m in sorted(metrics):
        for r in sorted({r for a, _ in pairs for r in a.rounds}):
            values = [(a.rounds.get(r, {}).get(m), b.rounds.get(r, {}).get(m)) for a, b in pairs]
            both = [(x, y) for x, y in values if x is not None and y is not None]
            if not both:
                continue
            paired = _prompt_means(pairs, r, m) if len(both) == len(pairs) else None
            if paired:  # the same prompts on both sides (the logged means may cover different prompt sets)
                both, n, se_prompts = paired
            else:
                n = se_prompts = None
            delta, se_seeds = mean_and_se([y - x for x, y in both])
            rows.append({"metric": m, "round": r, "seeds": len(both),
                         base[0].name or "base": statistics.fmean(x for x, _ in both),
                         other[0].name or "other": statistics.fmean(y for _, y in both),
                         "Δ": delta, "SE seeds": se_seeds if len(both) > 1 else None, "prompts": n,
                         "SE prompts": se_prompts,
                         "±95 %": ci95_half_width(se_seeds, len(both), se_prompts) or None})  # fmt: skip
    return rows


def _prompt_means(pairs: list[tuple[Series, Series]], r: int, m: str):
    """Over the n prompts every run of ``pairs`` scored on ``m`` in round ``r``: each pair's (base mean, other mean),
    n, and s(d̄_p)/√n with d̄_p the mean over the pairs of (other − base) on prompt p; None where a run has no
    per-prompt scores for it or fewer than 2 prompts are common."""
    import statistics

    from selm.algorithms.statistics import mean_and_se

    scored = [(a.scores.get(r, {}).get(m), b.scores.get(r, {}).get(m)) for a, b in pairs]
    if not all(x and y for x, y in scored):
        return None
    ids = sorted(set.intersection(*(set(x) & set(y) for x, y in scored)))  # type: ignore[arg-type]
    if len(ids) < 2:
        return None
    means = [(statistics.fmean(x[i] for i in ids), statistics.fmean(y[i] for i in ids)) for x, y in scored]  # type: ignore[index]
    d = [statistics.fmean(y[i] - x[i] for x, y in scored) for i in ids]  # type: ignore[index]
    return means, len(ids), mean_and_se(d)[1]


def pooled_plot(groups: list[list[Series]], out: Path, pattern: str = DEFAULT_METRICS) -> list[Path]:
    """One PNG per headline metric that matches ``pattern``, against round: each group's mean over its seeds, ±1 SE
    across them."""
    from selm.algorithms.statistics import mean_and_se
    from selm.report import plots

    out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[dict]] = {}
    for g in groups:
        rows = []
        for r in sorted({r for s in g for r in s.rounds}):
            row: dict[str, float] = {"round": r}
            for m in {m for s in g for m in s.rounds.get(r, {}) if plotted(m)}:
                mean, se = mean_and_se([s.rounds[r][m] for s in g if m in s.rounds.get(r, {})])
                row[m], row[f"{m}_se"] = mean, 0.0 if se != se else se  # one seed: no error bar
            rows.append(row)
        curves[f"{g[0].name} ({len(g)} seeds)"] = rows
    names = sorted({m for rows in curves.values() for row in rows for m in row if plotted(m) and re.search(pattern, m)})
    paths = []
    for name in names:
        fig = plots.metric_curves(curves, [name], "mean ± SE over seeds")
        paths.append(_png(out, name))
        fig.savefig(paths[-1], dpi=110)
        plots.close(fig)
    return paths


def export(series: list[Series], folder: Path) -> list[Path]:
    """Each experiment as ``<folder>/<name>/<name>-seed<k>-<commit>.json`` (``to_json``): a RUN, and each
    ``<folder>/<name>`` a --pool GROUP."""
    import json

    paths = []
    for s in series:
        name = re.sub(r"[^\w.-]+", "_", s.name or s.label)
        paths.append(folder / name / f"{name}-seed{s.seed}-{(s.commit or 'unknown')[:7]}.json")
        paths[-1].parent.mkdir(parents=True, exist_ok=True)
        paths[-1].write_text(json.dumps(s.to_json(), indent=1, sort_keys=True) + "\n")
    return paths


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


def _png(out: Path, metric: str) -> Path:
    """``<out>/<group>/<name>.png``: one folder per metric group."""
    path = out / f"{metric}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def plot(series: list[Series], out: Path, pattern: str = DEFAULT_METRICS) -> list[Path]:
    """One PNG per headline metric (held-out reward and objectives, benchmark scores) that matches ``pattern``,
    against round."""
    from selm.report import plots

    out.mkdir(parents=True, exist_ok=True)
    by_label = {s.label: [{"round": r, **m} for r, m in sorted(s.rounds.items())] for s in series}
    names = sorted({k for s in series for m in s.rounds.values() for k in m if plotted(k) and re.search(pattern, k)})
    paths = []
    for name in names:
        fig = plots.metric_curves(by_label, [name])
        paths.append(_png(out, name))
        fig.savefig(paths[-1], dpi=110)
        plots.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    from selm import tracking

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="experiment run ids / names, SELMFlow/N, models:/NAME/VERSION or @ALIAS, "
                    "exported .json files; with --pool: GROUPs (names, export folders, RUN,RUN,…)")  # fmt: skip
    ap.add_argument("--pool", action="store_true", help="each argument is a method's experiments, pooled over seeds")
    ap.add_argument("--commit", help="with --pool: only experiments of this commit (a prefix of its hash)")
    ap.add_argument("--metrics", default=DEFAULT_METRICS, help="regex of metric names to show (tables and plots)")
    ap.add_argument("--out", default="comparison", help="folder for the PNG plots")
    ap.add_argument("--export", type=Path, help="also write each experiment to this folder as JSON (RUN reads it)")
    args = ap.parse_args(argv)
    # a bar per artifact read (two per experiment and round) buries the table; MLflow reads this at each download
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = tracking.client()
    if args.pool:
        return _main_pooled(client, args)
    series = [load_series(client, ident) for ident in args.runs]
    if args.export:
        print(f"exported: {', '.join(str(p) for p in export(series, args.export))}")
    print(format_table(table(series, args.metrics)))
    paired = [r for r in paired_table(series) if re.search(args.metrics, r["metric"])]
    if paired:
        print(f"\npaired over the same prompts, each against {series[0].label} (z = Δ / SE):")
        print(format_table(paired))
    paths = plot(series, Path(args.out), args.metrics)
    print(f"\n{len(paths)} plots in {args.out}/: " + ", ".join(str(p.relative_to(args.out)) for p in paths))
    return 0


def _main_pooled(client, args) -> int:
    if len(args.runs) < 2:
        raise SystemExit("--pool needs two groups or more (the first is the baseline)")
    groups = [load_group(client, spec, args.commit) for spec in args.runs]
    for g in groups:
        commits = sorted({(s.commit or "unknown")[:12] for s in g})
        print(f"{g[0].name}: seeds {', '.join(str(s.seed) for s in g)}; commit {', '.join(commits)}")
        if args.export:
            export(g, args.export)
    for g in groups[1:]:
        print(f"\n{g[0].name} − {groups[0][0].name}, paired by seed (and by prompt where scored prompt by prompt):")
        print(format_table(pooled_table(groups[0], g, args.metrics)))
    paths = pooled_plot(groups, Path(args.out), args.metrics)
    print(f"\n{len(paths)} plots in {args.out}/: " + ", ".join(str(p.relative_to(args.out)) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
