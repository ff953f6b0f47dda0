"""The package's shape: the layering contract holds (and would catch a bad import), worlds own their objectives,
and a new world is one class plus a registry entry."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from selm import worlds

LINT = str(Path(sys.executable).parent / "lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the copy under test, not the installed package
    return subprocess.run([LINT, "--no-cache", "--no-logo"], cwd=root, env=env, capture_output=True, text=True)


def test_the_layering_contract_holds():
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 kept, 0 broken" in r.stdout


def test_the_contract_catches_a_lower_layer_importing_a_higher_one(tmp_path):
    for name in ("selm", "evals"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    losses = tmp_path / "selm" / "algorithms" / "losses.py"
    losses.write_text(losses.read_text() + "\nfrom selm.pipeline.judge import judge_and_pair  # noqa: E402, F401\n")
    r = lint(tmp_path)
    assert r.returncode != 0
    assert "selm.algorithms is not allowed to import selm.pipeline" in r.stdout
    assert "selm.algorithms.losses -> selm.pipeline.judge" in r.stdout


def source_files():
    """Every Python file outside selm/worlds (where the worlds live), with its text."""
    for folder in ("selm", "flows", "evals", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "worlds" not in path.relative_to(ROOT).parts:
                yield path.relative_to(ROOT), path.read_text()


def test_no_objective_name_or_world_branch_outside_the_worlds():
    objectives = {o for w in worlds.REGISTRY.values() for o in w.objectives}
    quoted = re.compile(r"""["'](""" + "|".join(objectives) + """)["']""")
    branch = re.compile(r"""world\.name\s*[!=]=|[!=]=\s*["'](""" + "|".join(worlds.REGISTRY) + """)["']""")
    found = [
        f"{path}:{n}: {line.strip()}"
        for path, text in source_files()
        for n, line in enumerate(text.splitlines(), 1)
        if quoted.search(line) or branch.search(line)
    ]
    assert not found, "\n".join(found)


class TwoPromptWorld(worlds.World):
    """A throw-away world: two prompts, one rule objective (shortness)."""

    name = "two-prompts"
    objectives = ("short",)
    default_weights = {"short": 1.0}
    judge_id = "two-prompts-rules"

    def train_prompts(self, recipe, round):
        from selm.records import Prompt

        return [Prompt("a", "What is 2 plus 3?"), Prompt("b", "Reverse the word cat.")]

    def heldout_prompts(self, recipe):
        return self.train_prompts(recipe, 0)

    def score(self, prompts, replies):
        return [{"short": min(1.0, 4 / max(1, len(r)))} for r in replies]


@pytest.fixture
def two_prompt_world():
    world = worlds.register(TwoPromptWorld())
    yield world
    worlds.REGISTRY.pop(world.name)


def test_a_new_world_is_one_class_and_a_registry_entry(two_prompt_world, tiny_policy_dir, tmp_path):
    from selm.config import load_recipe
    from selm.pipeline import runtime
    from selm.pipeline.components import Components, metric_names
    from selm.pipeline.preflight import check

    overrides = [f"world.name={two_prompt_world.name}", f"policy.init={tiny_policy_dir}", "experiment.rounds=1",
                 "sampling.n=4", "train.batch_size=2", "eval.lm_eval.tasks=[]", "eval.mt_bench.enabled=false",
                 "eval.alpaca_eval.enabled=false", f"experiment.output_dir={tmp_path}", "judge.cache=off"]  # fmt: skip
    recipe = check(load_recipe(None, overrides)).recipe
    assert recipe.judge.weights == {"short": 1.0}  # the world's default weights, written into the recipe to run
    policy = str(tiny_policy_dir)
    state = runtime.begin(Components(recipe), 1, "two", policy, policy, tmp_path / "round-1")
    state = runtime.run_round(state, recipe)
    assert {j.judge for j in state.judgments} == {"two-prompts-rules"} and set(state.judgments[0].scores) == {"short"}
    assert state.pairs, "two prompts × four samples of different lengths give pairs"
    assert state.evaluation is not None
    metrics, completions = state.metrics, state.evaluation.completions
    assert len(completions) == 2 and metric_names(recipe) == ("reward", "short", "good_all")
    assert {f"heldout/{n}" for n in metric_names(recipe)} <= set(metrics)
    assert metrics["heldout/good_all"] == pytest.approx(sum(c.text.__len__() <= 4 for c in completions) / 2)
