"""The stages of one round as plain functions: what each Metaflow step calls.

sample → select → judge → train → evaluate. Each takes the resolved ``Recipe`` and records, returns records and
metrics, and knows nothing about Metaflow or MLflow, so it is testable and scriptable on its own.
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from selm import acquisition, rewards, tinyworld
from selm.config import Recipe
from selm.judging import JudgeUsage, judge

if TYPE_CHECKING:
    from selm.llm_judge import LLMEndpoint
from selm.judgment_cache import JudgmentCache
from selm.pairs import best_vs_worst
from selm.records import Completion, Judgment, PreferencePair, Prompt

# torch-heavy modules (sampling, training) are imported inside the stages that need them, so the judge and
# select steps start in a fraction of the time.

HELDOUT_SEED = 10_000  # the held-out prompt set is the same for every round and every experiment


@contextmanager
def timed(metrics: dict, name: str):
    """Adds the wall time of the block to ``metrics[f"time_{name}_s"]``."""
    t0 = time.perf_counter()
    yield
    metrics[f"time_{name}_s"] = round(time.perf_counter() - t0, 3)


def initial_policy_path(recipe: Recipe) -> str:
    """Where round 1 starts: the tiny world's cached SFT policy, or the recipe's path / hub id."""
    if recipe.policy.init == "tiny":
        from selm.tinyworld.policy import TinyPolicySpec, tiny_policy_path

        return str(tiny_policy_path(TinyPolicySpec(**recipe.policy.tiny.model_dump())))
    return recipe.policy.init


def round_dir(recipe: Recipe, experiment_id: str, round: int) -> Path:
    return Path(recipe.experiment.output_dir) / experiment_id / f"round-{round}"


def train_prompts(recipe: Recipe, round: int) -> list[Prompt]:
    """This round's prompts. Tiny world: a seeded draw from the train split per (experiment seed, round). Prompts
    file: slice k of the file after one seeded shuffle, so rounds see disjoint prompts (the SELM paper's three
    disjoint UltraFeedback slices)."""
    n = recipe.world.train_prompts_per_round
    if recipe.world.name == "tiny":
        return tinyworld.prompts("train", n, seed=recipe.experiment.seed * 1000 + round)
    import random

    from selm.data import load_prompt_file

    pool = load_prompt_file(recipe.world.prompts_file)
    needed = n * recipe.experiment.rounds
    if len(pool) < needed:
        raise ValueError(
            f"{recipe.world.prompts_file}: {len(pool)} prompts, but {recipe.experiment.rounds} rounds × "
            f"world.train_prompts_per_round = {n} need {needed} disjoint ones"
        )
    random.Random(recipe.experiment.seed).shuffle(pool)
    return pool[(round - 1) * n : round * n]


def heldout_prompts(recipe: Recipe) -> list[Prompt]:
    return tinyworld.prompts("heldout", recipe.world.heldout_prompts, seed=HELDOUT_SEED)


def _sampler(recipe: Recipe, policy_path: str, batch_size: int, policy_name: str):
    from selm.sampling import make_sampler

    return make_sampler(recipe.sampling.backend, policy_path, batch_size, policy_name)


@dataclass
class Samples:
    completions: list[Completion]  # n samples per prompt, adjacent; then dataset replies (pairs.dataset_candidates)
    greedy: list[Completion]  # one greedy reply per prompt: y0 of SELM
    prompt_ids: dict[str, list[int]]  # prompt id → the token ids the replies were conditioned on


def sample(policy_path: str, prompts: list[Prompt], recipe: Recipe, round: int, policy_name: str) -> Samples:
    """n replies per prompt at the recipe's temperature, plus the greedy reply y0 of the same (reference) policy."""
    from selm.chat import encode_prompt

    s = recipe.sampling
    sampler = _sampler(recipe, policy_path, s.batch_size, policy_name)
    completions = sampler.sample(
        prompts,
        n=s.n,
        temperature=s.temperature,
        max_new_tokens=s.max_new_tokens,
        round=round,
        desc=f"sample round {round}",
        seed=recipe.experiment.seed * 1000 + round,
    )
    greedy = sampler.sample(
        prompts, n=1, greedy=True, max_new_tokens=s.max_new_tokens, round=round, desc=f"greedy y0 round {round}"
    )
    if recipe.pairs.dataset_candidates:
        completions += dataset_completions(prompts, sampler.tokenizer, round)
    return Samples(completions, greedy, {p.id: encode_prompt(sampler.tokenizer, p.text) for p in prompts})


