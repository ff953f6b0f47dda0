"""Per-step wall times of a SELMFlow run and of each round's RoundFlow run, next to the ML work inside them.

    python benchmarks/flow_timings.py [SELMFlow run id]     # run in the folder that holds .metaflow

"step" is the Metaflow task's wall time (process start, imports, artifacts, MLflow, card included); "work" is
the time of the stage function itself (``time_<stage>_s``; evaluate includes the diagnostics); the difference
is orchestration overhead. SELMFlow's ``run_round`` launches each round and then logs it to MLflow and registers its
policy (``selm.report.rounds.to_mlflow``): the time it spends outside the round's own run is shown under it.
"""

import sys

from metaflow import Flow, Run, namespace


def task_seconds(step) -> float:
    task = step.task
    return (task.finished_at - task.created_at).total_seconds()


def main(argv: list[str]) -> None:
    namespace(None)
    run = Run(f"SELMFlow/{argv[0]}") if argv else Flow("SELMFlow").latest_successful_run
    total = (run["end"].task.finished_at - run.created_at).total_seconds()
    print(f"{run.pathspec}: {total:.0f} s in all")
    t = run["start"].task.data.timings  # the initial policy's time; round 0's evaluation is the rest of the step
    print(f"  start: {task_seconds(run['start']):6.1f} s  (initial policy {t['time/initial_policy_s']:.1f} s)")
    launches = sorted(run["run_round"], key=lambda t: t.created_at)  # SELMFlow's task per round
    for task, pathspec in zip(launches, run["end"].task.data.round_runs):
        child = Run(pathspec)
        outside = (task.finished_at - task.created_at).total_seconds() - (
            child["end"].task.finished_at - child.created_at
        ).total_seconds()
        metrics = child["end"].task.data.metrics
        rows = []
        for step in ("start", "sample", "select", "judge", "train", "evaluate", "end"):
            work = metrics.get(f"time/{step}_s", 0)
            work += metrics.get("time/diagnostics_s", 0) if step == "evaluate" else 0
            rows.append(f"{step} {task_seconds(child[step]):.1f}" + (f" (work {work:.1f})" if work else ""))
        wall = (child["end"].task.finished_at - child.created_at).total_seconds()
        print(f"  round {metrics['round']}: {wall:6.1f} s  " + " · ".join(rows))
        print(f"           + {outside:.1f} s in SELMFlow's run_round (launch; MLflow logging and registration)")
    print(f"  end:   {task_seconds(run['end']):6.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
