import json

import pytest

from selm.pairs import best_vs_worst
from selm.records import Completion, Judgment, PreferencePair, Prompt, read_jsonl, write_jsonl


def comp(pid, text, ids):
    return Completion(pid, text, ids, [-0.1] * len(ids), "sample", 1, "round-0")


def test_best_vs_worst_drops_ties_and_small_margins():
    prompt_ids = {"a": [1, 2], "b": [1, 3], "c": [1, 4]}
    comps = [
        comp("a", "a1", [5]),
        comp("a", "a2", [6]),
        comp("a", "a3", [7]),
        comp("b", "b1", [8]),
        comp("b", "b2", [9]),
        comp("c", "c1", [10]),
        comp("c", "c2", [11]),
    ]
    rewards = [0.2, 0.9, 0.1, 0.5, 0.5, 0.50, 0.52]
    judg = [Judgment(c.prompt_id, i, {"x": r}, r, "j") for i, (c, r) in enumerate(zip(comps, rewards))]
    greedy = {p: comp(p, "g", [99]) for p in "abc"}
    pairs = best_vs_worst(prompt_ids, comps, judg, greedy, min_margin=0.05, round=2)
    assert len(pairs) == 1  # b is a tie, c's margin 0.02 < 0.05
    p = pairs[0]
    assert (p.chosen_text, p.rejected_text, p.chosen_ids, p.rejected_ids, p.greedy_ids) == ("a2", "a3", [6], [7], [99])
    assert (p.chosen_reward, p.rejected_reward, p.round, p.judge) == (0.9, 0.1, 2, "j")
    assert p.prompt_ids == [1, 2]
    assert len(best_vs_worst(prompt_ids, comps, judg, greedy, min_margin=0.0)) == 2


def test_jsonl_round_trip(tmp_path):
    recs = [comp("a", "x", [1, 2]), comp("b", "y", [3])]
    path = write_jsonl(recs, tmp_path / "c.jsonl")
    assert read_jsonl(Completion, path) == recs


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "t"}) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"p.jsonl:2: malformed Prompt"):
        read_jsonl(Prompt, path)
    path.write_text(json.dumps({"id": "a", "txt": "t"}) + "\n")
    with pytest.raises(ValueError, match=r"p.jsonl:1: .*unknown fields \['txt'\]"):
        read_jsonl(Prompt, path)
    with pytest.raises(ValueError, match="p.jsonl:1"):
        read_jsonl(PreferencePair, path)
