"""Progress bars for sampling, judging and training: live on a terminal, a line every few seconds in logs."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress(iterable=None, **kwargs) -> tqdm:
    """``tqdm`` that redraws at most once a second on a terminal and every 10 s when captured (Metaflow logs,
    CI), so logs show progress without a line per step."""
    kwargs.setdefault("mininterval", 1 if sys.stderr.isatty() else 10)
    return tqdm(iterable, **kwargs)
