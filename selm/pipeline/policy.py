"""Where a round's policy comes from and goes to, and the sampler that draws from it."""

from __future__ import annotations

from pathlib import Path

from selm import worlds
from selm.config import Recipe


def initial_policy_path(recipe: Recipe) -> str:
    """Where round 1 starts: a model a world builds itself (``policy.init = "tiny"``), or a folder / hub id."""
    return worlds.model_path("policy", recipe.policy.init, recipe)


def round_dir(recipe: Recipe, experiment_id: str, round: int) -> Path:
    return Path(recipe.experiment.output_dir) / experiment_id / f"round-{round}"


def sampler(recipe: Recipe, policy_path: str, batch_size: int, policy_name: str):
    """The recipe's sampling backend on the policy at ``policy_path`` (``policy_name`` labels its replies)."""
    from selm.models.sampling import make_sampler

    return make_sampler(recipe.sampling.backend, policy_path, batch_size, policy_name, recipe.sampling.dtype)
