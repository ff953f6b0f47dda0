"""The round runtime: one round of online preference alignment as a typed state that each stage reads and extends.

    state = begin(Components(recipe), round=1, experiment_id="exp", policy=path, reference=path, out_dir=folder)
    state = run_round(state, recipe)          # every stage, each with its own Components (RoundFlow: one a step)
    state.metrics                             # every number the round produced, each name written once

How the data flows (records are joined by id — prompt id, ``Completion.id`` — never by list position):
begin → the round's prompts · sample → ``Samples``: n replies and the greedy y0 per prompt, each with its id ·
select → ``Selection``: the ids of the replies worth a label · judge → one ``Judgment`` per selected id, then
``PreferencePair``s best vs worst per prompt · train → the new policy at ``policy_out`` and its step history ·
evaluate → held-out replies and judgments, benchmarks, exploration diagnostics. Logging (MLflow) and cards read
the finished state (``selm.report.rounds``); the stages never import MLflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from selm.config import Recipe
from selm.pipeline.components import Components
from selm.pipeline.evaluate import Evaluation, evaluate_all
from selm.pipeline.explore import diagnostics
from selm.pipeline.judge import judge_and_pair
from selm.pipeline.sample import Samples, sample
from selm.pipeline.select import Selection, select_comparisons
from selm.pipeline.train import train
from selm.progress import timed
from selm.records import Judgment, PreferencePair, Prompt
from selm.storage import publish

T = TypeVar("T")


@dataclass
class RoundState:
    """Everything one round knows so far. Each stage fills its part; ``metrics`` holds every number, once."""

    round: int
    experiment_id: str
    policy_in: str  # the policy the round starts from: it samples, and it is training's reference
    reference_in: str  # the policy's own reference (APL's certainty); the policy itself in round 1
    out_dir: str
    prompts: list[Prompt]
    samples: Samples | None = None
    selection: Selection | None = None
    judgments: list[Judgment] = field(default_factory=list)  # one per selected reply, naming it by completion_id
    pairs: list[PreferencePair] = field(default_factory=list)
    train_steps: list[dict[str, float]] = field(default_factory=list)  # per optimizer step (TrainHistory.steps)
    policy_out: str = ""  # the trained policy: its folder, or the experiment store's URI (``selm.storage.publish``)
    evaluation: Evaluation | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # judge, training, evaluation, exploration, time/*
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))  # when the round began (its MLflow run)

    @property
    def policy_in_name(self) -> str:
        """The label of the policy the round starts from, on its replies: ``sft`` or ``round-<k-1>``."""
        return f"round-{self.round - 1}" if self.round > 1 else "sft"

    def add(self, metrics: Mapping[str, float]) -> None:
        """Record numbers under names no stage has used in this round: a second stage writing the same name is a
        bug (one result would silently replace the other), so it raises."""
        clash = sorted(set(metrics) & set(self.metrics))
        if clash:
            raise ValueError(f"round {self.round}: metrics {clash} were already recorded by an earlier stage")
        self.metrics.update(metrics)


def _done(result: T | None, stage: str, round: int) -> T:
    """An earlier stage's result, or an error naming that stage (a stage run out of order)."""
    if result is None:
        raise RuntimeError(f"round {round}: the {stage} stage has not run yet")
    return result


def begin(
    parts: Components, round: int, experiment_id: str, policy: str, reference: str, out_dir: str | Path
) -> RoundState:
    """A round's state: its prompts (the world's for this round) and the policies it starts from."""
    prompts = parts.world.train_prompts(parts.recipe, round)
    return RoundState(round, experiment_id, policy, reference, str(out_dir), prompts, metrics={"round": round})


def run_sample(state: RoundState, parts: Components) -> RoundState:
    """n replies per prompt and y0 from the round's policy."""
    timing: dict[str, float] = {}
    with timed(timing, "sample"):
        state.samples = sample(parts, state.policy_in, state.prompts, state.round, state.policy_in_name)
    state.add(timing)
    return state


def run_select(state: RoundState, parts: Components) -> RoundState:
    """Which replies the judge labels (every sample, or APL's acquisition under the label budget)."""
    samples = _done(state.samples, "sample", state.round)
    timing: dict[str, float] = {}
    with timed(timing, "select"):
        state.selection = select_comparisons(parts, samples, state.policy_in, state.reference_in, state.round)
    state.add({"select/labels": state.selection.labels, "select/replies_to_judge": len(state.selection.completion_ids),
               **timing})
    return state


def run_judge(state: RoundState, parts: Components) -> RoundState:
    """The selected replies judged (cached), paired best vs worst."""
    samples = _done(state.samples, "sample", state.round)
    selection = _done(state.selection, "select", state.round)
    timing: dict[str, float] = {}
    with timed(timing, "judge"):
        judged = judge_and_pair(parts, state.prompts, samples, selection, state.round)
    state.judgments, state.pairs = judged.judgments, judged.pairs
    state.add({**judged.metrics, **judged.usage, "train/pairs": len(judged.pairs), **timing})
    return state


def run_train(state: RoundState, parts: Components) -> RoundState:
    """DPO / SELM on the pairs from the round's policy (also the reference); the result saved in the round's folder
    and handed on as ``policy_out`` (that folder, or its copy in the experiment's store)."""
    timing: dict[str, float] = {}
    with timed(timing, "train"):
        saved = Path(state.out_dir) / "policy"
        history = train(parts, state.policy_in, state.pairs, state.round, saved)
        state.policy_out = publish(saved, parts.store, f"round-{state.round}/policy")
    state.train_steps = history.steps
    state.add({**{f"train/final_{k}": v for k, v in history.summary().items()}, **timing})
    return state


def run_evaluate(state: RoundState, parts: Components) -> RoundState:
    """The new policy's held-out reward and benchmarks, then the exploration diagnostics against the round's
    policy, on one set of models (the new policy and its reference, each loaded once)."""
    samples = _done(state.samples, "sample", state.round)
    _done(state.policy_out or None, "train", state.round)
    name = f"round-{state.round}"
    state.evaluation = ev = evaluate_all(parts, state.policy_out, state.round, name)
    state.add({**ev.metrics, **ev.timings})
    timing: dict[str, float] = {}
    with timed(timing, "diagnostics"):
        explore = diagnostics(
            parts, state.policy_out, state.policy_in, samples, state.judgments,
            (ev.completions, ev.judgments), state.round,
        )  # fmt: skip
    state.add({**explore, **timing})
    return state


Stage = Callable[[RoundState, Components], RoundState]
#: the stages of a round, in order (RoundFlow's steps between start and end)
STAGES: tuple[Stage, ...] = (run_sample, run_select, run_judge, run_train, run_evaluate)


def run_round(state: RoundState, recipe: Recipe, stages: Sequence[Stage] = STAGES) -> RoundState:
    """The stages (default: all) in one process, each with its own ``Components`` — as RoundFlow's steps, each in
    its own process."""
    for stage in stages:
        state = stage(state, Components(recipe))
    return state
