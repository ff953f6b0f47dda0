"""Progress bars for sampling, judging and training (live on a terminal, sparse lines in captured logs), and timing."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from tqdm.auto import tqdm


def progress(iterable=None, **kwargs) -> tqdm:
    """``tqdm`` that redraws at most once a second on a terminal. When captured (Metaflow logs, CI) it appears only
    for work that lasts more than 5 s, then every 10 s, so logs show long work without a line per short step."""
    captured = not sys.stderr.isatty()
    kwargs.setdefault("mininterval", 10 if captured else 1)
    kwargs.setdefault("delay", 5 if captured else 0)
    return tqdm(iterable, **kwargs)


def quiet_transformers() -> None:
    """No "Loading weights" / "Writing model shards" bars from transformers in captured logs: they take a second
    and say nothing."""
    if not sys.stderr.isatty():
        from transformers.utils import logging

        logging.disable_progress_bar()


@contextmanager
def timed(timings: dict, name: str):
    """Adds the wall time of the block to ``timings[f"time/{name}_s"]``."""
    t0 = time.perf_counter()
    yield
    timings[f"time/{name}_s"] = round(time.perf_counter() - t0, 3)