def dataset_completions(prompts: list[Prompt], tokenizer, round: int) -> list[Completion]:
    """Each prompt's dataset ``chosen`` and ``rejected`` replies as completions (kind "dataset") to be ranked with
    the policy's samples — the three-way {policy, chosen, rejected} ranking of the SELM paper."""
    from selm.chat import encode_response

    missing = [p.id for p in prompts if not {"chosen", "rejected"} <= set(p.meta)]
    if missing:
        raise ValueError(
            f"pairs.dataset_candidates: {len(missing)} of {len(prompts)} prompts carry no dataset chosen/rejected "
            f"replies (first: {missing[0]})"
        )
    return [
        Completion(p.id, p.meta[k], encode_response(tokenizer, p.meta[k]), [], "dataset", round, f"dataset:{k}")
        for p in prompts
        for k in ("chosen", "rejected")
    ]


def judgment_cache(recipe: Recipe) -> JudgmentCache | None:
    if recipe.judge.cache == "off":
        return None
    if recipe.judge.cache == "auto":
        from selm.tinyworld.policy import cache_dir

        return JudgmentCache(cache_dir() / "judgments.sqlite")
    return JudgmentCache(recipe.judge.cache)


def judge_completions(
    prompts: list[Prompt],
    completions: list[Completion],
    recipe: Recipe,
    cache: JudgmentCache | None = None,
    usage: JudgeUsage | None = None,
    training: bool = False,
) -> list[Judgment]:
    """Judge each reply; ``reward`` combines the objectives.

    With ``training`` the recipe's judge (``judge.backend``) and combination (``judge.combine``) rank the replies
    that become pairs. Otherwise (evaluation) the world's rule judges and the raw weighted sum measure them, so
    every method and every judge is measured on the same scale.
    """
    backend, combine = (recipe.judge.backend, recipe.judge.combine) if training else ("rules", "sum")
    if backend == "llm":
        j, weights = _judge_with_llm(prompts, completions, recipe, cache, usage), {_llm_objective(recipe): 1.0}
    else:
        score, weights, judge_id = _judge_backend(recipe, backend)
        j = judge({p.id: p for p in prompts}, completions, score, weights, judge_id, cache, usage)
    return j if combine == "sum" else rewards.combine(j, combine, weights, recipe.judge.lsc_quantile)


def _llm_objective(recipe: Recipe) -> str:
    from selm.llm_judge import RATING_OBJECTIVE, WINRATE_OBJECTIVE, load_template

    return RATING_OBJECTIVE if load_template(recipe.judge.llm.template).type == "single" else WINRATE_OBJECTIVE


def llm_endpoint(c) -> LLMEndpoint:
    """The endpoint of an ``LLMJudgeConfig``; model "tiny" names the tiny world's judge LM (served locally)."""
    from selm.llm_judge import LLMEndpoint

    model = c.model
    if model == "tiny":
        from selm.tinyworld.judge_lm import tiny_judge_lm_path

        model = str(tiny_judge_lm_path())
    return LLMEndpoint(
        **c.model_dump(include={"base_url", "max_tokens", "temperature", "timeout_s", "max_retries", "backoff_s"}),
        **c.model_dump(include={"price_in_per_mtok", "price_out_per_mtok"}),
        model=model,
        api_key_env=c.api_key_env or None,
    )


def llm_judge(recipe: Recipe, usage: JudgeUsage | None = None):
    """The recipe's training judge when ``judge.backend = "llm"`` (``[judge.llm]``)."""
    from selm.llm_judge import LLMJudge, load_template

    c = recipe.judge.llm
    return LLMJudge(llm_endpoint(c), load_template(c.template), c.swap, c.concurrency, usage)


def _judge_with_llm(prompts, completions, recipe, cache, usage) -> list[Judgment]:
    """Single ratings of each reply, or a round-robin pairwise ranking of each prompt's replies (PairRM-style)."""
    from selm.llm_judge import rank_groups, rate_replies

    llm = llm_judge(recipe, usage)
    by_id = {p.id: p for p in prompts}

    def reference(pid: str) -> str | None:
        return by_id[pid].meta.get(recipe.judge.reference_key)

    if llm.template.type == "single":
        items = [(by_id[c.prompt_id].text, c.text, reference(c.prompt_id)) for c in completions]
        scores = rate_replies(llm, items, cache)
    else:
        members: dict[str, list[int]] = {}
        for i, c in enumerate(completions):
            members.setdefault(c.prompt_id, []).append(i)
        groups = [(by_id[pid].text, [completions[i].text for i in idx], reference(pid)) for pid, idx in members.items()]
        scores = [None] * len(completions)
        for idx, ranked in zip(members.values(), rank_groups(llm, groups, cache), strict=True):
            for i, s in zip(idx, ranked, strict=True):
                scores[i] = s
    return [
        Judgment(c.prompt_id, i, s, next(iter(s.values())), llm.id) for i, (c, s) in enumerate(zip(completions, scores))
    ]


