"""selm's on-disk cache ($SELM_CACHE, default ~/.cache/selm): built models, the judgment cache, fetched data."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("SELM_CACHE", Path.home() / ".cache" / "selm"))


def cached_build(name: str, build: Callable[[Path], object]) -> Path:
    """``cache_dir()/name``, first built by ``build(path)`` under a file lock if absent (safe across processes)."""
    path = cache_dir() / name
    if not (path / "config.json").exists():
        cache_dir().mkdir(parents=True, exist_ok=True)
        with open(cache_dir() / f".{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not (path / "config.json").exists():
                build(path)
    return path
