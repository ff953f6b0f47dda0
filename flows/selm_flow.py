"""SELMFlow — one run = one experiment of R rounds of online preference alignment.

    python flows/selm_flow.py run                              # the default: tiny world, 3 rounds of SELM, CPU
    python flows/selm_flow.py run --recipe tiny_dpo            # a shipped recipe, or --recipe path/to/recipe.toml
    python flows/selm_flow.py run --overrides "train.loss=dpo experiment.rounds=2"
    python flows/selm_flow.py resume                           # after a crash or kill: finished work is reused

Before Metaflow starts, the command line is checked (``selm.orchestration.main``): a bad recipe or environment
fails in seconds with nothing started; ``resume`` of a finished experiment does nothing; ``resume`` of one that is
still running is refused.

``run_round`` loops onto itself (Metaflow allows a loop only on a split-switch step) and launches one RoundFlow
run per round with Metaflow's Runner, so every round is a real run with its own steps, cards and ``resume``.
A round that already succeeded for this experiment is reused; one that failed or was killed is resumed.

Every step of both flows retries what may pass and has a time limit, from the recipe's ``[resources]``
(``retries``, ``retry_wait_minutes``, ``<step>.timeout_minutes``): see ``selm.orchestration``. The round cards and
the summary say how many attempts each step took.
"""

import sys
from pathlib import Path

from metaflow import Config, FlowSpec, Parameter, card, current, resources, retry, step, timeout

from selm.orchestration import step_card

ROUND_FLOW = Path(__file__).resolve().parent / "round_flow.py"
STEP_CARD = step_card()  # each step's card is written once, when the step ends (one process, not two)


