"""The train stage: DPO / SELM on the round's pairs, the policy at the start of the round as the reference."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from selm.pipeline.components import Components
from selm.records import PreferencePair

if TYPE_CHECKING:  # torch loads with selm.models: only the step that trains pays for it
    from selm.models.training import TrainHistory


def train(parts: Components, policy_path: str, pairs: list[PreferencePair], round: int, save_to: Path) -> TrainHistory:
    """Train the round's policy from ``policy_path`` (which is also the reference) and save it to ``save_to``, in this
    process or, with ``train.processes`` > 1, in that many under ``torchrun``."""
    recipe = parts.recipe
    if recipe.train.processes > 1:
        from selm.models.launch import train_distributed

        return train_distributed(policy_path, pairs, recipe, round, save_to)
    from selm.models.training import train_preferences

    model, tokenizer = parts.models.get(policy_path)  # fp32 weights; train.precision is the autocast
    return train_preferences(model, tokenizer, pairs, recipe.train, round, recipe.experiment.seed, save_to=save_to)
