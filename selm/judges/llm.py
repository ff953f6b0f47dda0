"""LLM judges over any OpenAI-compatible chat-completions endpoint (OpenAI, `vllm serve`, `transformers serve`).

Two grading modes, chosen by the prompt template (data files, MT-Bench's ``judge_prompts.jsonl`` schema):

- ``single``: the judge rates one reply; the verdict is ``[[rating]]`` (1–10).
- ``pairwise``: the judge compares two replies; the verdict is ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie), or an exact
  choice such as AlpacaEval's ``m|M``. Each pair is judged in *both* orders (position-swap debiasing): the verdicts
  agree → that winner; they disagree → a tie, recorded as a disagreement.

The verdict parser is strict so that a reply cannot vote for itself: verdict markers quoted from the replies are
removed from the judge's output first, the output must then hold exactly one marker, and it must be on the last
line. Anything else is a parse failure: counted and reported, never guessed.

Transport: retries with exponential backoff (honouring ``Retry-After``) on timeouts, refused connections, 429, 5xx
and non-JSON bodies; a clear ``JudgeUnavailable`` after the retry budget; at most ``concurrency`` calls in flight;
token usage and cost summed into ``JudgeUsage``. The API key is read from the environment variable *named* in the
recipe, sent only in the ``Authorization`` header and never logged.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from importlib import resources
from itertools import combinations
from pathlib import Path
from typing import Any, TypeVar

import requests

from selm.errors import Permanent
from selm.judges.base import Judge, JudgeUsage
from selm.judges.cache import JudgmentCache

RATING_OBJECTIVE = "llm_rating"  # single grading: the 1–10 rating
WINRATE_OBJECTIVE = "llm_winrate"  # pairwise grading: share of comparisons won within the prompt's replies


# ---------------------------------------------------------------- templates


@dataclass(frozen=True)
class JudgeTemplate:
    """A judge prompt, in the fields of MT-Bench's ``judge_prompts.jsonl``.

    ``prompt_template`` uses ``{question}`` and ``{answer}`` (single) or ``{answer_a}``/``{answer_b}`` (pairwise),
    optionally ``{ref_answer_1}``; ``output_format`` is ``[[rating]]``, ``[[A]]`` or an exact choice ``x|y``.
    """

    name: str
    type: str
    system_prompt: str
    prompt_template: str
    output_format: str

    def render(self, fields: dict[str, str]) -> str:
        """The prompt with each ``{name}`` replaced by ``fields[name]`` (a missing field is an error).

        One pass over the template only: braces inside replies are never treated as fields."""

        def field(m: re.Match) -> str:
            if m.group(1) not in fields:
                raise KeyError(f"judge template {self.name!r} needs field {m.group(1)!r}; given {sorted(fields)}")
            return fields[m.group(1)]

        return re.sub(r"\{(\w+)\}", field, self.prompt_template)

    def fields(self, question: str, answers: Sequence[str], reference: str | None = None) -> dict[str, str]:
        """Fields of a one-turn judgment: the question, the answer (single) or answers A and B, the reference."""
        out = {"question": question}
        if self.type == "single":
            out["answer"] = answers[0]
        else:
            out["answer_a"], out["answer_b"] = answers
        if reference is not None:
            out["ref_answer_1"] = reference
        return out


def load_template(spec: str) -> JudgeTemplate:
    """A shipped template by name (``selm/judges/templates/NAME.json``), ``mt_bench:NAME`` from the MT-Bench judge
    prompts under ``$SELM_DATA_DIR``, or a path to a ``.json`` file with the same fields."""
    if spec.startswith("mt_bench:"):
        from selm.data import resolve

        path = resolve("mt_bench/judge_prompts.jsonl")
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["name"] == spec.split(":", 1)[1]:
                return _template(record, str(path))
        raise ValueError(f"no judge prompt named {spec.split(':', 1)[1]!r} in {path}")
    shipped = resources.files("selm.judges") / "templates" / f"{spec}.json"
    own = Path(spec) if not shipped.is_file() else None
    if own is not None and not own.is_file():
        names = sorted(p.name.removesuffix(".json") for p in (resources.files("selm.judges") / "templates").iterdir())
        raise ValueError(f"judge template {spec!r}: no such file, and shipped templates are {', '.join(names)}")
    return _template(json.loads((shipped if own is None else own).read_text()), spec)


def _template(record: dict, source: str) -> JudgeTemplate:
    fields = ("name", "type", "system_prompt", "prompt_template", "output_format")
    missing = [f for f in fields if f not in record]
    if missing:
        raise ValueError(f"judge template {source}: missing fields {missing}")
    if record["type"] not in ("single", "pairwise"):
        raise ValueError(f"judge template {source}: type must be 'single' or 'pairwise', not {record['type']!r}")
    return JudgeTemplate(**{f: record[f] for f in fields})


# ---------------------------------------------------------------- verdict parsing

_MARKER = re.compile(r"\[\[[^\[\]\n]{0,16}\]\]")
_RATING = re.compile(r"\[\[(\d+(?:\.\d+)?)\]\]")
_PAIR = re.compile(r"\[\[([ABC])\]\]")


def _strip_quoted(output: str, replies: Sequence[str]) -> str:
    """The judge's output less every line it quotes from a reply that carries a verdict marker."""
    for reply in replies:
        for line in reply.splitlines():
            line = line.strip()
            if line and _MARKER.search(line):
                output = output.replace(line, "")
    return output


