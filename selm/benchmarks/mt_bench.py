"""MT-Bench (Zheng et al., 2023): 80 two-turn questions in 8 categories, single-answer grading 1–10.

The policy answers turn 1, then turn 2 with its own turn-1 answer in the conversation, at FastChat's per-category
temperatures. The judge grades each turn with the official prompts: ``single-v1`` / ``single-v1-multi-turn``, and
the reference-guided ``single-math-v1`` / ``single-math-v1-multi-turn`` (GPT-4 reference answers) for math,
reasoning and coding. Scores: mean over graded turns, per turn and per category. A verdict that does not parse is
counted (``parse_failures``) and left out of the means, never guessed.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from selm.benchmarks.graders import RateItem
from selm.data import resolve

#: FastChat's generation temperatures per category (gen_model_answer.py)
TEMPERATURE = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}
NEED_REFERENCE = ("math", "reasoning", "coding")


@dataclass
class Question:
    id: int
    category: str
    turns: list[str]
    reference: list[str] | None  # reference answers for both turns (math, reasoning, coding)


def load_questions(
    path: str | None = None, reference_path: str | None = None, per_category: int | None = None
) -> list[Question]:
    """The questions, with GPT-4 reference answers attached where the official judging needs them; at most
    ``per_category`` questions of each category (in file order) when given."""
    qpath = resolve("mt_bench/question.jsonl", path)
    rpath = resolve("mt_bench/reference_answer_gpt-4.jsonl", reference_path)
    refs = {}
    for lineno, line in enumerate(Path(rpath).read_text().splitlines(), 1):
        if line.strip():
            r = _json(line, rpath, lineno)
            refs[r["question_id"]] = r["choices"][0]["turns"]
    out: list[Question] = []
    seen: defaultdict[str, int] = defaultdict(int)
    for lineno, line in enumerate(Path(qpath).read_text().splitlines(), 1):
        if not line.strip():
            continue
        q = _json(line, qpath, lineno)
        if per_category is not None and seen[q["category"]] >= per_category:
            continue
        seen[q["category"]] += 1
        ref = refs.get(q["question_id"], q.get("reference"))
        out.append(Question(q["question_id"], q["category"], q["turns"], ref))
    return out


def _json(line: str, path, lineno: int) -> dict:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{lineno}: not valid JSON: {e}") from None


def answer(sampler, questions: list[Question], max_new_tokens: int, seed: int = 0) -> list[list[str]]:
    """Two answers per question: turn 2 is generated with the policy's own turn-1 answer in the conversation."""
    tok = sampler.tokenizer
    answers: list[list[str]] = [[] for _ in questions]
    for turn in (0, 1):
        convs = []
        for q, a in zip(questions, answers):
            msgs = []
            for t in range(turn + 1):
                msgs.append({"role": "user", "content": q.turns[t]})
                if t < turn:
                    msgs.append({"role": "assistant", "content": a[t]})
            convs.append(msgs)
        by_temperature = defaultdict(list)
        for i, q in enumerate(questions):
            by_temperature[TEMPERATURE.get(q.category, 0.7)].append(i)
        for temperature, idx in sorted(by_temperature.items()):
            encoded = [
                list(tok.apply_chat_template(convs[i], add_generation_prompt=True, return_dict=False)) for i in idx
            ]
            comps = sampler.sample_encoded(
                encoded,
                [str(questions[i].id) for i in idx],
                temperature=max(temperature, 1e-5),
                greedy=temperature == 0,
                max_new_tokens=max_new_tokens,
                desc=f"MT-Bench turn {turn + 1} (T={temperature})",
                seed=seed + turn,
            )
            for i, c in zip(idx, comps):
                answers[i].append(c.text)
    return answers


def grading_items(questions: list[Question], answers: list[list[str]]) -> list[RateItem]:
    """Turn 1 and turn 2 of each question as the official judge prompts' fields (reference-guided where needed)."""
    items = []
    for q, a in zip(questions, answers):
        ref = q.reference if q.category in NEED_REFERENCE and q.reference else None
        kind = "single-math-v1" if ref else "single-v1"
        one = {"question": q.turns[0], "answer": a[0], **({"ref_answer_1": ref[0]} if ref else {})}
        two = {"question_1": q.turns[0], "question_2": q.turns[1], "answer_1": a[0], "answer_2": a[1]}
        if ref:
            two |= {"ref_answer_1": ref[0], "ref_answer_2": ref[1]}
        items.append(RateItem(f"mt_bench:{kind}", one, a[0], ref[0] if ref else q.turns[0]))
        items.append(RateItem(f"mt_bench:{kind}-multi-turn", two, a[1], ref[1] if ref else q.turns[1]))
    return items


def scores(questions: list[Question], ratings: list[float | None], prefix: str) -> dict[str, float]:
    """Mean rating overall, per turn and per category (graded turns only) and how many verdicts failed."""
    by: dict[str, list[float]] = defaultdict(list)
    for k, r in enumerate(ratings):
        if r is None:
            continue
        q = questions[k // 2]
        for key in ("score", f"turn{k % 2 + 1}", q.category):
            by[key].append(r)
    out = {f"{prefix}/{key}": statistics.fmean(v) for key, v in by.items()}
    out[f"{prefix}/parse_failures"] = sum(r is None for r in ratings)
    out[f"{prefix}/graded_turns"] = len(ratings) - out[f"{prefix}/parse_failures"]
    return out


def run(sampler, grader, questions: list[Question], max_new_tokens: int, seed: int = 0):
    """Answer, grade, score: (metrics, one record per question and turn). Metric names start with ``mt_bench``
    (``mt_bench_proxy`` for the proxy grader)."""
    answers = answer(sampler, questions, max_new_tokens, seed)
    items = grading_items(questions, answers)
    graded = grader.rate(items, desc="MT-Bench judge")
    prefix = "mt_bench_proxy" if grader.proxy else "mt_bench"
    metrics = scores(questions, [r for r, _ in graded], prefix)
    records = [
        {
            "question_id": questions[k // 2].id,
            "category": questions[k // 2].category,
            "turn": k % 2 + 1,
            "judge_prompt": it.template,
            "answer": it.answer,
            "rating": rating,
            "judgment": text,
        }
        for k, (it, (rating, text)) in enumerate(zip(items, graded))
    ]
    return metrics, records
