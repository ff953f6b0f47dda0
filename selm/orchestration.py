"""Launching one RoundFlow run per round, so that a re-entered round is reused or resumed, never repeated.

Each round's run carries the tags ``selm_experiment:<id>`` and ``round:<k>``; before launching, the newest run
with those tags is looked up: a successful one is reused as is, an unfinished or failed one is resumed with
Metaflow's ``resume`` (which clones its finished steps), and only when there is none is a new run started.
"""

from __future__ import annotations

from pathlib import Path


class RoundFailed(RuntimeError):
    pass


def latest_round_run(experiment_id: str, round: int):
    """Newest RoundFlow run of this experiment and round, or None."""
    from metaflow import Flow, namespace
    from metaflow.exception import MetaflowNotFound

    namespace(None)
    try:
        runs = list(Flow("RoundFlow").runs(f"selm_experiment:{experiment_id}", f"round:{round}"))
    except MetaflowNotFound:
        return None
    return max(runs, key=lambda r: r.created_at) if runs else None


def run_round_flow(flow_file: str | Path, experiment_id: str, round: int, params: dict, resources: dict | None = None):
    """Reuse, resume or start the round's RoundFlow run; return the successful client ``Run``.

    ``resources`` (the recipe's ``[resources]``) becomes the RoundFlow Config that sizes each step's ``@resources``."""
    from metaflow import Runner

    tags = [f"selm_experiment:{experiment_id}", f"round:{round}"]
    previous = latest_round_run(experiment_id, round)
    if previous is not None and previous.successful:
        print(f"round {round}: reusing finished run {previous.pathspec}")
        return previous
    if previous is not None:  # a resumed run keeps the Config of the run it resumes (Metaflow refuses a new one)
        print(f"round {round}: resuming unfinished run {previous.pathspec}")
        result = Runner(str(flow_file), show_output=True).resume(origin_run_id=previous.id, tags=tags)
    else:
        configs = {"config_value": [("resources", resources)]} if resources is not None else {}
        result = Runner(str(flow_file), show_output=True, **configs).run(tags=tags, **params)
    if not result.run.successful:
        raise RoundFailed(
            f"round {round} failed in {result.run.pathspec}; fix the cause and run `python flows/selm_flow.py resume`"
        )
    return result.run
