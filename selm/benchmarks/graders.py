"""Who grades evaluation answers.

- ``LLMGrader``: an LLM judge over an OpenAI-compatible endpoint with the benchmarks' official judge prompts —
  the way to official MT-Bench / AlpacaEval numbers (a GPT-4-family model, or a ``vllm serve``d local judge).
- ``ProxyGrader``: offline and CPU-only, sentence-embedding similarity (all-MiniLM-L6-v2). It is a smoke test of the
  pipeline, not a measure of quality; every metric it produces has ``proxy`` in its name.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from selm.judges.base import JudgeUsage
from selm.judges.llm import JudgeTemplate, LLMEndpoint, LLMJudge, load_template


@dataclass
class RateItem:
    """One single-answer grading: the official template's name and fields, and for the proxy the answer and what
    it should resemble (the reference answer, else the question)."""

    template: str
    fields: dict[str, str]
    answer: str
    target: str


@dataclass
class PreferItem:
    """One pairwise judgment of the policy's output against a baseline output for the same instruction."""

    instruction: str
    output: str
    baseline: str


class LLMGrader:
    proxy = False

    def __init__(self, endpoint: LLMEndpoint, concurrency: int = 8, usage: JudgeUsage | None = None):
        self.endpoint, self.concurrency = endpoint, concurrency
        self.usage = usage if usage is not None else JudgeUsage()
        self._judges: dict[str, LLMJudge] = {}

    def judge(self, template: str | JudgeTemplate) -> LLMJudge:
        t = template if isinstance(template, JudgeTemplate) else load_template(template)
        if t.name not in self._judges:
            self._judges[t.name] = LLMJudge(self.endpoint, t, concurrency=self.concurrency, usage=self.usage)
        return self._judges[t.name]

    def rate(self, items: Sequence[RateItem], desc: str = "grade") -> list[tuple[float | None, str]]:
        """(rating 1–10 or None if unparsed, raw judge output) per item."""
        out: list = [None] * len(items)
        if items:  # any judge's pool runs the jobs; each job uses its own template's judge
            jobs = [lambda it=it: self.judge(it.template).grade(it.fields, [it.answer]) for it in items]
            self.judge(items[0].template).run(jobs, out.__setitem__, desc)
        return out

    def prefer(self, items: Sequence[PreferItem], template: JudgeTemplate, desc: str = "compare") -> list:
        """(P(output beats baseline) ∈ {0, ½, 1} or None, [raw outputs]) per item; both orders are judged and a
        disagreement counts as a tie. ``template`` uses {instruction}, {output_1}, {output_2}."""
        judge = self.judge(template)
        out: list = [None] * len(items)

        def job(it: PreferItem):
            ab = {"instruction": it.instruction, "output_1": it.output, "output_2": it.baseline}
            ba = {"instruction": it.instruction, "output_1": it.baseline, "output_2": it.output}
            c = judge.compare_fields(ab, ba, [it.output, it.baseline])
            return c.points(), c.outputs

        judge.run([functools.partial(job, it) for it in items], out.__setitem__, desc)
        return out


class ProxyGrader:
    """Offline stand-in: rating = 1 + 9·max(0, cos(answer, target)); preference = which output is closer to the
    instruction (ties within 0.02). Crude by design; only its pipeline, not its numbers, mean anything."""

    proxy = True
    TIE = 0.02

    def __init__(self, embedding_model: str = "all-MiniLM-L6-v2"):
        from selm.judges.embedding import EmbeddingJudge

        self.embedder = EmbeddingJudge(embedding_model)
        self.usage = JudgeUsage()

    def rate(self, items: Sequence[RateItem], desc: str = "grade") -> list[tuple[float, str]]:
        sims = self.embedder.similarity([it.answer for it in items], [it.target for it in items])
        self.usage.calls += len(items)
        return [(1 + 9 * max(0.0, s), f"proxy cosine {s:.4f}") for s in sims]

    def prefer(self, items: Sequence[PreferItem], template=None, desc: str = "compare") -> list:
        n = len(items)
        sims = self.embedder.similarity(
            [it.output for it in items] + [it.baseline for it in items], [it.instruction for it in items] * 2
        )
        self.usage.calls += n
        out = []
        for s_out, s_base in zip(sims[:n], sims[n:]):
            p = 0.5 if abs(s_out - s_base) <= self.TIE else float(s_out > s_base)
            out.append((p, [f"proxy cosine output {s_out:.4f} vs baseline {s_base:.4f}"]))
        return out
