import pytest

from selm.config import RecipeError, load_recipe


def test_default_recipe_is_three_rounds_of_selm_on_the_tiny_world():
    r = load_recipe()
    assert (r.experiment.rounds, r.train.loss, r.policy.init, r.world.name) == (3, "selm", "tiny", "tiny")


def test_shipped_dpo_recipe():
    r = load_recipe("tiny_dpo")
    assert r.train.loss == "dpo" and r.tracking.registered_model == "tiny-dpo-policy"


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text("[train]\nlr_rate = 0.1\n")
    with pytest.raises(RecipeError, match=r"train\.lr_rate: unknown key"):
        load_recipe(p)


def test_ill_typed_key_is_named(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('[sampling]\nn = "four"\n[train]\nloss = "ppo"\n')
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    assert "sampling.n" in str(e.value) and "train.loss" in str(e.value)


def test_unknown_section_is_named():
    with pytest.raises(RecipeError, match="trainer: unknown key"):
        load_recipe(None, ["trainer.loss=dpo"])


def test_overrides_are_typed():
    r = load_recipe(None, ["train.loss=dpo", "experiment.rounds=2", "train.learning_rate=[1e-3, 5e-4]"])
    assert r.train.loss == "dpo" and r.experiment.rounds == 2 and r.train.lr_for(2) == 5e-4


def test_per_round_learning_rates_must_match_rounds():
    with pytest.raises(RecipeError, match="learning_rate has 2 values but experiment.rounds is 3"):
        load_recipe(None, ["train.learning_rate=[1e-3, 5e-4]"])


def test_malformed_toml_names_the_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[train\n")
    with pytest.raises(RecipeError, match="bad.toml: not valid TOML"):
        load_recipe(p)


def test_unknown_recipe_name_lists_shipped_ones():
    with pytest.raises(RecipeError, match="tiny_selm"):
        load_recipe("nope")


def test_missing_file():
    with pytest.raises(RecipeError, match="not found"):
        load_recipe("missing.toml")


def test_flat_params_round_trip_through_json():
    from selm.config import recipe_from_json

    r = load_recipe(None, ["train.loss=dpo"])
    assert recipe_from_json(r.model_dump_json()) == r
    assert r.flat()["train.loss"] == "dpo" and "policy.tiny.sft_steps" in r.flat()


def test_acquisition_needs_a_budget_and_entropy_needs_temperature_one():
    with pytest.raises(RecipeError, match="select.label_budget is required"):
        load_recipe(None, ["select.acquisition=entropy"])
    with pytest.raises(RecipeError, match="sampling.temperature must be 1.0"):
        load_recipe(None, ["select.acquisition=hybrid", "select.label_budget=8", "sampling.temperature=0.7"])
    assert load_recipe(None, ["select.acquisition=certainty", "select.label_budget=8"]).select.label_budget == 8


def test_overriding_one_resource_keeps_the_steps_other_defaults():
    r = load_recipe(None, ["resources.train.gpu=2", "resources.train.memory=12345"]).resources
    assert r.train.model_dump() == {"gpu": 2, "cpu": 8, "memory": 12345, "timeout_minutes": 1440}
    assert r.judge.model_dump() == {"gpu": 0, "cpu": 4, "memory": 16000, "timeout_minutes": 720}
    import pickle

    recipe = load_recipe(None, ["resources.train.gpu=2"])
    assert pickle.loads(pickle.dumps(recipe)) == recipe  # Metaflow stores the recipe as a pickled artifact
    with pytest.raises(RecipeError, match="resources.train.gpus: unknown key"):
        load_recipe(None, ["resources.train.gpus=2"])


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.learning_rate=0", "train.learning_rate: Input should be greater than 0"),
        ("train.learning_rate=-1e-3", "train.learning_rate: Input should be greater than 0"),
        ("train.learning_rate=[1e-3, 0.0, 5e-4]", "train.learning_rate.1: Input should be greater than 0"),
        ("judge.weights.safety=-1", "judge.weights.safety: Input should be greater than or equal to 0"),
    ],
)
def test_learning_rates_must_be_positive_and_weights_not_negative(override, key):
    with pytest.raises(RecipeError) as e:
        load_recipe(None, [override])
    assert key in str(e.value)
    assert "list" not in str(e.value).split(key)[1].splitlines()[0]  # one error at the key, not one per union branch


