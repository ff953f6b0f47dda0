"""Batches of similar length (``selm.models.batching``) and the prompt-length filter (``selm.data.word_count``)."""

import random

from selm.data import word_count
from selm.models.batching import length_batches


def test_every_item_once_in_ascending_length_within_the_row_limit():
    rng = random.Random(0)
    lengths = [rng.randint(20, 200) for _ in range(100)]
    batches = length_batches(lengths, max_rows=32, rows_per_item=4)
    assert sorted(i for b in batches for i in b) == list(range(100))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)
    assert all(len(b) * 4 <= 32 for b in batches)


def test_a_long_outlier_gets_a_batch_of_its_own_instead_of_padding_the_others():
    lengths = [100] * 63 + [1000]
    batches = length_batches(lengths, max_rows=64)
    assert batches == [list(range(63)), [63]]
    # without an outlier, one full batch: similar lengths are not split
    assert length_batches([100 + i for i in range(64)], max_rows=64) == [list(range(64))]


def test_word_count_counts_cjk_characters_and_long_runs_not_just_whitespace():
    assert word_count("Write a short poem about the sea.") == 7
    assert word_count("被告人段某驾拖车") == 8  # no spaces, eight characters
    assert word_count("ATGC" * 30) == 10  # one 120-letter "word": one per 12 characters
    assert word_count("translate: 段某 hello") == 4
