"""Atomic checkpoints: write into a temporary sibling folder, then rename, so a reader never sees half a model."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path


def atomic_save_pretrained(
    path: str | Path, model, tokenizer, extra: dict[str, dict] | None = None, state_dict: dict | None = None
) -> Path:
    """``save_pretrained`` model and tokenizer (plus small JSON files) to ``path`` atomically.

    An existing checkpoint at ``path`` is replaced only after the new one is complete on disk. ``state_dict`` (the
    full weights gathered from a sharded model, e.g. DeepSpeed ZeRO-3) replaces the model's own.
    """
    from selm.progress import quiet_transformers

    quiet_transformers()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        model.save_pretrained(tmp, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        for name, data in (extra or {}).items():
            (tmp / name).write_text(json.dumps(data, indent=2))
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        # safetensors reports a full disk as its own SafetensorError, with the OS message inside
        if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left on device" in str(e):
            raise OSError(
                errno.ENOSPC,
                f"no space left on the device while writing the checkpoint {path} (nothing partial was left "
                "behind); free some space and `resume`",
            ) from e
        raise
    return path
