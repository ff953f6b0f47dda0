"""Batches of similar length: what every batched forward pass on padded sequences shares (sampling, scoring)."""

from __future__ import annotations

from collections.abc import Sequence


def length_batches(lengths: Sequence[int], max_rows: int, rows_per_item: int = 1, max_padding: float = 2.0):
    """Item indices in batches of ascending length: at most ``max_rows`` rows (an item is ``rows_per_item`` rows,
    e.g. n samples of a prompt), and a new batch whenever adding the next item would make the padded batch more than
    ``max_padding`` × its real tokens.

    Every row of a batch is computed at the batch's longest length, so one 1,000-token prompt among 63 of 100
    tokens makes the batch cost ~10× its work; it gets a batch of its own instead.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    per_batch = max(1, max_rows // rows_per_item)
    batches: list[list[int]] = []
    batch: list[int] = []
    real = 0
    for i in order:
        rows = len(batch) + 1
        if batch and (rows > per_batch or rows * lengths[i] > max_padding * (real + lengths[i])):
            batches.append(batch)
            batch, real = [], 0
        batch.append(i)
        real += lengths[i]
    return batches + [batch] if batch else batches
