"""Training in several processes: ``torchrun`` runs ``selm.models.train_worker`` once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from selm.config import Recipe
from selm.models.training import TrainHistory
from selm.records import PreferencePair, write_jsonl
from selm.storage import local_copy


def train_distributed(
    policy_path: str, pairs: Sequence[PreferencePair], recipe: Recipe, round: int, save_to: Path
) -> TrainHistory:
    """``train_preferences`` in ``train.processes`` processes under ``torchrun`` (DDP, or DeepSpeed when the recipe
    names a config); the recipe, pairs and history travel as files."""
    import torch

    policy_path = local_copy(policy_path)  # fetched once here, not once per process
    with tempfile.TemporaryDirectory(prefix="selm-train-") as d:
        (Path(d) / "recipe.json").write_text(recipe.model_dump_json())
        write_jsonl(pairs, Path(d) / "pairs.jsonl")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += [f"--nproc_per_node={recipe.train.processes}"]
        cmd += ["-m", "selm.models.train_worker", f"{d}/recipe.json", f"{d}/pairs.jsonl", policy_path, str(round)]
        cmd += [str(save_to), f"{d}/history.json"]
        # accelerate runs several CPU processes as one job (DDP over gloo) only when told it is on a CPU
        env = {**os.environ, **({} if torch.cuda.is_available() else {"ACCELERATE_USE_CPU": "true"})}
        subprocess.run(cmd, check=True, env=env)
        return TrainHistory(json.loads((Path(d) / "history.json").read_text())["steps"])
