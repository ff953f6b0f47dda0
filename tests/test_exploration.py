"""The exploration diagnostics against hand computations on small fixed inputs, and on a real model pair."""

import math

import pytest

from selm.algorithms import exploration


def test_kl_estimate_and_y0_log_ratio_by_hand():
    # per-reply log-ratios 1, -1, 3: mean 1; deviations 0 -2 2: s² = 4, SE = 2/√3
    mean, se = exploration.mean_log_ratio([-2.0, -5.0, -1.0], [-3.0, -4.0, -4.0])
    assert mean == pytest.approx(1.0) and se == pytest.approx(2 / math.sqrt(3))
    assert exploration.mean_log_ratio([-1.0], [-1.5]) == (0.5, pytest.approx(math.nan, nan_ok=True))
    with pytest.raises(ValueError, match="2 policy log-probs against 1"):
        exploration.mean_log_ratio([0.0, 0.0], [0.0])


def test_distinct_n_by_hand():
    replies = [[1, 2, 3], [1, 2, 4]]
    # unigrams 1 2 3 1 2 4: 4 distinct of 6; bigrams (1,2) (2,3) (1,2) (2,4): 3 distinct of 4
    assert exploration.distinct_n(replies, 1) == pytest.approx(4 / 6)
    assert exploration.distinct_n(replies, 2) == pytest.approx(3 / 4)
    assert exploration.distinct_n([[5, 6, 7, 8]], 2) == 1.0
    assert math.isnan(exploration.distinct_n([[1], [2]], 2))  # no bigram at all


def test_pairwise_overlap_by_hand():
    a, b, c = [1, 2, 3], [1, 2, 4], [9, 9]
    # bigram sets {12, 23}, {12, 24}, {99}: a~b 1/3, a~c 0, b~c 0 → mean 1/9
    assert exploration.pairwise_overlap([a, b, c]) == pytest.approx(1 / 9)
    assert exploration.pairwise_overlap([a, a]) == 1.0 and exploration.pairwise_overlap([[1], [2]]) == 1.0
    assert math.isnan(exploration.pairwise_overlap([a]))


def test_best_of_n_and_win_share_by_hand():
    best, spread = exploration.best_of_n([[0.1, 0.9, 0.5], [0.4, 0.2], []])
    assert best == pytest.approx((0.9 + 0.4) / 2) and spread == pytest.approx((0.8 + 0.2) / 2)
    assert exploration.win_share([1.0, 0.5, 0.2, 0.7], [0.5, 0.5, 0.9, 0.1]) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    with pytest.raises(ValueError):
        exploration.win_share([1.0], [])


def test_kl_inputs_are_the_sampling_distributions_own_log_probs():
    """On the tiny policy: the scoring pass's sequence log-probs of replies sampled at temperature 1 are the log-probs
    the sampler drew them with, so the mean log-ratio of πθ's replies is a Monte-Carlo KL of the sampled πθ, and
    exactly 0 against itself."""
    from selm.models.chat import encode_prompt
    from selm.models.loading import load_policy
    from selm.models.logprobs import batched_sequence_logprobs
    from selm.models.sampling import make_sampler
    from selm.worlds.tiny import prompts as tiny_prompts
    from selm.worlds.tiny.policy import tiny_policy_path

    path = tiny_policy_path()
    model, tok = load_policy(path)
    prompts = tiny_prompts("heldout", 16, seed=3)
    draw = make_sampler("hf", path, 16, "sft", dtype="float32")
    replies = draw.sample(prompts, n=1, temperature=1.0, max_new_tokens=12, seed=1)
    ids = [encode_prompt(tok, p.text) for p in prompts]
    lp = batched_sequence_logprobs(model, ids, [c.token_ids for c in replies], tok.pad_token_id).tolist()
    assert [c.logprob for c in replies] == pytest.approx(lp, abs=1e-3)
    assert exploration.mean_log_ratio(lp, lp)[0] == 0.0
