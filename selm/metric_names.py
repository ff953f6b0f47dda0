"""Metric names are ``<group>/<name>``: MLflow's UI draws one chart section per group (the part before the first
``/``), and a standard error sits beside its metric in the same section as ``<group>/<name>_se``.

| group | what it measures |
|---|---|
| ``heldout/`` | the policy's replies to the world's held-out prompts, judged by its rule judges (reward, objectives) |
| ``samples/`` | the round's sampled training replies as the judge scored them |
| ``select/`` | how many comparisons were acquired for labelling |
| ``judge/`` | the training judge's calls, cache hits, tokens, cost, parse failures |
| ``train/`` | per round: pairs and the final fifth of the optimizer steps (``final_*``); per step: the curves |
| ``explore/`` | how far the new policy moved from its reference, and how varied the samples were |
| ``mt_bench/``, ``alpaca_eval/``, ``lm_eval/`` | the benchmarks (``*_proxy/`` when graded by the offline proxy) |
| ``eval_judge/``, ``benchmarks/`` | the benchmark grader's usage; prompts cut to fit the policy's context |
| ``time/`` | wall seconds of each stage |

Runs and exported files written before the names were grouped used flat names (``heldout_reward``); ``grouped``
reads them back.
"""

from __future__ import annotations

import re

#: flat (former) name → grouped name; the first rule that matches applies
_FLAT = [
    (re.compile(r"^eval_prompts_truncated$"), r"benchmarks/prompts_truncated"),
    (re.compile(r"^(eval_judge|heldout|explore|judge|time)_(.+)$"), r"\1/\2"),
    (re.compile(r"^(mt_bench_proxy|mt_bench|alpaca_eval_proxy|alpaca_eval|lm_eval)_(.+)$"), r"\1/\2"),
    (re.compile(r"^train_(.+)$"), r"samples/\1"),
    (re.compile(r"^(loss|reward_margin|reward_accuracy)$"), r"train/final_\1"),
    (re.compile(r"^pairs$"), r"train/pairs"),
    (re.compile(r"^(labels|replies_to_judge)$"), r"select/\1"),
]


def grouped(name: str) -> str:
    """``name`` as selm logs it now: a flat name of an earlier run mapped to its group (``heldout_reward`` →
    ``heldout/reward``, ``train_reward`` → ``samples/reward``, ``loss`` → ``train/final_loss``); a grouped name, or
    one that never had a group (``round``), unchanged."""
    if "/" in name:
        return name
    for pattern, replacement in _FLAT:
        if pattern.match(name):
            return pattern.sub(replacement, name)
    return name

