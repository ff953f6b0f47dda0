"""The evaluate stage: the held-out reward of a policy (worlds with rule judges) and the benchmarks the recipe
enables (lm-eval tasks, MT-Bench, AlpacaEval 2.0)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from selm.config import Recipe
from selm.pipeline.components import Components
from selm.pipeline.judge import measure
from selm.progress import timed
from selm.records import Completion, Judgment

EVAL_SEED = 10_000  # sampling seed of the held-out replies is EVAL_SEED + round, the same for every experiment


def evaluate(
    parts: Components, policy_path: str, round: int, policy_name: str
) -> tuple[dict[str, float], list[Completion], list[Judgment]]:
    """Held-out reward of the policy: one reply per held-out prompt at ``eval.temperature``, judged by the world's
    rule judges with the raw weighted sum.

    Returns (metrics, completions, judgments); metrics hold mean and standard error for every objective and the
    combined reward (``heldout/<objective>`` and ``heldout/<objective>_se``); all empty when the world has no
    held-out set (the benchmarks evaluate). ``per_prompt(judgments)`` gives each prompt's values.
    """
    recipe = parts.recipe
    prompts = parts.world.heldout_prompts(recipe)
    if not prompts:
        return {}, [], []
    completions = parts.sampler(policy_path, recipe.eval.batch_size, policy_name).sample(
        prompts,
        n=1,
        temperature=recipe.eval.temperature,
        max_new_tokens=recipe.sampling.max_new_tokens,
        round=round,
        desc=f"evaluate round {round}",
        seed=EVAL_SEED + round,  # the same draw for every experiment: comparisons share their noise
    )
    judgments = measure(parts, prompts, completions)
    return parts.reward_metrics(judgments, "heldout"), completions, judgments


def per_prompt(judgments: list[Judgment], prefix: str = "heldout") -> dict[str, dict[str, float]]:
    """{<prefix>/reward, <prefix>/<objective>: {key: value}}: what paired comparisons of two policies need.

    The key is the prompt id, and ``<id>#<k>`` for its k-th repeat (k ≥ 2): a held-out set may draw a prompt more
    than once (the tiny world does), and each draw is its own paired observation, so the mean over the keys is the
    logged held-out metric."""
    out: dict[str, dict[str, float]] = {}
    seen: Counter[str] = Counter()
    for j in judgments:
        seen[j.prompt_id] += 1
        key = j.prompt_id if seen[j.prompt_id] == 1 else f"{j.prompt_id}#{seen[j.prompt_id]}"
        for name, value in {"reward": j.reward, **j.scores}.items():
            out.setdefault(f"{prefix}/{name}", {})[key] = value
    return out


def lm_eval_due(recipe: Recipe, round: int) -> bool:
    """lm-eval runs every round, or with ``eval.lm_eval.every_round = false`` on the initial and the last policy."""
    return recipe.eval.lm_eval.every_round or round in (0, recipe.experiment.rounds)


def benchmarks(
    parts: Components, policy_path: str, round: int, policy_name: str
) -> tuple[dict[str, float], dict[str, list[dict]], dict[str, dict[str, float]]]:
    """The benchmarks enabled in ``eval`` (lm-eval tasks, MT-Bench, AlpacaEval 2.0) on the policy: (metrics, records
    per benchmark, per-document scores of the lm-eval tasks).

    Graded by ``eval.judge``: the offline proxy (metrics named ``*_proxy/*``) or an LLM judge with the official
    prompts. ``eval_judge/*`` metrics count the grader's calls, tokens and cost; ``benchmarks/prompts_truncated`` the
    prompts cut to fit the policy's context."""
    recipe = parts.recipe
    e = recipe.eval
    metrics: dict[str, float] = {}
    records: dict[str, list[dict]] = {}
    scores: dict[str, dict[str, float]] = {}
    if e.lm_eval.tasks and lm_eval_due(recipe, round):
        metrics, scores = lm_eval_metrics(parts, policy_path)
    if not (e.mt_bench.enabled or e.alpaca_eval.enabled):
        return metrics, records, scores
    from selm.benchmarks import alpaca_eval, mt_bench

    grader = parts.grader
    draw = parts.sampler(policy_path, e.batch_size, policy_name)
    if e.mt_bench.enabled:
        m = e.mt_bench
        questions = mt_bench.load_questions(m.questions or None, m.references or None, m.per_category)
        metrics_mt, records["mt_bench"] = mt_bench.run(draw, grader, questions, m.max_new_tokens, seed=round)
        metrics |= metrics_mt
    if e.alpaca_eval.enabled:
        a = e.alpaca_eval
        examples = alpaca_eval.load_examples(a.baseline_outputs or None, a.limit)
        template = None if grader.proxy else alpaca_eval.judge_template(a.judge_prompt or None)
        metrics_ae, records["alpaca_eval"] = alpaca_eval.run(draw, grader, examples, a.max_new_tokens, template)
        metrics |= metrics_ae
    metrics |= grader.usage.metrics(group="eval_judge")
    metrics["benchmarks/prompts_truncated"] = draw.truncated
    return metrics, records, scores


def lm_eval_metrics(parts: Components, policy_path: str) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """``eval.lm_eval.tasks`` through lm-eval's Python API on the loaded policy: {lm_eval/<task>_<metric>: value}
    and each document's scores ({lm_eval/<task>_<metric>: {doc_id: value}})."""
    import tempfile

    from selm.benchmarks.lm_eval_suite import evaluate as lm_evaluate
    from selm.benchmarks.lm_eval_suite import per_document

    c = parts.recipe.eval.lm_eval
    model, tokenizer = parts.models.get(policy_path, c.dtype)
    with tempfile.TemporaryDirectory(prefix="selm-lm-eval-") as work:
        metrics, results = lm_evaluate(
            model, tokenizer, c.tasks, c.limit, work, c.batch_size, c.apply_chat_template, c.max_gen_toks
        )
    return metrics, per_document(results)


@dataclass
class Evaluation:
    metrics: dict[str, float]  # held-out and benchmark metrics together
    benchmark_metrics: dict[str, float]
    completions: list[Completion] = field(default_factory=list)  # the held-out replies
    judgments: list[Judgment] = field(default_factory=list)  # and their judgments
    benchmark_records: dict[str, list[dict]] = field(default_factory=dict)  # answers and judgments per benchmark
    #: per-prompt values of the held-out metrics and the lm-eval tasks: {metric: {prompt or document id: value}}
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # time/evaluate_s, time/benchmarks_s


def evaluate_all(parts: Components, policy_path: str, round: int, policy_name: str) -> Evaluation:
    """The evaluate step: ``evaluate`` (held-out reward), then ``benchmarks``, each timed, on the step's models."""
    timings: dict[str, float] = {}
    with timed(timings, "evaluate"):
        metrics, completions, judgments = evaluate(parts, policy_path, round, policy_name)
    with timed(timings, "benchmarks"):
        bench_metrics, bench_records, bench_scores = benchmarks(parts, policy_path, round, policy_name)
    scores = per_prompt(judgments) | bench_scores
    return Evaluation(
        {**metrics, **bench_metrics}, bench_metrics, completions, judgments, bench_records, scores, timings
    )
