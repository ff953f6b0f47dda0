"""The prompts world: prompts, each with a dataset preference pair, from a JSONL file (``prompt``, ``chosen``,
``rejected``: UltraFeedback-binarized style). It has no rule judges: a reward model, embedding or LLM judge ranks
the replies, and the benchmarks evaluate."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from selm.data import load_prompt_file
from selm.records import Prompt
from selm.worlds.base import World

if TYPE_CHECKING:
    from selm.config import Recipe


class PromptsWorld(World):
    name = "prompts"

    def train_prompts(self, recipe: Recipe, round: int) -> list[Prompt]:
        """Slice k of the file after one seeded shuffle, so rounds see disjoint prompts (the SELM paper's three
        disjoint UltraFeedback slices)."""
        n, w = recipe.world.train_prompts_per_round, recipe.world
        pool = load_prompt_file(w.prompts_file, w.max_prompt_words)
        needed = n * recipe.experiment.rounds
        if len(pool) < needed:
            raise ValueError(
                f"{w.prompts_file}: {len(pool)} prompts, but {recipe.experiment.rounds} rounds × "
                f"world.train_prompts_per_round = {n} need {needed} disjoint ones"
            )
        random.Random(recipe.experiment.seed).shuffle(pool)
        return pool[(round - 1) * n : round * n]

    def check(self, recipe: Recipe) -> list[str]:
        """The file is named and parses (``file:line`` of a bad record), has enough prompts for disjoint per-round
        slices and, when dataset replies are ranked, a chosen and rejected for each."""
        w, rounds = recipe.world, recipe.experiment.rounds
        if not w.prompts_file:
            return ["world.prompts_file: required with world.name = 'prompts'"]
        try:
            prompts = load_prompt_file(w.prompts_file, w.max_prompt_words)
        except (OSError, ValueError) as e:
            return [f"world.prompts_file = {w.prompts_file!r}: {e}"]
        out, needed = [], rounds * w.train_prompts_per_round
        if len(prompts) < needed:
            out.append(
                f"world.prompts_file = {w.prompts_file!r}: {len(prompts)} prompts, but experiment.rounds = {rounds} "
                f"× world.train_prompts_per_round = {w.train_prompts_per_round} need {needed} (disjoint slices per "
                "round)"
            )
        if recipe.pairs.dataset_candidates:
            bare = [i for i, p in enumerate(prompts, 1) if not {"chosen", "rejected"} <= set(p.meta)]
            if bare:
                out.append(
                    f"pairs.dataset_candidates = true: {len(bare)} of {len(prompts)} prompts in {w.prompts_file!r} "
                    f"lack a chosen or rejected reply (first: record {bare[0]})"
                )
        return out
