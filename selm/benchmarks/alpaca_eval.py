"""AlpacaEval 2.0 (Dubois et al., 2024): 805 instructions, the policy's output judged pairwise against the
GPT-4-turbo (``gpt4_1106_preview``) baseline output; win rate and length-controlled (LC) win rate.

Judging: the official ``alpaca_eval_clf_gpt4_turbo`` prompt, whose answer is exactly ``m`` (first output) or ``M``
(second). AlpacaEval reads a *continuous* preference from the judge's log-probabilities of m/M with one random
order; we judge *both* orders and parse the answer strictly, so a preference is 1 (both orders prefer the policy),
0, or ½ (the orders disagree) — the same position-debiasing as the rest of selm, on any OpenAI-compatible server
(most do not return log-probs).

Win rate = 100 · mean(p), standard error = 100 · SEM. LC win rate: AlpacaEval's ``length_controlled_minimal`` GLM
fitted by AlpacaEval's own code (see ``lc_win_rate``). The default ``length_controlled_v1`` also needs per-instruction
difficulties and "gamed" baseline annotations that AlpacaEval fetches from the Hugging Face hub at run time, and the
``alpaca_eval`` package (0.6.6) fetches its evaluation set and baselines from the hub too, so selm runs the
benchmark itself on local files and calls into the package only for the fit.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selm.benchmarks.graders import PreferItem
from selm.data import resolve
from selm.judges.llm import JudgeTemplate

log = logging.getLogger(__name__)

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


#: AlpacaEval's cross-validation folds for the LC GLM (GroupKFold): fewer judged instructions cannot be fitted its way
LC_FOLDS = 5


def length_feature(output_lens: list[int], baseline_lens: list[int]) -> np.ndarray | None:
    """The LC GLM's length feature, as AlpacaEval's ``_get_featurized_data`` builds it: tanh(Δ_i / sd(Δ)) with
    Δ_i = baseline − output length in characters and sd with ddof 1; None when every Δ is the same (sd 0)."""
    delta = np.asarray(baseline_lens, dtype=float) - np.asarray(output_lens, dtype=float)
    sd = delta.std(ddof=1) if len(delta) > 1 else 0.0
    return np.tanh(delta / sd) if sd > 0 else None


def lc_win_rate(prefs: list[float], output_lens: list[int], baseline_lens: list[int]) -> float | None:
    """Length-controlled win rate as AlpacaEval 2.0 computes it for its ``length_controlled_minimal`` GLM, fitted by
    AlpacaEval's own routine (``alpaca_eval.metrics.glm_winrate.fit_LogisticRegressionCV``).

    Logistic regression without intercept of the soft preference p_i ∈ [0, 1] (policy wins) on tanh(Δ_i / sd(Δ))
    and a constant 1 (AlpacaEval's ``not_gamed_baseline``): z_i = w_len · tanh(Δ_i / sd(Δ)) + w_0, with
    Δ_i = baseline − output length in characters (AlpacaEval's ``len_1 − len_2``) and sd with ddof 1. The fit is
    AlpacaEval's: L1 penalty, liblinear, C chosen by 5-fold GroupKFold on the log-loss, soft labels as each row twice
    (y = 1 weighted p, y = 0 weighted 1 − p). LC = 100 · σ(w_0), the prediction at Δ = 0. The L1 penalty can shrink
    w_0 to exactly 0 (LC = 50) on small or noisy sets, where the unregularised MLE (``lc_mle``) would not.

    Only the featurisation is ours: AlpacaEval's ``_get_featurized_data`` downloads ``df_gamed.csv`` from the hub even
    for this formula, which needs nothing from it. None when AlpacaEval's fit is undefined: fewer than ``LC_FOLDS``
    judged instructions, or every length difference the same (sd 0)."""
    import pandas as pd
    import sklearn
    from alpaca_eval.metrics.glm_winrate import fit_LogisticRegressionCV

    feature = length_feature(output_lens, baseline_lens)
    if len(prefs) < LC_FOLDS or feature is None:
        return None
    length, bias = "np.tanh(std_delta_len)", "not_gamed_baseline.astype(float)"  # AlpacaEval's (patsy) column names
    train = pd.DataFrame({length: feature, bias: 1.0, "preference": np.asarray(prefs, dtype=float)})
    with sklearn.config_context():  # the fit turns on sklearn's metadata routing globally; keep that local
        model = fit_LogisticRegressionCV(train, "preference", is_ytrue_proba=True, n_splits=LC_FOLDS)
    return 100 * float(model.predict_proba(pd.DataFrame({length: [0.0], bias: [1.0]}))[0, 1])


def lc_mle(prefs: list[float], output_lens: list[int], baseline_lens: list[int]) -> tuple[float, float]:
    """The same GLM as ``lc_win_rate`` at its unregularised maximum-likelihood fit: (100 · σ(ŵ_0), its standard
    error by the delta method, 100 · σ(ŵ_0)(1 − σ(ŵ_0)) · sqrt([H⁻¹]₀₀), H the log-loss Hessian).

    Not AlpacaEval's number (its L1, cross-validated fit shrinks toward 50); the SE is the uncertainty selm reports
    beside AlpacaEval's LC win rate (AlpacaEval's own ``lc_standard_error`` is the SEM of per-instruction
    predictions, a different quantity). Newton's method with a tiny ridge (1e-6) that only matters when the data
    are separable."""
    p = np.asarray(prefs, dtype=float)
    feature = length_feature(output_lens, baseline_lens)
    x = np.stack([np.zeros_like(p) if feature is None else feature, np.ones_like(p)], 1)
    w = np.zeros(2)
    ridge = 1e-6 * np.eye(2)
    for _ in range(100):
        s = 1 / (1 + np.exp(-(x @ w)))
        step = np.linalg.solve((x * (s * (1 - s))[:, None]).T @ x + ridge, x.T @ (s - p) + ridge @ w)
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
    metrics: dict[str, float] = {f"{prefix}/parse_failures": len(examples) - len(ok), f"{prefix}/judged": len(ok)}
    if ok:
        prefs = [judged[k][0] for k in ok]
        wr, se = win_rate(prefs)
        lens = [len(outputs[k]) for k in ok], [len(examples[k].baseline) for k in ok]
        lc = lc_win_rate(prefs, *lens)
        metrics |= {
            f"{prefix}/win_rate": wr,
            f"{prefix}/win_rate_se": se,
            f"{prefix}/lc_mle_se": lc_mle(prefs, *lens)[1],
            f"{prefix}/avg_length": float(np.mean([len(o) for o in outputs])),
        }
        if lc is None:
            log.warning(f"AlpacaEval: no LC win rate (needs {LC_FOLDS} judged instructions of different lengths)")
        else:
            metrics[f"{prefix}/lc_win_rate"] = lc
    records = [
        {"instruction": ex.instruction, "output": out, "baseline": ex.baseline, "preference": p, "judgments": raw}
        for ex, out, (p, raw) in zip(examples, outputs, judged)
    ]
    return metrics, records