def _judge_backend(recipe: Recipe, backend: str):
    """(score function, objective weights, judge id) of a judge backend."""
    if backend == "rules":
        return tinyworld.score, recipe.judge.weights, tinyworld.JUDGE_ID
    if backend == "embedding":
        from selm.embedding_judge import OBJECTIVE

        judge_fn = _embedding_judge(recipe.judge.embedding_model, recipe.judge.reference_key)
    else:
        from selm.reward_model import OBJECTIVE

        judge_fn = _reward_model(recipe.judge.reward_model)
    return judge_fn, {OBJECTIVE: 1.0}, judge_fn.id


@functools.cache
def _embedding_judge(model: str, reference_key: str):
    from selm.embedding_judge import EmbeddingJudge

    return EmbeddingJudge(model, reference_key)


@functools.cache
def _reward_model(path: str):
    """One loaded reward model per process (steps and sweeps call the judge many times)."""
    from selm.reward_model import RewardModelJudge

    if path == "tiny":
        from selm.tinyworld.reward_model import tiny_reward_model_path

        path = str(tiny_reward_model_path())
    return RewardModelJudge(path)


@dataclass
class Selection:
    """What the judge labels this round: all samples, or the comparisons an acquisition function picked."""

    method: str
    completion_indices: list[int]  # replies to judge (indices into Samples.completions)
    labels: int  # comparisons paid for: one per prompt ("all") or per acquired candidate
    candidates: list[acquisition.Candidate]  # APL only: every candidate comparison, and its scores
    picked: list[int]  # indices into candidates, best first
    entropy: dict[str, float]
    certainty: list[float]


def select_comparisons(
    samples: Samples, recipe: Recipe, policy_path: str, reference_path: str, round: int
) -> Selection:
    """Choose which replies go to the judge.

    ``all``: every sample of every prompt (pairs are then best vs worst of n). Otherwise each prompt's first two
    samples form a candidate comparison and ``select.acquisition`` keeps ``select.label_budget`` of them (APL).
    Certainty uses the policy's implicit reward against *its own* reference (``reference_path``, the previous
    round's starting policy); in round 1 the two coincide and every certainty score is 0.
    """
    sel = recipe.select
    comps = samples.completions
    if sel.acquisition == "all":
        return Selection("all", list(range(len(comps))), len(samples.prompt_ids), [], [], {}, [])
    cands = acquisition.candidates(comps)
    entropy = acquisition.predictive_entropy(comps)
    cert = _certainty_scores(cands, samples, policy_path, reference_path, recipe.train.beta)
    picked = acquisition.acquire(
        sel.acquisition,
        cands,
        sel.label_budget,
        entropy=entropy,
        certainty_scores=cert,
        hybrid_factor=sel.hybrid_factor,
        seed=recipe.experiment.seed * 1000 + round,
    )
    indices = [i for k in picked for i in (cands[k].a, cands[k].b)]
    return Selection(sel.acquisition, indices, len(picked), cands, picked, entropy, cert)


def acquisition_rows(selection: Selection, prompts: list[Prompt]) -> list[dict]:
    """One row per candidate: prompt, both replies' ids, entropy, certainty and rank among the picked (or None)."""
    text = {p.id: p.text for p in prompts}
    rank = {k: r for r, k in enumerate(selection.picked)}
    return [
        {
            "prompt": text[c.prompt_id],
            "entropy": selection.entropy[c.prompt_id],
            "certainty": selection.certainty[k],
            "rank": rank.get(k),
        }
        for k, c in enumerate(selection.candidates)
    ]


