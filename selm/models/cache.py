"""The models of one step, each loaded once, on the step's device.

A step may need one policy several times — evaluate samples the held-out replies and the benchmark answers from it,
runs lm-eval on it and scores y0 under it and its reference; select scores the candidates under both. Every stage
asks the step's ``ModelCache``, which reads each (path, precision) from disk once and puts it on the step's device
(``cuda`` when the machine has a GPU, else the CPU; TRL's ``prepare_model`` plays the same role there).
"""

from __future__ import annotations

from pathlib import Path

from selm.models.loading import load_policy
from selm.models.precision import compute_device, resolve


class ModelCache:
    """(model, tokenizer) by (path, precision), in eval mode on ``device``; lives as long as the step."""

    def __init__(self, device: str | None = None):
        self.device = device or compute_device()
        self._models: dict[tuple[str, str], tuple] = {}

    def get(self, path: str | Path, dtype: str = "float32"):
        """The model at ``path`` in ``dtype`` (a torch dtype name, a short form such as "bf16", or "auto": what this
        cache's device computes natively) and its tokenizer; loaded on first use, the same objects afterwards."""
        key = (_key(path), resolve(dtype, self.device))
        if key not in self._models:
            model, tokenizer = load_policy(path, dtype=key[1])
            self._models[key] = (model.to(self.device), tokenizer)
        return self._models[key]

    def loaded(self) -> list[tuple[str, str]]:
        """(path, dtype) of every model this cache holds, in load order."""
        return list(self._models)


def _key(path: str | Path) -> str:
    """A folder by its absolute path (two spellings of one folder are one model); a hub id as it is."""
    p = Path(path)
    return str(p.resolve()) if p.exists() else str(path)
