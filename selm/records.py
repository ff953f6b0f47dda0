"""Typed records that flow between stages, and their JSONL form.

Every record carries its provenance (round, policy version, judge id) so a pair in round 3 can be traced back to
the policy that sampled it and the judge that ranked it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


@dataclass
class Prompt:
    id: str
    text: str
    meta: dict = field(default_factory=dict)  # world-specific: task kind, target answer, unsafe flag


@dataclass
class Completion:
    prompt_id: str
    text: str
    token_ids: list[int]  # generated ids, end-of-turn token included when the model emitted it
    token_logprobs: list[float]  # log p of each generated token under the sampling distribution
    kind: str  # "sample" (temperature sampling) or "greedy"
    round: int
    policy: str  # policy version that produced it
    id: str = ""  # unique within a round: "<prompt id>/<kind>/<k>" (``number``); stages join records by it

    @property
    def logprob(self) -> float:
        return float(sum(self.token_logprobs))


@dataclass
class Judgment:
    prompt_id: str
    completion_id: str  # the ``Completion.id`` it judges
    scores: dict[str, float]  # per objective
    reward: float  # the combined reward used to rank
    judge: str


@dataclass
class PreferencePair:
    prompt_id: str
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    greedy_ids: list[int]  # y0: the reference policy's greedy reply (SELM's optimism term)
    chosen_text: str
    rejected_text: str
    chosen_reward: float
    rejected_reward: float
    round: int
    policy: str
    judge: str


def number(completions: list[Completion], start: Mapping[tuple[str, str], int] | None = None) -> list[Completion]:
    """Give each completion its id ``<prompt id>/<kind>/<k>``, k counting that prompt's replies of that kind from 0
    (or from ``start[(prompt id, kind)]``): a prompt drawn twice keeps distinct ids. In place; returns the list."""
    seen: Counter[tuple[str, str]] = Counter(start or {})
    for c in completions:
        key = (c.prompt_id, c.kind)
        c.id = f"{c.prompt_id}/{c.kind}/{seen[key]}"
        seen[key] += 1
    return completions


def by_id(completions: Iterable[Completion]) -> dict[str, Completion]:
    """{id: completion}; an id that is empty or appears twice is an error (records are joined by it)."""
    out: dict[str, Completion] = {}
    for c in completions:
        if not c.id or c.id in out:
            raise ValueError(f"completion ids must be unique and set (``records.number``): {c.id!r}")
        out[c.id] = c
    return out


R = TypeVar("R", bound="DataclassInstance")


def write_jsonl(records: Iterable, path: str | Path) -> Path:
    """One JSON object per line: dataclass records or plain dicts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps(r if isinstance(r, dict) else asdict(r)) + "\n")
    return path


def read_jsonl(cls: type[R], path: str | Path) -> list[R]:
    """Read records of type ``cls``; a malformed line raises ValueError naming the file and line."""
    names = {f.name for f in fields(cls)}
    out = []
    with Path(path).open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                unknown = set(row) - names
                if unknown:
                    raise ValueError(f"unknown fields {sorted(unknown)}")
                out.append(cls(**row))
            except (ValueError, TypeError) as e:
                raise ValueError(f"{path}:{lineno}: malformed {cls.__name__} record: {e}") from e
    return out
