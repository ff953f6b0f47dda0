"""What a person reads in MLflow beside the numbers: the experiment run's description, each round run's, each
registered version's, and the model card (``README.md``) and licence logged with every policy.

Pure text from the recipe and the round's numbers; ``selm.tracking`` stores it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selm.config import Recipe

METHODS = {
    "selm": "SELM (iterative DPO with an optimism term)",
    "dpo": "iterative DPO",
    "ipo": "iterative IPO",
}


def method(recipe: Recipe) -> str:
    return METHODS.get(recipe.train.loss, recipe.train.loss)


def base_model(recipe: Recipe) -> str:
    """The model the experiment started from, as a person would name it."""
    from selm import worlds
    from selm.models.loading import PACKAGED_GGUF

    init = recipe.policy.init
    if init in worlds.REGISTRY:
        return f"the `{init}` world's SFT policy, built from scratch by selm"
    return PACKAGED_GGUF[init][2] if init in PACKAGED_GGUF else init


def experiment(recipe: Recipe, recipe_name: str, experiment_id: str) -> str:
    """The experiment run's description (Markdown): what ran and where to look."""
    e, w = recipe.experiment, recipe.world
    from selm import worlds

    has_heldout = bool(worlds.get(w.name).objectives)
    heldout = "`heldout/reward` (the held-out reward by round) and its objectives" if has_heldout else "the benchmarks"
    return (
        f"**{e.name}** — {e.rounds} rounds of {method(recipe)} on the `{w.name}` world, recipe `{recipe_name}`, "
        f"seed {e.seed}; experiment `{experiment_id}`.\n\n"
        f"Starts from {base_model(recipe)}; each round samples {recipe.sampling.n} replies per prompt, "
        f"judges them with the `{recipe.judge.backend}` judge (`{recipe.judge.combine}` of the objectives), trains on "
        f"best-vs-worst pairs (β = {recipe.train.beta}"
        + (f", α = {recipe.train.alpha}" if "alpha" in recipe.train.loss_spec.hyperparameters else "")
        + ") and evaluates.\n\n"
        f"**Look at:** {heldout} in the charts (step = round; `_se` is the standard error beside each metric); "
        "`explore/` for how far each round moved from its reference; the nested `round-k` runs for each round's "
        "records (`records/pairs_text.json`: the pairs trained on, as text) and training curves (`train/`); "
        "`summary.json` for the last round against the initial policy, paired over the same prompts."
    )


def round_run(recipe: Recipe, round: int, experiment_id: str, metrics: Mapping[str, float]) -> str:
    """A round run's description: what the round did, in numbers."""
    parts = [f"Round {round} of `{experiment_id}` ({method(recipe)}, learning rate {recipe.train.lr_for(round)})."]
    if "train/pairs" in metrics:
        parts.append(f"Trained on {metrics['train/pairs']:.0f} preference pairs.")
    if "heldout/reward" in metrics:
        parts.append(f"Held-out reward {metrics['heldout/reward']:.4f} ± {metrics.get('heldout/reward_se', 0):.4f}.")
    parts.append("Records: `records/` (samples, judgments, pairs; `pairs_text.json` as text); curves: `train/`.")
    return " ".join(parts)


def version(recipe: Recipe, round: int, experiment_id: str, metrics: Mapping[str, float]) -> str:
    """A registered version's description."""
    metric = recipe.tracking.champion_metric
    score = f"; {metric} = {metrics[metric]:.4f}" if metric in metrics else ""
    return f"The policy after round {round} of `{experiment_id}` ({method(recipe)}){score}. README.md is its card."


def model_card(recipe: Recipe, round: int, experiment_id: str, metrics: Mapping[str, float], name: str) -> str:
    """The logged model's ``README.md``: base model, data, method, hyperparameters, this round's metrics."""
    from selm.tracking import experiment_alias

    t, s = recipe.train, recipe.sampling
    hyper = {
        "loss": t.loss, **t.loss_hyperparameters(), "learning rate": t.lr_for(round), "epochs": t.epochs,
        "batch size (pairs)": t.batch_size, "gradient accumulation": t.grad_accum, "warm-up ratio": t.warmup_ratio,
        "max length": t.max_length, "samples per prompt": s.n, "sampling temperature": s.temperature,
        "max new tokens": s.max_new_tokens, "judge": recipe.judge.backend,
        "objectives combined by": recipe.judge.combine,
        "acquisition": recipe.select.acquisition, "seed": recipe.experiment.seed,
    }  # fmt: skip
    shown = {k: v for k, v in sorted(metrics.items()) if not k.endswith("_se") and not k.startswith("time/")}
    rows = "\n".join(
        f"| `{k}` | {v:.6g}" + (f" ± {metrics[k + '_se']:.4f}" if k + "_se" in metrics else "") + " |"
        for k, v in shown.items()
        if k != "round"
    )
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags: [selm, preference-alignment, {"online-dpo" if t.loss == "selm" else t.loss}]
---
# {name} — round {round} of `{experiment_id}`

A policy trained by selm with {method(recipe)}: round {round} of {recipe.experiment.rounds} of the
experiment `{recipe.experiment.name}` (`{experiment_id}`). Each round's reference is the previous round's policy.

- **Base model:** {base_model(recipe)}
- **Data:** the `{recipe.world.name}` world's training prompts for round {round}; replies sampled from the round's
  policy, judged, and paired best against worst per prompt.
- **Licence:** see `LICENSE.txt`.

## Hyperparameters

| setting | value |
|---|---|
""" + "\n".join(f"| {k} | {v} |" for k, v in hyper.items()) + f"""

## Metrics of this round

| metric | value |
|---|---|
{rows}

`heldout/` is measured on the world's held-out prompts by its rule judges; `_proxy` benchmark numbers come from an
offline proxy grader, not the benchmark's official judge.

## Use

```python
import mlflow

pipe = mlflow.transformers.load_model("models:/{name}@{experiment_alias(experiment_id, f"round-{round}")}")
```
"""


def licence(recipe: Recipe) -> str:
    """``LICENSE.txt``: the policy is a fine-tune of its base model and carries that model's licence."""
    from selm import worlds
    from selm.models.loading import PACKAGED_GGUF

    init = recipe.policy.init
    if init in worlds.REGISTRY:
        return (f"This policy descends from the `{init}` world's SFT policy, which selm builds from scratch from "
                "generated data. It is distributed under selm's licence, Apache-2.0.\n")  # fmt: skip
    if init in PACKAGED_GGUF:
        return (f"This policy is a fine-tune of {PACKAGED_GGUF[init][2]}, released under Apache-2.0 by its authors; "
                "the fine-tune carries the same licence.\n")  # fmt: skip
    return (f"This policy is a fine-tune of `{init}` and carries that model's licence; read it where `{init}` comes "
            "from (its hub repository or its folder).\n")  # fmt: skip
