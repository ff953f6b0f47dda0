"""AlpacaEval 2.0 (Dubois et al., 2024): 805 instructions, the policy's output judged pairwise against the
GPT-4-turbo (``gpt4_1106_preview``) baseline output; win rate and length-controlled (LC) win rate.

Judging: the official ``alpaca_eval_clf_gpt4_turbo`` prompt, whose answer is exactly ``m`` (first output) or ``M``
(second). AlpacaEval reads a *continuous* preference from the judge's log-probabilities of m/M with one random
order; we judge *both* orders and parse the answer strictly, so a preference is 1 (both orders prefer the policy),
0, or ½ (the orders disagree) — the same position-debiasing as the rest of selm, on any OpenAI-compatible server
(most do not return log-probs).

Win rate = 100 · mean(p), standard error = 100 · SEM. LC win rate follows AlpacaEval's ``length_controlled_minimal``
GLM (see ``lc_win_rate``); the default ``length_controlled_v1`` also needs per-instruction difficulties and "gamed"
baseline annotations that AlpacaEval fetches from the Hugging Face hub at run time, and that package (0.6.6) also
fetches its evaluation set and baselines from the hub, so it cannot run offline on local files — hence this
re-implementation of the few lines that matter, checked in the tests against scikit-learn.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selm.benchmarks.graders import PreferItem
from selm.data import resolve
from selm.judges.llm import JudgeTemplate

BASELINE = "alpaca_eval/gpt4_1106_preview_model_outputs.json"
JUDGE_PROMPT = "alpaca_eval/weighted_alpaca_eval_gpt4_turbo_prompt_alpaca_eval_clf.txt"


@dataclass
class Example:
    instruction: str
    baseline: str  # the baseline model's output
    dataset: str


def load_examples(path: str | None = None, limit: int | None = None) -> list[Example]:
    """Instructions with the baseline's outputs (AlpacaEval's ``model_outputs.json`` format); the first ``limit``."""
    p = resolve(BASELINE, path)
    try:
        rows = json.loads(Path(p).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON: {e}") from None
    return [Example(r["instruction"], r["output"], r.get("dataset", "")) for r in rows[:limit]]


def judge_template(path: str | None = None) -> JudgeTemplate:
    """The chat-ML judge prompt file as a template: its system block and its user block; answer ``m|M``."""
    text = resolve(JUDGE_PROMPT, path).read_text()
    blocks = dict(re.findall(r"<\|im_start\|>(\w+)\n(.*?)\n?<\|im_end\|>", text, flags=re.S))
    if "user" not in blocks:
        raise ValueError(f"{path or JUDGE_PROMPT}: no <|im_start|>user … <|im_end|> block")
    return JudgeTemplate("alpaca_eval_clf_gpt4_turbo", "pairwise", blocks.get("system", ""), blocks["user"], "m|M")


def win_rate(prefs: list[float]) -> tuple[float, float]:
    """(100 · mean p, 100 · SEM) over the judged instructions."""
    p = np.asarray(prefs, dtype=float)
    return 100 * p.mean(), 100 * p.std(ddof=1) / math.sqrt(len(p)) if len(p) > 1 else 0.0


def lc_win_rate(prefs: list[float], output_lens: list[int], baseline_lens: list[int]) -> tuple[float, float]:
    """Length-controlled win rate, AlpacaEval's ``length_controlled_minimal`` GLM.

    Logistic regression without intercept of the preference p_i ∈ [0, 1] (soft labels: log-loss
    −Σ p_i log σ(z_i) + (1 − p_i) log(1 − σ(z_i))) on two features: tanh(Δ_i / sd(Δ)) with Δ_i the length
    difference in characters (output − baseline), and a constant 1 (AlpacaEval's ``not_gamed_baseline``), so
    z_i = w_len · tanh(Δ_i / sd(Δ)) + w_0. The LC win rate predicts at Δ = 0: 100 · σ(w_0). Its standard error is
    the delta method on the MLE: 100 · σ(w_0)(1 − σ(w_0)) · sqrt([H⁻¹]₀₀), H the log-loss Hessian.
    Fitted by Newton's method with a tiny ridge (1e-6) that only matters when the data are separable.
    AlpacaEval fits the same GLM with L1-regularised, cross-validated scikit-learn; with two features and hundreds
    of instructions the two agree closely.
    """
    p = np.asarray(prefs, dtype=float)
    delta = np.asarray(output_lens, dtype=float) - np.asarray(baseline_lens, dtype=float)
    sd = delta.std(ddof=1) if len(delta) > 1 else 0.0
    x = np.stack([np.tanh(delta / sd) if sd > 0 else np.zeros_like(delta), np.ones_like(delta)], 1)
    w = np.zeros(2)
    ridge = 1e-6 * np.eye(2)
    for _ in range(100):
        s = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (s - p) + ridge @ w
        hess = (x * (s * (1 - s))[:, None]).T @ x + ridge
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    s0 = 1 / (1 + math.exp(-w[1]))
    s = 1 / (1 + np.exp(-(x @ w)))
    cov = np.linalg.inv((x * (s * (1 - s))[:, None]).T @ x + ridge)
    return 100 * s0, 100 * s0 * (1 - s0) * math.sqrt(cov[1, 1])


def run(sampler, grader, examples: list[Example], max_new_tokens: int, template: JudgeTemplate | None = None):
    """Answer greedily, judge against the baseline, score: (metrics, one record per instruction). Metric names start
    with ``alpaca_eval`` (``alpaca_eval_proxy`` for the proxy grader)."""
    from selm.records import Prompt

    prompts = [Prompt(str(i), ex.instruction) for i, ex in enumerate(examples)]
    outputs = [c.text for c in sampler.sample(prompts, greedy=True, max_new_tokens=max_new_tokens, desc="AlpacaEval")]
    items = [PreferItem(ex.instruction, out, ex.baseline) for ex, out in zip(examples, outputs)]
    judged = grader.prefer(items, template or (None if grader.proxy else judge_template()), desc="AlpacaEval judge")
    ok = [k for k, (p, _) in enumerate(judged) if p is not None]
    prefix = "alpaca_eval_proxy" if grader.proxy else "alpaca_eval"
    metrics = {f"{prefix}_parse_failures": len(examples) - len(ok), f"{prefix}_judged": len(ok)}
    if ok:
        prefs = [judged[k][0] for k in ok]
        wr, se = win_rate(prefs)
        lc, lc_se = lc_win_rate(prefs, [len(outputs[k]) for k in ok], [len(examples[k].baseline) for k in ok])
        metrics |= {
            f"{prefix}_win_rate": wr,
            f"{prefix}_win_rate_se": se,
            f"{prefix}_lc_win_rate": lc,
            f"{prefix}_lc_win_rate_se": lc_se,
            f"{prefix}_avg_length": float(np.mean([len(o) for o in outputs])),
        }
    records = [
        {"instruction": ex.instruction, "output": out, "baseline": ex.baseline, "preference": p, "judgments": raw}
        for ex, out, (p, raw) in zip(examples, outputs, judged)
    ]
    return metrics, records
