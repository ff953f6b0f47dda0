"""Run an experiment's rounds with the stage functions alone (no Metaflow, no MLflow) and print timings.

    python benchmarks/stages_without_flows.py [recipe] [section.key=value ...]

Separates the cost of the ML work from the orchestration overhead of the flows, and is the quickest way to
see whether a change to the world or the trainer still improves the held-out reward.
"""

import sys
import tempfile
import time
from pathlib import Path

from selm import stages
from selm.config import load_recipe


def main(argv: list[str]) -> None:
    recipe_arg = argv[0] if argv and "=" not in argv[0] else None
    recipe = load_recipe(recipe_arg, [a for a in argv if "=" in a])
    t0 = time.perf_counter()
    policy = stages.initial_policy_path(recipe)
    print(f"initial policy ready in {time.perf_counter() - t0:.1f}s: {policy}")
    metrics, _, _ = stages.evaluate(policy, recipe, 0, "sft")
    print("round 0", {k: round(v, 3) for k, v in metrics.items() if not k.endswith("_se")})
    out = Path(tempfile.mkdtemp(prefix="selm-bench-"))
    for k in range(1, recipe.experiment.rounds + 1):
        timing: dict = {}
        prompts = stages.train_prompts(recipe, k)
        with stages.timed(timing, "sample"):
            samples = stages.sample(policy, prompts, recipe, k, f"round-{k - 1}")
        with stages.timed(timing, "judge"):
            judgments = stages.judge_completions(prompts, samples.completions, recipe)
        with stages.timed(timing, "select"):
            pairs = stages.select_pairs(samples, judgments, recipe, k)
        with stages.timed(timing, "train"):
            history = stages.train(policy, pairs, recipe, k, out / f"round-{k}")
        policy = str(out / f"round-{k}")
        with stages.timed(timing, "evaluate"):
            metrics, _, _ = stages.evaluate(policy, recipe, k, f"round-{k}")
        print(f"round {k}: {len(pairs)} pairs", {k: round(v, 3) for k, v in history.summary().items()})
        print(f"round {k}", {k: round(v, 3) for k, v in metrics.items() if not k.endswith("_se")})
        print(f"round {k} timing", timing)
    print(f"total {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main(sys.argv[1:])