@pytest.mark.parametrize(
    "spelling",
    [
        "[arc_challenge_local,truthfulqa_mc1_local]",
        "[arc_challenge_local, truthfulqa_mc1_local]",
        '["arc_challenge_local","truthfulqa_mc1_local"]',
        "['arc_challenge_local', truthfulqa_mc1_local,]",
    ],
)
def test_list_overrides_without_quotes_are_lists_of_names(spelling):
    r = load_recipe(None, [f"eval.lm_eval.tasks={spelling}"])
    assert r.eval.lm_eval.tasks == ["arc_challenge_local", "truthfulqa_mc1_local"]


def test_empty_list_override_and_numeric_lists_stay_typed():
    assert load_recipe(None, ["eval.lm_eval.tasks=[]"]).eval.lm_eval.tasks == []
    r = load_recipe(None, ["experiment.rounds=2", "train.learning_rate=[1e-3,5e-4]"])
    assert r.train.learning_rate == [1e-3, 5e-4] and isinstance(load_recipe().train.learning_rate, float)


def test_benchmarks_are_optional_unless_required():
    e = load_recipe(None, ["eval.mt_bench.required=true"]).eval
    assert e.mt_bench.required and not e.alpaca_eval.required and not e.lm_eval.required


def test_lm_eval_every_round_or_only_at_the_ends():
    from selm.pipeline.evaluate import lm_eval_due

    ends = load_recipe(None, ["experiment.rounds=3", "eval.lm_eval.every_round=false"])
    assert [lm_eval_due(ends, k) for k in range(4)] == [True, False, False, True]
    assert all(lm_eval_due(load_recipe(None, ["experiment.rounds=3"]), k) for k in range(4))


def test_retries_and_timeouts_become_the_flows_settings():
    """``[resources]`` → the flows' Config: each step's @timeout in whole seconds, the light steps', SELMFlow's round
    bounded by every step's limit on every attempt, and the @retry settings; out-of-range values name their key."""
    from selm.config import flow_resources

    overrides = ["resources.retries=1", "resources.judge.timeout_minutes=0.25", "resources.retry_wait_minutes=0"]
    r = load_recipe(None, overrides)
    settings = flow_resources(r.resources.model_dump_json())
    assert settings["judge"]["timeout_s"] == 15 and settings["train"]["timeout_s"] == 24 * 3600
    assert settings["light"]["timeout_s"] == settings["experiment_end"]["timeout_s"] == 3600
    assert settings["experiment_start"]["timeout_s"] == 3600 + 720 * 60  # the initial policy, then round 0 evaluated
    steps = 2 * 60 + 720 + 720 + 0.25 + 1440 + 720  # start and end, sample, select, judge, train, evaluate (minutes)
    assert settings["experiment_round"]["timeout_s"] == round((2 * steps + 60) * 60)
    # SELMFlow's run_round holds the round's policy on the host to register it: evaluate's memory, no GPU
    assert "gpu" not in settings["experiment_round"]
    assert (settings["experiment_round"]["cpu"], settings["experiment_round"]["memory"]) == (
        r.resources.evaluate.cpu, r.resources.evaluate.memory)  # fmt: skip
    assert (settings["retries"], settings["retry_wait_minutes"]) == (1, 0)
    assert flow_resources("{}")["retries"] == 2  # a round run alone, or SELMFlow launched without the command line
    with pytest.raises(RecipeError, match="resources.retries: Input should be less than or equal to 4"):
        load_recipe(None, ["resources.retries=5"])  # Metaflow's limit: first attempt + 4 retries + @catch
    with pytest.raises(RecipeError, match="resources.train.timeout_minutes: Input should be greater than 0"):
        load_recipe(None, ["resources.train.timeout_minutes=0"])


def test_each_dpo_recipe_is_its_selm_recipe_but_for_the_loss():
    """A method comparison holds everything but the loss fixed: each shipped *_dpo recipe resolves to its *_selm
    recipe except the experiment's name and the loss (and SELM's α, which DPO does not read). smol_dpo once kept
    IFEval at the first 300 prompts after smol_selm moved to all 541. (tiny_selm is the default run, with the
    benchmarks on; tiny_dpo is lighter by design.)"""
    for world in ("smol", "zephyr", "llama3"):
        selm, dpo = load_recipe(f"{world}_selm").flat(), load_recipe(f"{world}_dpo").flat()
        differ = {k for k in selm.keys() | dpo.keys() if selm.get(k) != dpo.get(k)}
        assert differ <= {"experiment.name", "train.loss", "train.alpha", "tracking.registered_model"}, (world, differ)
