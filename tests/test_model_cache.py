"""Each step loads every model it needs once, through its ``ModelCache``, on the device the step asked for.

A real round 2 of the tiny world, step by step as RoundFlow runs it (one cache per step): sampling in bf16 (so a
step needs one model in two precisions), APL certainty scores (policy and reference), training, held-out evaluation
and the exploration diagnostics. ``selm.models.loading.LOADS`` counts every read from disk, whoever asks: a stage
that loaded a model around the cache, or twice, would show here."""

from collections import Counter
from pathlib import Path

import pytest
import torch

from selm.config import load_recipe
from selm.models import loading
from selm.models.cache import ModelCache
from selm.pipeline.components import Components

OVERRIDES = ["world.train_prompts_per_round=48", "world.heldout_prompts=24", "judge.cache=off", "train.epochs=1",
             "sampling.dtype=bfloat16", "select.acquisition=certainty", "select.label_budget=16",
             "eval.lm_eval.tasks=[]", "eval.mt_bench.enabled=false", "eval.alpaca_eval.enabled=false"]  # fmt: skip


@pytest.fixture(scope="module")
def round1_policy(tiny_policy_dir, round_pairs, tmp_path_factory):
    from selm.pipeline.train import train

    out = tmp_path_factory.mktemp("round1") / "policy"
    recipe = load_recipe(None, ["train.epochs=1"])
    train(Components(recipe), str(tiny_policy_dir), round_pairs[:32], 1, out)
    return str(out)


def reads(stage, state, recipe):
    """The models ``stage`` read from disk running on ``state`` with a step's own components, {(folder, dtype):
    times}, and that step's model cache."""
    before, models = Counter(loading.LOADS), ModelCache("cpu")
    stage(state, Components(recipe, models))
    read = {(str(Path(p).resolve()), d): n for (p, d), n in (loading.LOADS - before).items()}
    for model, _ in (models.get(*key) for key in models.loaded()):  # every model the step used is on its device
        assert {p.device.type for p in model.parameters()} == {models.device}
    return read, models


def test_every_step_of_a_round_loads_each_model_once_on_its_device(tiny_policy_dir, round1_policy, tmp_path):
    from selm.pipeline import runtime

    recipe = load_recipe(None, OVERRIDES)
    policy, reference = round1_policy, str(Path(tiny_policy_dir).resolve())
    state = runtime.begin(Components(recipe), 2, "cache", policy, reference, tmp_path / "round-2")
    new = str((tmp_path / "round-2" / "policy").resolve())  # where train saves it (its policy_out on one disk)

    read, models = reads(runtime.run_sample, state, recipe)
    assert read == {(policy, "bfloat16"): 1}
    assert models.get(policy, "bfloat16")[0].dtype == torch.bfloat16

    read, _ = reads(runtime.run_select, state, recipe)
    assert read == {(policy, "float32"): 1, (reference, "float32"): 1}  # certainty: r̂ under each, fp32
    assert state.selection is not None and any(c > 0 for c in state.selection.certainty)
    assert reads(runtime.run_judge, state, recipe)[0] == {}  # the rule judges need no model

    read, _ = reads(runtime.run_train, state, recipe)
    assert read == {(policy, "float32"): 1}

    read, models = reads(runtime.run_evaluate, state, recipe)
    # held-out replies and y0 come from the bf16 samplers; y0 and the replies are re-scored in fp32 under both
    assert read == {(new, "bfloat16"): 1, (new, "float32"): 1, (policy, "bfloat16"): 1, (policy, "float32"): 1}
    wanted = {"explore/kl", "explore/y0_log_ratio", "heldout/reward", "train/final_loss", "select/labels"}
    assert wanted <= set(state.metrics)


def test_a_cache_hands_out_one_model_per_path_and_precision(tiny_policy_dir):
    models = ModelCache("cpu")
    recipe = load_recipe(None, ["sampling.dtype=float32"])
    draw = Components(recipe, models).sampler(str(tiny_policy_dir), 8, "sft")
    # another spelling of the same folder, through another stage: the same object, not a second load
    assert models.get(Path(tiny_policy_dir) / ".")[0] is draw.model
    assert models.get(tiny_policy_dir, "bf16")[0] is not draw.model and len(models.loaded()) == 2
    assert models.device == "cpu" and draw.model.device.type == "cpu"
    assert ModelCache().device == ("cuda" if torch.cuda.is_available() else "cpu")  # the step's device by default
