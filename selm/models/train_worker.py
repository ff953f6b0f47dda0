"""One training process: ``python -m selm.models.train_worker RECIPE_JSON PAIRS_JSONL POLICY ROUND OUT HISTORY_JSON``.

``selm.models.launch.train_distributed`` launches it with ``torchrun --nproc_per_node=N`` when ``train.processes`` > 1
(DDP over gloo on a CPU, NCCL on GPUs; with ``train.deepspeed`` the processes shard the optimizer state). Every
process computes the reference log-probs of all pairs (cheap next to training, and it avoids a broadcast), trains on
its share of each batch, and rank 0 writes the checkpoint and the history.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from selm.config import recipe_from_json
from selm.models.loading import load_policy
from selm.models.training import train_preferences
from selm.records import PreferencePair, read_jsonl


def main(argv: list[str]) -> None:
    recipe_json, pairs_path, policy, round_, out, history_path = argv
    recipe = recipe_from_json(Path(recipe_json).read_text())
    pairs = read_jsonl(PreferencePair, pairs_path)
    model, tokenizer = load_policy(policy)
    history = train_preferences(
        model, tokenizer, pairs, recipe.train, int(round_), recipe.experiment.seed, save_to=Path(out)
    )
    if int(os.environ.get("RANK", "0")) == 0:
        Path(history_path).write_text(json.dumps({"steps": history.steps}))


if __name__ == "__main__":
    main(sys.argv[1:])
