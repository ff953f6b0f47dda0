"""Metaflow card building blocks: records as tables, figures as images. Imports Metaflow lazily."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from selm.report import plots


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    s = str(v)
    return s if len(s) <= 80 else s[:77] + "..."


def table(rows: Sequence[Mapping], columns: Sequence[str] | None = None):
    """A card Table of dict rows (long strings are shortened)."""
    from metaflow.cards import Table

    columns = list(columns or (rows[0].keys() if rows else []))
    return Table([[_fmt(r.get(c, "")) for c in columns] for r in rows], headers=columns)


def figure(fig):
    """A card Image of a matplotlib figure; the figure is closed afterwards."""
    from metaflow.cards import Image

    try:
        return Image.from_matplotlib(fig)
    finally:
        plots.close(fig)


def markdown(text: str):
    from metaflow.cards import Markdown

    return Markdown(text)


def metrics_table(metrics: Mapping[str, float], keys: Sequence[str] | None = None):
    """Two-column table of metric name and value; ``<name>_se`` is folded into ``value ± se``."""
    keys = keys or [k for k in metrics if not k.endswith("_se")]
    rows = []
    for k in keys:
        v = metrics[k]
        se = metrics.get(f"{k}_se")
        rows.append({"metric": k, "value": f"{v:.4f} ± {se:.4f}" if se is not None else _fmt(v)})
    return table(rows, ["metric", "value"])


def benchmarks(card, metrics: Mapping[str, float], records: Mapping[str, Sequence[Mapping]]) -> None:
    """Benchmark sections of an evaluate card: MT-Bench per-category bars, and a sample of each benchmark's
    answers with their judgments."""
    if "mt_bench" in records:
        card.append(markdown("## MT-Bench"))
        card.append(figure(plots.mt_bench_categories(metrics)))
    for name, rows in records.items():
        card.append(markdown(f"## {name}: first answers and judgments"))
        card.append(table([{k: v for k, v in r.items() if k != "baseline"} for r in rows[:12]]))


def skipped(card, reasons: Mapping[str, str]) -> None:
    """A card section listing the benchmarks that did not run, and why (their data was absent)."""
    if reasons:
        card.append(markdown("## Skipped benchmarks\n" + "\n".join(f"- **{k}**: {v}" for k, v in reasons.items())))