def parse_verdict(output: str, output_format: str, replies: Sequence[str] = ()) -> str | float | None:
    """The verdict in a judge's output, or None when it is not unambiguous.

    - ``[[rating]]`` → a float in [1, 10]; ``[[A]]`` → "A", "B" or "C" (tie).
    - Exact choice ``x|y`` → "A" for x, "B" for y: the whole output, stripped, must be one of them.
    - Lines quoted from ``replies`` that carry a marker are removed first. The last remaining line must hold
      exactly one marker, the verdict; a marker on an earlier line is allowed only if a reply contains it (the judge
      discussing an injection), otherwise the judge gave two verdicts and none counts.
    """
    if "|" in output_format:
        options = output_format.split("|")
        text = output.strip()
        return "AB"[options.index(text)] if text in options and len(options) == 2 else None
    lines = [line for line in _strip_quoted(output, replies).splitlines() if line.strip()]
    if not lines:
        return None
    final = _MARKER.findall(lines[-1])
    earlier = [m for line in lines[:-1] for m in _MARKER.findall(line) if not any(m in r for r in replies)]
    if len(final) != 1 or earlier:
        return None
    if output_format == "[[rating]]":
        m = _RATING.fullmatch(final[0])
        return float(m.group(1)) if m and 1 <= float(m.group(1)) <= 10 else None
    m = _PAIR.fullmatch(final[0])
    return m.group(1) if m else None


# ---------------------------------------------------------------- transport


class JudgeUnavailable(RuntimeError):
    """The endpoint failed after the retry budget (or refused the request); judgments made so far are kept."""


class JudgeRefused(JudgeUnavailable, Permanent):
    """The endpoint refused the request (HTTP 400, 401, 404 ...) or the key is not set: asking again cannot help."""


@dataclass
class ChatReply:
    text: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class LLMEndpoint:
    """One OpenAI-compatible chat model: where it is, how to call it, what it costs (USD per million tokens)."""

    base_url: str
    model: str
    api_key_env: str | None = None
    max_tokens: int = 512
    temperature: float = 0.0
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 1.0
    price_in_per_mtok: float = 0.0
    price_out_per_mtok: float = 0.0

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise JudgeRefused(f"LLM judge: environment variable {self.api_key_env} (the API key) is not set")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def chat(self, system: str, user: str, session: requests.Session | None = None) -> ChatReply:
        """One chat completion, retried with backoff on transient failures."""
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        url = self.base_url.rstrip("/") + "/chat/completions"
        post = (session or requests).post
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                r = post(url, headers=self._headers(), json=body, timeout=self.timeout_s)
            except (requests.Timeout, requests.ConnectionError) as e:
                last = f"{type(e).__name__}: {e}"
            else:
                if r.status_code == 200:
                    try:
                        data = r.json()
                        usage = data.get("usage") or {}
                        return ChatReply(
                            data["choices"][0]["message"]["content"] or "",
                            int(usage.get("prompt_tokens", 0)),
                            int(usage.get("completion_tokens", 0)),
                        )
                    except (ValueError, KeyError, IndexError, TypeError):
                        last = f"HTTP 200 with a body that is not a chat completion: {r.text[:200]!r}"
                elif r.status_code == 429 or r.status_code >= 500:
                    last = f"HTTP {r.status_code}: {r.text[:200]}"
                    retry_after = _retry_after(r)
                else:  # 400, 401, 404 ...: retrying cannot help
                    raise JudgeRefused(
                        f"LLM judge {url} (model {self.model}) refused: HTTP {r.status_code}: {r.text[:300]}"
                    )
            if attempt < self.max_retries:
                backoff = self.backoff_s * 2**attempt * (1 + 0.25 * random.random())
                time.sleep(retry_after if retry_after is not None else backoff)
        raise JudgeUnavailable(
            f"LLM judge {url} (model {self.model}) failed {self.max_retries + 1} times; last error: {last}"
        )

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_in_per_mtok + completion_tokens * self.price_out_per_mtok) / 1e6


