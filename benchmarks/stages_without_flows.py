"""Run an experiment's rounds with the stage functions alone (no Metaflow, no MLflow) and print timings.

    python benchmarks/stages_without_flows.py [recipe] [section.key=value ...] [--json=OUT]

Separates the cost of the ML work from the orchestration overhead of the flows, and is the quickest way to
see whether a change to the world or the trainer still improves the held-out reward.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

from selm.config import load_recipe
from selm.pipeline.experiment import run_experiment


def main(argv: list[str]) -> None:
    out = next((a.removeprefix("--json=") for a in argv if a.startswith("--json=")), None)
    argv = [a for a in argv if not a.startswith("--json=")]
    recipe_arg = argv[0] if argv and "=" not in argv[0] else None
    recipe = load_recipe(recipe_arg, [a for a in argv if "=" in a])
    t0 = time.perf_counter()
    rows = run_experiment(recipe, tempfile.mkdtemp(prefix="selm-bench-"))
    heldout = [{k: round(v, 4) for k, v in r.items() if k.startswith("heldout") and "_se" not in k} for r in rows]
    for r, h in zip(rows, heldout):
        print(f"round {r['round']}", h)
    seconds = time.perf_counter() - t0
    print(f"total {seconds:.1f}s")
    if out:
        rounds = [{"round": r["round"], **h} for r, h in zip(rows, heldout)]
        Path(out).write_text(json.dumps({"recipe": recipe.experiment.name, "seconds": seconds, "rounds": rounds}))


if __name__ == "__main__":
    main(sys.argv[1:])
