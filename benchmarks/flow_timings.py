"""Per-step wall times of a SELMFlow run and of each round's RoundFlow run, next to the ML work inside them.

    python benchmarks/flow_timings.py [SELMFlow run id]     # run in the folder that holds .metaflow

"step" is the Metaflow task's wall time (process start, imports, artifacts, MLflow, card included) and its share of
the round's run; "work" is the time of the stage function itself (``time/<stage>_s``; evaluate's split into the
held-out reward, the benchmarks and the exploration diagnostics, each as a share of the round); the difference is
orchestration overhead. SELMFlow's ``run_round`` launches each round and then logs it to MLflow and registers its
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
        wall = (child["end"].task.finished_at - child.created_at).total_seconds()
        rows = []
        for step in ("start", "sample", "select", "judge", "train", "evaluate", "end"):
            seconds = task_seconds(child[step])
            work = metrics.get(f"time/{step}_s", 0)
            if step == "evaluate":  # the held-out reward, the benchmarks and the exploration diagnostics
                parts = {k: metrics.get(f"time/{k}_s", 0) for k in ("evaluate", "benchmarks", "diagnostics")}
                work = sum(parts.values())
                detail = ", ".join(f"{k} {v:.1f} = {100 * v / wall:.0f} %" for k, v in parts.items() if v)
            else:
                detail = f"{work:.1f}" if work else ""
            rows.append(f"{step} {seconds:.1f} = {100 * seconds / wall:.0f} %" + (f" (work {detail})" if work else ""))
        print(f"  round {metrics['round']}: {wall:6.1f} s  " + " · ".join(rows))
        print(f"           + {outside:.1f} s in SELMFlow's run_round (launch; MLflow logging and registration)")
    print(f"  end:   {task_seconds(run['end']):6.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