def _retry_after(r: requests.Response) -> float | None:
    try:
        return min(float(r.headers["Retry-After"]), 120.0)
    except (KeyError, ValueError):
        return None


# ---------------------------------------------------------------- the judge

_NOT_STARTED = object()  # what a job returns when it was skipped because another one had failed
T = TypeVar("T")


@dataclass
class Comparison:
    """A pairwise judgment of (a, b) judged in both orders; ``winner`` is "a", "b", "tie" or None (unparsed)."""

    winner: str | None
    verdicts: list  # parsed verdict of the (a, b) order and of the (b, a) order, each "A"/"B"/"C" or None
    outputs: list[str]  # the judge's raw outputs, same order
    disagreement: bool = False

    def points(self) -> float | None:
        """1 if a won, 0 if b won, ½ for a tie, None if neither order could be parsed."""
        return None if self.winner is None else {"a": 1.0, "b": 0.0, "tie": 0.5}[self.winner]


def combine_orders(first: str | None, second_swapped: str | None) -> tuple[str | None, bool]:
    """Winner from the verdict on (a, b) and the verdict on (b, a); the second is mapped back first."""
    back = {"A": "b", "B": "a", "C": "tie", None: None}[second_swapped]
    fwd = {"A": "a", "B": "b", "C": "tie", None: None}[first]
    if fwd is None or back is None:
        return fwd or back, False
    return (fwd, False) if fwd == back else ("tie", True)


