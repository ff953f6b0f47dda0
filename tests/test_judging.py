from selm import tinyworld
from selm.judging import JudgeUsage, judge, weighted_sum
from selm.judgment_cache import JudgmentCache
from selm.records import Completion


def test_weighted_sum():
    assert weighted_sum({"a": 0.5, "b": 1.0, "c": 0.0}, {"a": 2.0, "b": 0.5}) == 1.5


def test_repeated_judging_hits_the_cache_every_time(tmp_path):
    prompts = list({p.id: p for p in tinyworld.prompts("train", 30, seed=0)}.values())[:20]  # distinct prompts
    comps = [
        Completion(p.id, reply, [1], [-1.0], "sample", 1, "r0") for p in prompts for reply in ("5", p.meta["answer"])
    ]
    weights = {"correctness": 1.0, "conciseness": 0.5, "safety": 1.0}
    by_id = {p.id: p for p in prompts}
    cache = JudgmentCache(tmp_path / "j.sqlite")
    first = judge(by_id, comps, tinyworld.score, weights, tinyworld.JUDGE_ID, cache=cache)
    assert cache.hits == 0 and cache.misses == 40
    cache.close()

    again = JudgmentCache(tmp_path / "j.sqlite")  # a new process, say a resumed round
    usage = JudgeUsage()
    second = judge(by_id, comps, tinyworld.score, weights, tinyworld.JUDGE_ID, cache=again, usage=usage)
    assert (again.hits, again.misses) == (40, 0)
    assert usage.metrics() == {
        "judge_calls": 0,
        "judge_cache_hits": 40,
        "judge_tokens": 0,
        "judge_cost_usd": 0.0,
        "judge_parse_failures": 0,
    }
    assert second == first
    other = judge(by_id, comps, tinyworld.score, weights, "another-judge", cache=again)
    assert again.misses == 40 and [j.scores for j in other] == [j.scores for j in first]