def _certainty_scores(cands, samples: Samples, policy_path: str, reference_path: str, beta: float) -> list[float]:
    if not cands or Path(policy_path).resolve() == Path(reference_path).resolve():
        return [0.0] * len(cands)  # policy is its own reference: r̂ ≡ 0
    from selm.logprobs import batched_sequence_logprobs
    from selm.sampling import load_policy

    prompts = [samples.prompt_ids[c.prompt_id] for c in cands for _ in (0, 1)]
    replies = [samples.completions[i].token_ids for c in cands for i in (c.a, c.b)]
    logps = {}
    for name, path in (("policy", policy_path), ("reference", reference_path)):
        model, tok = load_policy(path)
        logps[name] = batched_sequence_logprobs(model, prompts, replies, tok.pad_token_id).tolist()
    pol, ref = logps["policy"], logps["reference"]
    return [
        acquisition.certainty(pol[2 * k], ref[2 * k], pol[2 * k + 1], ref[2 * k + 1], beta) for k in range(len(cands))
    ]


def make_pairs(
    samples: Samples, selection: Selection, judgments: list[Judgment], recipe: Recipe, round: int
) -> list[PreferencePair]:
    """Best-vs-worst pairs over each prompt's judged replies; ``judgments[i]`` judges the i-th selected reply."""
    greedy = {c.prompt_id: c for c in samples.greedy}
    judged = [samples.completions[i] for i in selection.completion_indices]
    return best_vs_worst(samples.prompt_ids, judged, judgments, greedy, recipe.pairs.min_margin, round)


def train(policy_path: str, pairs: list[PreferencePair], recipe: Recipe, round: int, save_to: Path):
    """Train the round's policy from ``policy_path`` (which is also the reference) and save it to ``save_to``.

    In this process, or with ``train.processes`` > 1 in that many processes under ``torchrun`` (``selm.train_worker``).
    Returns the ``TrainHistory``."""
    from selm.training import TrainHistory, train_preferences

    if recipe.train.processes == 1:
        from selm.sampling import load_policy

        model, tokenizer = load_policy(policy_path)
        return train_preferences(model, tokenizer, pairs, recipe.train, round, recipe.experiment.seed, save_to=save_to)
    import json
    import os
    import subprocess
    import sys
    import tempfile

    from selm.records import write_jsonl

    with tempfile.TemporaryDirectory(prefix="selm-train-") as d:
        (Path(d) / "recipe.json").write_text(recipe.model_dump_json())
        write_jsonl(pairs, Path(d) / "pairs.jsonl")
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={recipe.train.processes}",
        ]
        cmd += ["-m", "selm.train_worker", f"{d}/recipe.json", f"{d}/pairs.jsonl", policy_path, str(round)]
        cmd += [str(save_to), f"{d}/history.json"]
        import torch

        # accelerate runs several CPU processes as one job (DDP over gloo) only when told it is on a CPU
        env = {**os.environ, **({} if torch.cuda.is_available() else {"ACCELERATE_USE_CPU": "true"})}
        subprocess.run(cmd, check=True, env=env)
        return TrainHistory(json.loads((Path(d) / "history.json").read_text())["steps"])


