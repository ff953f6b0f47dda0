"""Run an experiment's rounds with the stage functions alone (no Metaflow, no MLflow) and print timings.

    python benchmarks/stages_without_flows.py [recipe] [section.key=value ...]

Separates the cost of the ML work from the orchestration overhead of the flows, and is the quickest way to
see whether a change to the world or the trainer still improves the held-out reward.
"""

import sys
import tempfile
import time

from selm.config import load_recipe
from selm.pipeline.experiment import run_experiment


def main(argv: list[str]) -> None:
    recipe_arg = argv[0] if argv and "=" not in argv[0] else None
    recipe = load_recipe(recipe_arg, [a for a in argv if "=" in a])
    t0 = time.perf_counter()
    rows = run_experiment(recipe, tempfile.mkdtemp(prefix="selm-bench-"))
    for r in rows:
        print(
            f"round {r['round']}", {k: round(v, 3) for k, v in r.items() if k.startswith("heldout") and "_se" not in k}
        )
    print(f"total {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main(sys.argv[1:])