class LLMJudge(Judge):
    """Single or pairwise grading with one template and one endpoint; counts usage and parse failures.

    As a ``Judge``: single templates rate each reply (objective ``llm_rating``), pairwise ones rank each prompt's
    replies round-robin (``llm_winrate``); the reference answer, if any, is ``prompt.meta[reference_key]``.
    """

    def __init__(
        self,
        endpoint: LLMEndpoint,
        template: JudgeTemplate,
        swap: bool = True,
        concurrency: int = 8,
        usage: JudgeUsage | None = None,
        reference_key: str = "",
    ):
        self.endpoint, self.template, self.swap, self.concurrency = endpoint, template, swap, concurrency
        self.reference_key = reference_key
        self.usage = usage if usage is not None else JudgeUsage()
        self._lock = threading.Lock()
        self._local = threading.local()
        # the cache key names what decides a verdict: model, prompt, temperature — not where it is served, not the key
        digest = hashlib.sha256((template.system_prompt + template.prompt_template).encode()).hexdigest()[:8]
        self.id = f"llm:{endpoint.model}|{template.name}|{digest}|T{endpoint.temperature}"
        self.weights = {RATING_OBJECTIVE if template.type == "single" else WINRATE_OBJECTIVE: 1.0}

    def judge(self, prompts, completions, cache=None, usage=None) -> list[dict[str, float]]:
        """Single ratings of each reply, or a round-robin pairwise ranking of each prompt's replies."""
        if usage is not None:
            self.usage = usage

        def reference(pid: str) -> str | None:
            return prompts[pid].meta.get(self.reference_key)

        if self.template.type == "single":
            return rate_replies(
                self, [(prompts[c.prompt_id].text, c.text, reference(c.prompt_id)) for c in completions], cache
            )
        members: dict[str, list[int]] = {}
        for i, c in enumerate(completions):
            members.setdefault(c.prompt_id, []).append(i)
        groups = [
            (prompts[pid].text, [completions[i].text for i in idx], reference(pid)) for pid, idx in members.items()
        ]
        scores: list = [None] * len(completions)
        for idx, ranked in zip(members.values(), rank_groups(self, groups, cache), strict=True):
            for i, s in zip(idx, ranked, strict=True):
                scores[i] = s
        return scores

    # one HTTP session (keep-alive) per worker thread
    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def grade(self, fields: dict[str, str], replies: Sequence[str]) -> tuple[Any, str]:
        """One judge call on a filled template: (parsed verdict or None, raw output). ``replies`` are the texts
        under judgment, whose quoted verdict markers the parser ignores."""
        reply = self.endpoint.chat(self.template.system_prompt, self.template.render(fields), self._session())
        verdict = parse_verdict(reply.text, self.template.output_format, replies)
        with self._lock:
            self.usage.calls += 1
            self.usage.prompt_tokens += reply.prompt_tokens
            self.usage.completion_tokens += reply.completion_tokens
            self.usage.cost_usd += self.endpoint.cost(reply.prompt_tokens, reply.completion_tokens)
            self.usage.parse_failures += verdict is None
        return verdict, reply.text

    def rate(self, question: str, answer: str, reference: str | None = None) -> dict[str, Any]:
        """Single grading: {"rating": 1–10 or None, "output": raw text}."""
        if self.template.type != "single":
            raise ValueError(f"template {self.template.name!r} is {self.template.type}: use compare(), not rate()")
        verdict, text = self.grade(self.template.fields(question, [answer], reference), [answer])
        return {"rating": verdict, "output": text}

    def compare(self, question: str, a: str, b: str, reference: str | None = None) -> Comparison:
        """Pairwise grading of (a, b), and of (b, a) as well when ``swap``."""
        if self.template.type != "pairwise":
            raise ValueError(f"template {self.template.name!r} is {self.template.type}: use rate(), not compare()")
        ab, ba = self.template.fields(question, [a, b], reference), self.template.fields(question, [b, a], reference)
        return self.compare_fields(ab, ba if self.swap else None, [a, b])

    def compare_fields(self, ab: dict[str, str], ba: dict[str, str] | None, replies: Sequence[str]) -> Comparison:
        """Pairwise grading from filled fields: ``ab`` shows a first, ``ba`` (if given) b first."""
        v1, o1 = self.grade(ab, replies)
        if ba is None:
            return Comparison({"A": "a", "B": "b", "C": "tie"}.get(v1), [v1], [o1])
        v2, o2 = self.grade(ba, replies)
        winner, disagreement = combine_orders(v1, v2)
        with self._lock:
            self.usage.swapped_comparisons += v1 is not None and v2 is not None  # disagreement needs both
            self.usage.swap_disagreements += disagreement
        return Comparison(winner, [v1, v2], [o1, o2], disagreement)

    def run(self, jobs: Sequence[Callable[[], T]], on_result: Callable[[int, T], None], desc: str) -> None:
        """Run ``jobs`` with at most ``concurrency`` in flight; ``on_result(i, result)`` is called in this thread
        as each finishes (so results are stored at once). On a failure the rest is cancelled, every finished result
        is still delivered, and ``JudgeUnavailable`` says how many of the jobs were done."""
        from selm.progress import progress

        bar = progress(total=len(jobs), desc=desc, unit="judgment")
        done_count, error = 0, None
        failed = threading.Event()

        def guarded(job: Callable[[], T]) -> T | object:
            """The job, unless one has failed already: a worker freed by a failure would otherwise start the next
            job (and its whole retry chain) before this thread gets to cancel the queue."""
            if failed.is_set():
                return _NOT_STARTED
            try:
                return job()
            except BaseException:
                failed.set()
                raise

        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        futures = {pool.submit(guarded, job): i for i, job in enumerate(jobs)}
        try:
            for f in as_completed(futures):
                if f.cancelled() or (f.exception() is None and f.result() is _NOT_STARTED):
                    continue
                if f.exception() is not None:
                    if error is None:  # stop paying for new calls; those already running finish and are kept
                        error = f.exception()
                        for other in futures:
                            other.cancel()
                    continue
                on_result(futures[f], f.result())  # type: ignore[arg-type]  # not _NOT_STARTED: skipped above
                done_count += 1
                bar.update(1)
        except BaseException:  # stopped from outside (the step's @timeout, Ctrl-C): no new call starts, and the step
            failed.set()  # ends now rather than when the calls in flight (maybe hung) return; their threads are left
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        bar.close()
        if isinstance(error, JudgeUnavailable):
            kept = f"{error} — {done_count} of {len(jobs)} judgments were made and kept"
            raise type(error)(kept) from error  # a refusal stays a refusal (permanent: not retried)
        if error is not None:
            raise error