def mean_and_se(xs: list[float]) -> tuple[float, float]:
    """Mean and its standard error s/√n."""
    m = statistics.fmean(xs)
    return m, (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def evaluate(policy_path: str, recipe: Recipe, round: int, policy_name: str):
    """Held-out reward of the policy (tiny world): one reply per held-out prompt at ``eval.temperature``.

    Returns (metrics, completions, judgments); metrics hold mean and standard error for every objective and the
    combined reward (``heldout_<objective>`` and ``heldout_<objective>_se``).
    """
    if recipe.world.name != "tiny":  # no rule judges outside the tiny world: the benchmarks evaluate
        return {}, [], []
    prompts = heldout_prompts(recipe)
    sampler = _sampler(recipe, policy_path, recipe.eval.batch_size, policy_name)
    completions = sampler.sample(
        prompts,
        n=1,
        temperature=recipe.eval.temperature,
        max_new_tokens=recipe.sampling.max_new_tokens,
        round=round,
        desc=f"evaluate round {round}",
        seed=HELDOUT_SEED + round,  # the same draw for every experiment: comparisons share their noise
    )
    judgments = judge_completions(prompts, completions, recipe)
    return reward_metrics(judgments, "heldout"), completions, judgments


def benchmarks(policy_path: str, recipe: Recipe, round: int, policy_name: str):
    """The benchmarks enabled in ``eval`` (lm-eval tasks, MT-Bench, AlpacaEval 2.0) on the policy: (metrics, records
    per benchmark).

    Graded by ``eval.judge``: the offline proxy (metrics named ``*_proxy_*``) or an LLM judge with the official
    prompts. ``eval_judge_*`` metrics count the grader's calls, tokens and cost; ``eval_prompts_truncated`` the
    prompts cut to fit the policy's context."""
    e = recipe.eval
    metrics, records = {}, {}
    if e.lm_eval.tasks:
        metrics |= lm_eval_metrics(policy_path, recipe)
    if not (e.mt_bench.enabled or e.alpaca_eval.enabled):
        return metrics, records
    from evals import alpaca_eval, mt_bench
    from evals.graders import LLMGrader, ProxyGrader

    if e.judge.backend == "llm":
        grader = LLMGrader(llm_endpoint(e.judge.llm), e.judge.llm.concurrency)
    else:
        grader = ProxyGrader(e.judge.embedding_model)
    sampler = _sampler(recipe, policy_path, e.batch_size, policy_name)
    if e.mt_bench.enabled:
        m = e.mt_bench
        questions = mt_bench.load_questions(m.questions or None, m.references or None, m.per_category)
        metrics_mt, records["mt_bench"] = mt_bench.run(sampler, grader, questions, m.max_new_tokens, seed=round)
        metrics |= metrics_mt
    if e.alpaca_eval.enabled:
        a = e.alpaca_eval
        examples = alpaca_eval.load_examples(a.baseline_outputs or None, a.limit)
        template = None if grader.proxy else alpaca_eval.judge_template(a.judge_prompt or None)
        metrics_ae, records["alpaca_eval"] = alpaca_eval.run(sampler, grader, examples, a.max_new_tokens, template)
        metrics |= metrics_ae
    metrics |= {f"eval_{k}": v for k, v in grader.usage.metrics().items()}
    metrics["eval_prompts_truncated"] = sampler.truncated
    return metrics, records


def lm_eval_metrics(policy_path: str, recipe: Recipe) -> dict[str, float]:
    """``eval.lm_eval.tasks`` through lm-eval's Python API on the loaded policy: {lm_eval_<task>_<metric>: value}."""
    import tempfile

    from evals.lm_eval_suite import evaluate as lm_evaluate
    from selm.sampling import load_policy

    model, tokenizer = load_policy(policy_path)
    c = recipe.eval.lm_eval
    with tempfile.TemporaryDirectory(prefix="selm-lm-eval-") as work:
        metrics, _ = lm_evaluate(model, tokenizer, c.tasks, c.limit, work, c.batch_size)
    return metrics


def reward_metrics(judgments: list[Judgment], prefix: str) -> dict[str, float]:
    """Mean and standard error of the combined reward, of each objective, and of ``good_all`` (the share of
    replies good on every objective at once), named ``<prefix>_<name>[_se]``."""
    if not judgments:
        return {}
    out = {}
    columns = {"reward": [j.reward for j in judgments]}
    columns.update({k: [j.scores[k] for j in judgments] for k in judgments[0].scores})
    if set(tinyworld.OBJECTIVES) <= set(judgments[0].scores):  # rule judgments (a reward model has one score)
        columns["good_all"] = [float(tinyworld.good_on_all(j.scores)) for j in judgments]
    for name, xs in columns.items():
        out[f"{prefix}_{name}"], out[f"{prefix}_{name}_se"] = mean_and_se(xs)
    return out


def headline(metrics: dict[str, float]) -> str:
    """One log line of a round's held-out result: the combined reward (± SE) and the benchmarks' main numbers."""
    parts = []
    if "heldout_reward" in metrics:
        parts.append(f"held-out reward {metrics['heldout_reward']:.4f} ± {metrics['heldout_reward_se']:.4f}")
    for key in ("mt_bench_proxy_score", "mt_bench_score", "alpaca_eval_proxy_win_rate", "alpaca_eval_win_rate"):
        if key in metrics:
            parts.append(f"{key} {metrics[key]:.2f}")
    return ", ".join(parts) or "no held-out metrics"


def improvement(
    before: dict[str, float],
    after: dict[str, float],
    names=("reward", "correctness", "conciseness", "safety", "good_all"),
    prefix: str = "heldout",
) -> list[dict]:
    """Per objective: before, after, difference and z = Δ / √(se_before² + se_after²) (independent samples)."""
    rows = []
    for n in names:
        k = f"{prefix}_{n}"
        if k not in before or k not in after:
            continue
        diff = after[k] - before[k]
        se = math.sqrt(before[f"{k}_se"] ** 2 + after[f"{k}_se"] ** 2)
        rows.append(
            {
                "objective": n,
                "before": before[k],
                "after": after[k],
                "delta": diff,
                "se_delta": se,
                "z": diff / se if se > 0 else float("inf"),
            }
        )
    return rows
