"""Where a round's policy comes from and goes to, and the precisions it computes in on this machine."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from selm import worlds
from selm.config import Recipe
from selm.storage import publish


def initial_policy_path(recipe: Recipe) -> str:
    """Where round 1 starts: a model a world builds itself (``policy.init = "tiny"``), or a folder / hub id."""
    return worlds.model_path("policy", recipe.policy.init, recipe)


def handed_on(policy: str, store: str) -> str:
    """The initial policy as every task of the experiment reaches it: a folder (built by a world, or the user's)
    published to the experiment's ``store`` when its tasks share no disk (``selm.storage``); a hub id as it is."""
    return publish(policy, store, "initial-policy") if Path(policy).is_dir() else policy


def round_dir(recipe: Recipe, experiment_id: str, round: int) -> Path:
    return Path(recipe.experiment.output_dir) / experiment_id / f"round-{round}"


def resolved_precisions(recipe: Recipe) -> dict[str, str]:
    """What the recipe's "auto" settings (its precisions, training's gradient checkpointing and chunked LM head) are
    on this machine, keyed like the recipe's own params with ``resolved.`` in front, and the hardware that decided
    (``selm.models.precision``). Every stage computes on the step's device (``selm.models.cache``); a step on another
    machine (``--with kubernetes``) decides again there, with the same functions."""
    from selm.models.precision import compute_device, detect, resolve

    device = compute_device()
    asked = {"sampling.dtype": recipe.sampling.dtype, "train.precision": recipe.train.precision,
             "eval.lm_eval.dtype": recipe.eval.lm_eval.dtype}  # fmt: skip
    return {
        **{f"resolved.{k}": resolve(v, device) for k, v in asked.items()},
        "resolved.train.gradient_checkpointing": str(recipe.train.checkpointing(device)).lower(),
        "resolved.train.chunked_head": str(recipe.train.head_in_chunks(device)).lower(),
        "resolved.hardware": detect(device).describe(),
    }


def precision_line(precisions: Mapping[str, str]) -> str:
    """``precision on <hardware>: sampling bfloat16, training float32 (gradient checkpointing off, chunked LM head
    off), lm-eval bfloat16``."""
    p, on_off = precisions, {"true": "on", "false": "off"}
    return (f"precision on {p['resolved.hardware']}: sampling {p['resolved.sampling.dtype']}, "
            f"training {p['resolved.train.precision']} (gradient checkpointing "
            f"{on_off[p['resolved.train.gradient_checkpointing']]}, chunked LM head "
            f"{on_off[p['resolved.train.chunked_head']]}), "
            f"lm-eval {p['resolved.eval.lm_eval.dtype']}")  # fmt: skip