class SELMFlow(FlowSpec):
    # the recipe's [resources]: @retry and @timeout of these steps (the command line sets it from the recipe)
    step_resources = Config("resources", default_value="{}", parser="selm.config.flow_resources")
    # Parameters are annotated with the values the steps read (Metaflow's stubs type them as Parameter objects)
    recipe: str = Parameter("recipe", default="tiny_selm", help="Shipped recipe name (selm/recipes) or path to a .toml")  # type: ignore[assignment]
    overrides: str = Parameter("overrides", default="", help='Space-separated section.key=value, e.g. "train.loss=dpo"')  # type: ignore[assignment]

    @resources(gpu=step_resources.experiment_start.gpu, cpu=step_resources.experiment_start.cpu,
               memory=step_resources.experiment_start.memory)  # it evaluates the initial policy  # fmt: skip
    @retry(times=step_resources.retries, minutes_between_retries=step_resources.retry_wait_minutes)
    @timeout(seconds=step_resources.experiment_start.timeout_s)
    @card(type=STEP_CARD)
    @step
    def start(self):
        """Check the recipe and everything it names, make sure the initial policy exists, open (or, resumed, find
        again) the experiment's MLflow run, evaluate round 0."""
        import shlex

        from selm import tracking
        from selm.config import load_recipe
        from selm.orchestration import experiment_of, store_for
        from selm.pipeline import preflight
        from selm.pipeline.components import Components
        from selm.pipeline.evaluate import evaluate_all
        from selm.pipeline.policy import handed_on, initial_policy_path, resolved_precisions
        from selm.progress import timed
        from selm.report import experiment as report

        self.experiment_id = experiment_of(str(current.run_id), current.tags)  # the same for every resume
        # checked again here (the command line checked it before `run`): a resume re-executes start without that
        # check, and the step needs the recipe to run — the one with the benchmarks whose data is absent left out
        checked = preflight.check(load_recipe(self.recipe, shlex.split(self.overrides)))
        self.config, self.skipped = checked.recipe, checked.skipped
        self.timings: dict[str, float] = {}
        # where the steps hand each other policies and judgments: "" when they share this disk (selm.storage)
        self.store = store_for(self.config.experiment.output_uri, self.experiment_id, sys.argv)
        with timed(self.timings, "initial_policy"):
            initial = initial_policy_path(self.config)
            self.policy = handed_on(initial, self.store)
        self.precisions = resolved_precisions(self.config)  # what "auto" means on this machine (params, card, log)
        self.mlflow_run = tracking.start_run(self.config, self.config.experiment.name, key=self.experiment_id,
            tags={"metaflow_run": f"SELMFlow/{current.run_id}", "selm_experiment": self.experiment_id},
            params=self.precisions)  # fmt: skip
        with tracking.failed_on_error(self.mlflow_run):
            round0 = evaluate_all(Components(self.config, store=self.store), initial, 0, "sft")
        report.start(current.card, self.mlflow_run, self.recipe, self.config, self.experiment_id, self.policy,
                     round0, self.skipped, self.timings["time/initial_policy_s"], self.precisions)  # fmt: skip
        # round 1's policy is its own reference
        self.rounds, self.round, self.reference, self.round_runs = [{"round": 0, **round0.metrics}], 1, self.policy, []
        self.first_scores = self.last_scores = round0.scores  # per-prompt values: the paired comparison at the end
        self.attempts = [{"where": "experiment", "step": "start", "attempts": current.retry_count + 1}]
        self.next(self.run_round)

    @resources(cpu=step_resources.experiment_round.cpu,
               memory=step_resources.experiment_round.memory)  # it loads the round's policy to register it  # fmt: skip
    @retry(times=step_resources.retries, minutes_between_retries=step_resources.retry_wait_minutes)
    @timeout(seconds=step_resources.experiment_round.timeout_s)
    @card(type=STEP_CARD)
    @step
    def run_round(self):
        """Run (or reuse, or resume) the RoundFlow run of round ``self.round``, log it to MLflow and register its
        policy, then loop or finish."""
        from selm.orchestration import run_and_log_round, step_attempts

        params = dict(recipe_json=self.config.model_dump_json(), round=self.round, policy=self.policy,
                      reference=self.reference, experiment=self.experiment_id, store=self.store,
                      mlflow_parent=self.mlflow_run)  # fmt: skip
        child, state, round_run, registered = run_and_log_round(
            ROUND_FLOW, self.config, self.experiment_id, self.round, params, self.mlflow_run, sys.argv
        )
        from selm.report import experiment as report  # after the round: MLflow was imported while it ran

        self.reference, self.policy = self.policy, state.policy_out  # next round's policy and its own reference
        self.rounds = self.rounds + [state.metrics]
        self.last_scores = state.evaluation.scores if state.evaluation else {}
        self.round_runs = self.round_runs + [child.pathspec]
        attempts = {"run_round": current.retry_count + 1, **step_attempts(child)}
        self.attempts = self.attempts + [{"where": f"round {self.round}", "step": k, "attempts": n}
                                         for k, n in attempts.items()]  # fmt: skip
        report.round_done(current.card, self.mlflow_run, self.config, self.round, child.pathspec, self.rounds,
                          round_run, registered, attempts)  # fmt: skip
        self.round += 1
        self.next_step = "run_round" if self.round <= self.config.experiment.rounds else "end"
        self.next({"run_round": self.run_round, "end": self.end}, condition="next_step")  # type: ignore[arg-type]

    @retry(times=step_resources.retries, minutes_between_retries=step_resources.retry_wait_minutes)
    @timeout(seconds=step_resources.experiment_end.timeout_s)
    @card(type=STEP_CARD)
    @step
    def end(self):
        """Experiment card and summary: per-round curves, the last round against the initial policy (paired)."""
        from selm.report import experiment as report

        attempts = self.attempts + [{"where": "experiment", "step": "end", "attempts": current.retry_count + 1}]
        self.improvement = report.end(current.card, self.mlflow_run, self.config, self.experiment_id, self.policy,
                                      self.rounds, self.skipped, self.first_scores, self.last_scores,
                                      attempts)  # fmt: skip


if __name__ == "__main__":
    from selm.orchestration import main

    main(SELMFlow)
