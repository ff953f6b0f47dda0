from selm.algorithms.rewards import weighted_sum
from selm.judges.base import JudgeUsage, RuleJudge, judge_replies
from selm.judges.cache import JudgmentCache
from selm.records import Completion
from selm.worlds import tiny


def test_weighted_sum():
    assert weighted_sum({"a": 0.5, "b": 1.0, "c": 0.0}, {"a": 2.0, "b": 0.5}) == 1.5


def test_repeated_judging_hits_the_cache_every_time(tmp_path):
    prompts = list({p.id: p for p in tiny.prompts("train", 30, seed=0)}.values())[:20]  # distinct prompts
    comps = [
        Completion(p.id, reply, [1], [-1.0], "sample", 1, "r0") for p in prompts for reply in ("5", p.meta["answer"])
    ]
    rules = RuleJudge(tiny.score, {"correctness": 1.0, "conciseness": 0.5, "safety": 1.0}, tiny.JUDGE_ID)
    cache, usage = JudgmentCache(tmp_path / "j.sqlite"), JudgeUsage()
    first = judge_replies(rules, prompts, comps, cache, usage)
    assert (usage.calls, usage.cache_hits, len(cache)) == (40, 0, 40)
    assert [j.reward for j in first] == [weighted_sum(j.scores, rules.weights) for j in first]
    cache.close()

    again = JudgmentCache(tmp_path / "j.sqlite")  # a new process, say a resumed round
    usage = JudgeUsage()
    second = judge_replies(rules, prompts, comps, again, usage)
    assert usage.metrics() == {
        "judge/calls": 0,
        "judge/cache_hits": 40,
        "judge/tokens": 0,
        "judge/cost_usd": 0.0,
        "judge/parse_failures": 0,
    }
    assert second == first
    usage = JudgeUsage()
    other = judge_replies(RuleJudge(tiny.score, rules.weights, "another-judge"), prompts, comps, again, usage)
    assert usage.calls == 40 and [j.scores for j in other] == [j.scores for j in first]


def test_a_reply_without_a_parsed_verdict_is_left_out_of_the_round_metrics_not_guessed():
    """An LLM judge's reply whose every verdict failed to parse scores NaN; the means are over the scored replies
    (a NaN used to crash ``statistics.stdev`` and fail the judge step on its every attempt)."""
    import math

    from selm.pipeline.components import reward_metrics
    from selm.records import Judgment

    scores = [1.0, 0.0, math.nan]
    judgments = [Judgment("p", f"p/sample/{k}", {"llm_winrate": s}, s, "llm") for k, s in enumerate(scores)]
    metrics = reward_metrics(judgments, "samples", tiny.TinyWorld())
    assert metrics["samples/reward"] == 0.5 and metrics["samples/llm_winrate"] == 0.5
    assert math.isclose(metrics["samples/reward_se"], 0.5)
    assert reward_metrics(judgments[2:], "samples", tiny.TinyWorld()) == {}