# ---------------------------------------------------------------- scoring replies


def _unique(indices: list[T], key: Callable[[T], Any]) -> list[list[T]]:
    """``indices`` grouped by ``key``, in first-seen order: the same question and reply(ies) asked twice in one batch
    (two samples alike) is one call, its verdict given to both (the cache would only catch it in the next batch)."""
    groups: dict[Any, list[T]] = {}
    for i in indices:
        groups.setdefault(key(i), []).append(i)
    return list(groups.values())


def rate_replies(
    judge: LLMJudge, items: Sequence[tuple[str, str, str | None]], cache: JudgmentCache | None = None
) -> list[dict[str, float]]:
    """Single grading of (question, reply, reference) items → [{llm_rating: r}], NaN where the verdict failed to
    parse. Cached per (question, reply); new judgments are stored as soon as they arrive."""
    results: list = [cache.get(judge.id, q, [a]) if cache else None for q, a, _ in items]
    judge.usage.cache_hits += sum(r is not None for r in results)
    todo = _unique([i for i, r in enumerate(results) if r is None], lambda i: items[i])

    def store(k: int, result: dict[str, Any]) -> None:
        first, *same = todo[k]
        for i in (first, *same):
            results[i] = result
        if cache is not None and result["rating"] is not None:  # failures are re-asked next time
            cache.put(judge.id, items[first][0], [items[first][1]], result)

    jobs: list[Callable[[], dict[str, Any]]] = [functools.partial(judge.rate, *items[i[0]]) for i in todo]
    judge.run(jobs, store, desc=f"judge ({judge.template.name})")
    return [{RATING_OBJECTIVE: math.nan if r["rating"] is None else r["rating"]} for r in results]


def rank_groups(
    judge: LLMJudge, groups: Sequence[tuple[str, list[str], str | None]], cache: JudgmentCache | None = None
) -> list[list[dict[str, float]]]:
    """Round-robin pairwise ranking of each group's replies (PairRM-style), all comparisons sharing one
    concurrency-limited pool: each reply's score is its mean points over all its comparisons (win 1, tie ½, loss 0;
    identical replies tie without a call); NaN when none of its comparisons could be parsed."""
    pairs = [(g, i, j) for g, (_, replies, _) in enumerate(groups) for i, j in combinations(range(len(replies)), 2)]
    points: dict[tuple[int, int, int], float | None] = {}
    todo = []
    for g, i, j in pairs:
        q, replies, _ = groups[g]
        if replies[i] == replies[j]:  # identical replies tie: no call needed
            points[g, i, j] = 0.5
            continue
        hit = cache.get(judge.id, q, [replies[i], replies[j]]) if cache else None
        if hit is not None:
            points[g, i, j] = hit["points"]
            judge.usage.cache_hits += 1
        else:
            todo.append((g, i, j))

    def asked(t: tuple[int, int, int]) -> tuple:  # what the judge is asked: question, the two replies, reference
        q, replies, ref = groups[t[0]]
        return q, replies[t[1]], replies[t[2]], ref

    unique = _unique(todo, asked)

    def store(k: int, comparison: Comparison) -> None:
        for g, i, j in unique[k]:
            points[g, i, j] = comparison.points()
        g, i, j = unique[k][0]
        if cache is not None and comparison.winner is not None:
            q, replies, _ = groups[g]
            cache.put(judge.id, q, [replies[i], replies[j]], {"points": comparison.points(), **comparison.__dict__})

    def job(g: int, i: int, j: int) -> Comparison:
        q, replies, ref = groups[g]
        return judge.compare(q, replies[i], replies[j], ref)

    judge.run([functools.partial(job, *same[0]) for same in unique], store, desc=f"judge ({judge.template.name})")
    out = []
    for g, (_, replies, _) in enumerate(groups):
        won: list[list[float]] = [[] for _ in replies]
        for (gg, i, j), p in points.items():
            if gg == g and p is not None:
                won[i].append(p)
                won[j].append(1 - p)
        out.append([{WINRATE_OBJECTIVE: sum(w) / len(w) if w else math.nan} for w in won])
    return out
