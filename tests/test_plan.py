"""Dry runs of real-scale recipes (nothing loaded or downloaded) and the prompts-file world."""

import json

import pytest

from conftest import QUICK_BUILD
from selm import worlds
from selm.config import RecipeError, load_recipe
from selm.data import data_dir, load_prompt_file
from selm.pipeline.plan import architecture, main, n_params, plan
from selm.pipeline.preflight import check

PAPER = ["zephyr_selm", "zephyr_dpo", "llama3_selm", "llama3_dpo"]


@pytest.mark.parametrize("name", PAPER)
def test_paper_recipes_validate_and_dry_run(name, capsys):
    recipe = load_recipe(name)
    assert recipe.train.beta == 0.01 and recipe.train.epochs == 1 and recipe.experiment.rounds == 3
    assert recipe.train.alpha == {"zephyr_selm": 1e-3, "llama3_selm": 1e-4}.get(name, 0.0)
    assert recipe.train.learning_rate[0] == 5e-7 and recipe.train.learning_rate[2] == 1e-7
    assert recipe.pairs.dataset_candidates and recipe.sampling.n == 1  # {policy, chosen, rejected}
    assert (recipe.train.max_length, recipe.train.max_prompt_length) == (1024, 512)
    p = plan(recipe)
    expected_b = 7.24 if "zephyr" in name else 8.03  # Mistral-7B and Llama-3-8B
    assert p["memory"]["params_b"] == pytest.approx(expected_b, abs=0.01)
    m = p["memory"]
    assert m["train_zero3_gb"] < m["train_zero2_gb"] < m["train_ddp_gb"] and p["fits"] == ["zero2", "zero3"]
    assert [r["judge_calls"] for r in p["rounds"]] == [60000] * 3  # 3 replies scored per prompt
    assert [r["learning_rate"] for r in p["rounds"]] == recipe.train.learning_rate
    assert main([name]) == 0 and "fits: zero2, zero3" in capsys.readouterr().out


def test_activation_memory_counts_the_sequences_each_loss_reads():
    """Chosen and rejected for DPO and IPO; SELM adds its y0 (``selm.config.LOSS_SPECS``: what each loss reads)."""
    acts = {loss: plan(load_recipe("zephyr_selm", [f"train.loss={loss}"]))["memory"]["activations_gb"]
            for loss in ("dpo", "ipo", "selm")}  # fmt: skip
    assert acts["ipo"] == acts["dpo"] and acts["selm"] == pytest.approx(1.5 * acts["dpo"])


def test_parameter_count_matches_a_real_model(tiny_policy_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_policy_dir)
    config = json.loads((tiny_policy_dir / "config.json").read_text())
    recipe = load_recipe(None, [f"policy.tiny.{k}={v}" for k, v in QUICK_BUILD.items()])
    assert n_params(architecture(str(tiny_policy_dir), recipe)) == sum(p.numel() for p in model.parameters())
    assert architecture(str(tiny_policy_dir), recipe)["hidden_size"] == config["hidden_size"]
    assert architecture("tiny", recipe) == config  # the world's own model (this one: built by the fixture)


def test_llm_pairwise_judge_calls_and_a_plan_that_does_not_fit(capsys):
    recipe = load_recipe(None, ["judge.backend=llm", "judge.llm.template=pairwise", "sampling.n=4"])
    assert plan(recipe)["rounds"][0]["judge_calls"] == 512 * 6 * 2  # C(4,2) pairs in both orders
    big = ["policy.init=meta-llama/Meta-Llama-3-8B-Instruct", "hardware.gpus=1", "hardware.gpu_memory_gb=24"]
    assert main(["llama3_selm", *big]) == 1 and "fits: NOTHING" in capsys.readouterr().out
    with pytest.raises(ValueError, match="KNOWN_ARCHITECTURES"):
        architecture("someone/unknown-model", recipe)


needs_prompts = pytest.mark.skipif(
    not (data_dir() / "prompt_pool" / "ultrafeedback_sample_train_1000.jsonl").exists(),
    reason=f"no UltraFeedback sample under {data_dir()}",
)


@needs_prompts
def test_prompts_world_gives_disjoint_slices_with_the_dataset_pair():
    overrides = [
        "world.name=prompts",
        "world.prompts_file=prompt_pool/ultrafeedback_sample_train_1000.jsonl",
        "world.train_prompts_per_round=300",
        "judge.backend=embedding",
        "judge.reference_key=chosen",
    ]
    recipe = load_recipe(None, overrides)
    slices = [worlds.of(recipe).train_prompts(recipe, k) for k in (1, 2, 3)]
    ids = [{p.id for p in s} for s in slices]
    assert all(len(s) == 300 for s in ids) and not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2])
    assert all(p.meta["chosen"] and p.meta["rejected"] for p in slices[0])
    assert worlds.of(recipe).train_prompts(recipe, 2) == slices[1]  # the same on every call (resume, other steps)
    too_many = load_recipe(None, [*overrides, "world.train_prompts_per_round=400"])
    with pytest.raises(ValueError, match="need 1200 disjoint ones"):
        worlds.of(too_many).train_prompts(too_many, 1)
    with pytest.raises(RecipeError, match="judge.backend = 'rules': world 'prompts' has no rule judges"):
        check(load_recipe(None, overrides[:3]))
    assert plan(recipe)["prompts_available"] == 1000


def test_malformed_prompts_file_names_file_and_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "hi", "chosen": "a", "rejected": "b"}\n{"chosen": "a"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2: not a"):
        load_prompt_file(str(f))
    f.write_text(
        '{"prompt": "hi", "chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "A"}]}\n'
    )
    assert load_prompt_file(str(f))[0].meta == {"chosen": "A"}


def test_long_prompts_are_left_out_when_asked(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps({"prompt": " ".join(["w"] * n), "chosen": "a"}) + "\n" for n in (3, 5, 8)))
    assert [len(p.text.split()) for p in load_prompt_file(str(f))] == [3, 5, 8]
    assert [len(p.text.split()) for p in load_prompt_file(str(f), max_words=5)] == [3, 5]
