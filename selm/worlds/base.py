"""What a world is: where a round's prompts come from and, when the world can check replies itself, how they score.

A new world is one module that subclasses ``World`` plus one ``selm.worlds.register`` call. Everything else —
stages, flows, plots, comparisons, sweeps — asks the world for its prompts, objectives and weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from selm.records import Prompt

if TYPE_CHECKING:
    from selm.config import Recipe

#: the models a world may build for itself (recipe value = the world's name, e.g. ``policy.init = "tiny"``)
ModelKind = Literal["policy", "reward_model", "judge_lm"]


class World(ABC):
    #: the recipe's ``world.name``
    name: str
    #: objectives of the world's rule judges, in display order; () when the world cannot check replies itself
    objectives: tuple[str, ...] = ()
    #: weight of each objective in the combined reward when the recipe sets no ``judge.weights``
    default_weights: Mapping[str, float] = {}
    #: identifies the rule judges in the judgment cache (change it when the rules change)
    judge_id: str = ""

    @abstractmethod
    def train_prompts(self, recipe: Recipe, round: int) -> list[Prompt]:
        """The prompts of round ``round`` (1-based), the same for the same recipe and round."""

    def heldout_prompts(self, recipe: Recipe) -> list[Prompt]:
        """The held-out reward's prompts (the same for every round and experiment); [] when the world has none and
        only the benchmarks evaluate."""
        return []

    def score(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[dict[str, float]]:
        """The rule judges: {objective: score in [0, 1]} per (prompt, reply)."""
        raise NotImplementedError(f"world {self.name!r} has no rule judges")

    def good_on_all(self, scores: Mapping[str, float]) -> bool:
        """Whether a reply is good on every objective at once (by default: the full score on each)."""
        return all(scores[k] >= 1.0 for k in self.objectives)

    def model(self, kind: ModelKind, recipe: Recipe) -> str | None:
        """The folder of a model the world builds for itself (cached), or None when it has none of that kind."""
        return None

    def check(self, recipe: Recipe) -> list[str]:
        """Problems of the recipe's ``world`` section and of the world's data, one line each, key first."""
        return []
