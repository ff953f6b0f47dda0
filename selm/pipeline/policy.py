"""Where a round's policy comes from and goes to, and the sampler that draws from it."""

from __future__ import annotations

from collections.abc import Mapping
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


def resolved_precisions(recipe: Recipe) -> dict[str, str]:
    """What the recipe's precisions ("auto" or explicit) are on this machine, keyed like the recipe's own params
    with ``resolved.`` in front, and the hardware that decided (``selm.models.precision``). A step on another
    machine (``--with kubernetes``) decides again there, with the same function."""
    from selm.models.precision import compute_device, detect, resolve
    from selm.models.sampling import sampling_device

    wanted = {  # recipe key: (what it asks for, the device that computes it)
        "sampling.dtype": (recipe.sampling.dtype, sampling_device(recipe.sampling.backend)),
        "train.precision": (recipe.train.precision, compute_device()),  # accelerate trains on the GPU if there is one
        "eval.lm_eval.dtype": (recipe.eval.lm_eval.dtype, "cpu"),  # lm-eval runs the policy where load_policy puts it
    }
    out = {f"resolved.{key}": resolve(asked, device) for key, (asked, device) in wanted.items()}
    out["resolved.hardware"] = "; ".join(detect(d).describe() for d in sorted({d for _, d in wanted.values()}))
    return out


def precision_line(precisions: Mapping[str, str]) -> str:
    """``precision on <hardware>: sampling bfloat16, training float32, lm-eval bfloat16``."""
    p = precisions
    return (f"precision on {p['resolved.hardware']}: sampling {p['resolved.sampling.dtype']}, "
            f"training {p['resolved.train.precision']}, lm-eval {p['resolved.eval.lm_eval.dtype']}")  # fmt: skip
