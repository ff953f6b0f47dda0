"""Each step loads every model it needs once, through its ``ModelCache``, on the device the step asked for.

A real round 2 of the tiny world, step by step as RoundFlow runs it (one cache per step): sampling in bf16 (so a
step needs one model in two precisions), APL certainty scores (policy and reference), training, held-out evaluation
and the exploration diagnostics. ``selm.models.loading.LOADS`` counts every read from disk, whoever asks: a stage
that loaded a model around the cache, or twice, would show here."""

from collections import Counter
from pathlib import Path

import pytest
import torch

from selm import worlds
from selm.config import load_recipe
from selm.models import loading
from selm.models.cache import ModelCache

OVERRIDES = ["world.train_prompts_per_round=48", "world.heldout_prompts=24", "judge.cache=off", "train.epochs=1",
             "sampling.dtype=bfloat16", "select.acquisition=certainty", "select.label_budget=16",
             "eval.lm_eval.tasks=[]", "eval.mt_bench.enabled=false", "eval.alpaca_eval.enabled=false"]  # fmt: skip


@pytest.fixture(scope="module")
def round1_policy(tiny_policy_dir, round_pairs, tmp_path_factory):
    from selm.pipeline.train import train

    out = tmp_path_factory.mktemp("round1") / "policy"
    train(str(tiny_policy_dir), round_pairs[:32], load_recipe(None, ["train.epochs=1"]), 1, out)
    return str(out)


def reads(step):
    """The models ``step(cache)`` read from disk, {(folder, dtype): times}, and the cache it used."""
    before, models = Counter(loading.LOADS), ModelCache("cpu")
    step(models)
    read = {(str(Path(p).resolve()), d): n for (p, d), n in (loading.LOADS - before).items()}
    for model, _ in (models.get(*key) for key in models.loaded()):  # every model the step used is on its device
        assert {p.device.type for p in model.parameters()} == {models.device}
    return read, models


def test_every_step_of_a_round_loads_each_model_once_on_its_device(tiny_policy_dir, round1_policy, tmp_path):
    from selm.pipeline.evaluate import evaluate_all
    from selm.pipeline.explore import diagnostics
    from selm.pipeline.judge import judge_and_pair
    from selm.pipeline.sample import sample
    from selm.pipeline.select import select_comparisons
    from selm.pipeline.train import train

    recipe = load_recipe(None, OVERRIDES)
    policy, reference = round1_policy, str(Path(tiny_policy_dir).resolve())
    new = str(tmp_path / "round-2")
    prompts = worlds.of(recipe).train_prompts(recipe, 2)
    state = {}

    read, models = reads(lambda m: state.update(samples=sample(policy, prompts, recipe, 2, "round-1", m)))
    assert read == {(policy, "bfloat16"): 1}
    assert models.get(policy, "bfloat16")[0].dtype == torch.bfloat16

    read, _ = reads(lambda m: state.update(selection=select_comparisons(state["samples"], recipe, policy, reference,
                                                                        2, m)))  # fmt: skip
    assert read == {(policy, "float32"): 1, (reference, "float32"): 1}  # certainty: r̂ under each, fp32
    assert any(c > 0 for c in state["selection"].certainty)
    judged = judge_and_pair(prompts, state["samples"], state["selection"], recipe, 2)

    read, _ = reads(lambda m: train(policy, judged.pairs, recipe, 2, Path(new), m))
    assert read == {(policy, "float32"): 1}

    def evaluate_step(m):
        ev = evaluate_all(new, recipe, 2, "round-2", m)
        heldout = (ev.completions, ev.judgments)
        state["explore"] = diagnostics(new, policy, state["samples"], state["selection"], judged.judgments, heldout,
                                       recipe, 2, m)  # fmt: skip

    read, models = reads(evaluate_step)
    # held-out replies and y0 come from the bf16 samplers; y0 and the replies are re-scored in fp32 under both
    assert read == {(new, "bfloat16"): 1, (new, "float32"): 1, (policy, "bfloat16"): 1, (policy, "float32"): 1}
    assert {"explore_kl", "explore_y0_log_ratio"} <= set(state["explore"])


def test_a_cache_hands_out_one_model_per_path_and_precision(tiny_policy_dir):
    from selm.pipeline.policy import sampler

    models = ModelCache("cpu")
    recipe = load_recipe(None, ["sampling.dtype=float32"])
    draw = sampler(recipe, str(tiny_policy_dir), 8, "sft", models)
    # another spelling of the same folder, through another stage: the same object, not a second load
    assert models.get(Path(tiny_policy_dir) / ".")[0] is draw.model
    assert models.get(tiny_policy_dir, "bf16")[0] is not draw.model and len(models.loaded()) == 2
    assert models.device == "cpu" and draw.model.device.type == "cpu"
    assert ModelCache().device == ("cuda" if torch.cuda.is_available() else "cpu")  # the step's device by default
