"""RoundFlow — one round of online preference alignment: sample → select → judge → train → evaluate.

``select`` comes before ``judge`` because it decides which comparisons are worth paying a judge for (Active
Preference Learning under a label budget); with ``select.acquisition = "all"`` every sample is judged and the
judge step pairs each prompt's best reply against its worst.

Usually launched by SELMFlow (one run per round); also runs alone for debugging:

    python flows/round_flow.py run --round 1

Each step loads its inputs, calls one function of ``selm.pipeline``, keeps its result as artifacts, and hands it to
``selm.report.rounds``, which logs it to MLflow and renders the step's card. ``@resources`` says what a real-scale
run needs (the recipe's ``[resources]``, handed over as the Config ``resources``:
``--config-value resources '{"train": {"gpu": 8, ...}}'`` when run alone); local runs ignore it.
"""

import json

from metaflow import Config, FlowSpec, Parameter, card, current, resources, step

from selm.config import Resources

# Heavy imports (torch, transformers, mlflow) stay inside the steps: the card renderer re-imports this file.


def parse_resources(text: str) -> dict:
    """The Config ``resources``: a (partial) JSON ``[resources]`` section, validated and completed with defaults."""
    return Resources.model_validate(json.loads(text)).model_dump()


class RoundFlow(FlowSpec):
    step_resources = Config("resources", default_value="{}", parser=parse_resources)
    recipe_json = Parameter("recipe_json", default="", help="Resolved recipe as JSON (SELMFlow passes it)")
    recipe = Parameter("recipe", default="tiny_selm", help="Recipe name or .toml path, used when recipe_json is empty")
    round = Parameter("round", default=1, type=int, help="Round index, 1-based")
    policy = Parameter("policy", default="", help="Policy at the start of the round (also the reference)")
    reference = Parameter("reference", default="", help="The policy's own reference (APL certainty); default: policy")
    experiment = Parameter("experiment", default="", help="Experiment id (output folder); defaults to this run")
    mlflow_parent = Parameter("mlflow_parent", default="", help="MLflow parent run id of the experiment")

    @card(type="blank")
    @step
    def start(self):
        """Validate the recipe, pick this round's prompts and open the round's MLflow run."""
        from selm import tracking, worlds
        from selm.config import load_recipe, recipe_from_json
        from selm.pipeline import preflight
        from selm.pipeline.policy import initial_policy_path, round_dir
        from selm.report import rounds as report

        if self.recipe_json:  # from SELMFlow, which checked it before the experiment started
            self.config, skipped = recipe_from_json(self.recipe_json), {}
        else:  # run alone: checked here; benchmarks whose data is absent are skipped, as SELMFlow does
            checked = preflight.check(load_recipe(self.recipe))
            self.config, skipped = checked.recipe, checked.skipped
        self.experiment_id = self.experiment or f"RoundFlow-{current.run_id}"
        self.policy_in = self.policy or initial_policy_path(self.config)
        self.reference_in = self.reference or self.policy_in
        self.policy_in_name = f"round-{self.round - 1}" if self.round > 1 else "sft"
        self.prompts = worlds.of(self.config).train_prompts(self.config, self.round)
        self.out_dir = str(round_dir(self.config, self.experiment_id, self.round))
        self.mlflow_run = tracking.start_run(  # found again if a killed start had opened it
            self.config,
            f"round-{self.round}",
            key=f"{self.experiment_id}/round-{self.round}",
            parent_run_id=self.mlflow_parent or None,
            tags={
                "round": str(self.round),
                "selm_experiment": self.experiment_id,
                "metaflow_run": current.pathspec.rsplit("/", 2)[0],
            },
        )
        self.timings = {}
        report.start(
            current.card, self.round, self.experiment_id, self.policy_in, self.prompts, self.mlflow_run, skipped
        )
        self.next(self.sample)

    @resources(gpu=step_resources.sample.gpu, cpu=step_resources.sample.cpu, memory=step_resources.sample.memory)
    @card(type="blank")
    @step
    def sample(self):
        """n replies per prompt from the policy, and its greedy reply y0 (SELM's optimism term)."""
        from selm.pipeline.sample import sample
        from selm.progress import timed
        from selm.report import rounds as report

        with timed(self.timings, "sample"):
            self.samples = sample(self.policy_in, self.prompts, self.config, self.round, self.policy_in_name)
        report.samples(current.card, self.mlflow_run, self.samples, self.prompts, self.timings)
        self.next(self.select)

    @resources(gpu=step_resources.select.gpu, cpu=step_resources.select.cpu, memory=step_resources.select.memory)
    @card(type="blank")
    @step
    def select(self):
        """Choose which comparisons the judge labels: every sample, or an APL acquisition under a label budget."""
        from selm.pipeline.select import select_comparisons
        from selm.progress import timed
        from selm.report import rounds as report

        with timed(self.timings, "select"):
            self.selection = select_comparisons(
                self.samples, self.config, self.policy_in, self.reference_in, self.round
            )
        n_replies = len(self.samples.completions)
        report.selection(current.card, self.mlflow_run, self.selection, self.prompts, n_replies, self.timings)
        self.next(self.judge)

    @resources(gpu=step_resources.judge.gpu, cpu=step_resources.judge.cpu, memory=step_resources.judge.memory)
    @card(type="blank")
    @step
    def judge(self):
        """Label the selected replies on each objective (cached), then pair best vs worst per prompt."""
        from selm.pipeline.judge import judge_and_pair
        from selm.progress import timed
        from selm.report import rounds as report

        with timed(self.timings, "judge"):
            judged = judge_and_pair(self.prompts, self.samples, self.selection, self.config, self.round)
        self.judgments, self.pairs = judged.judgments, judged.pairs
        self.judge_usage, self.train_metrics = judged.usage, judged.metrics
        report.judged(current.card, self.mlflow_run, judged, self.timings)
        self.next(self.train)

    @resources(gpu=step_resources.train.gpu, cpu=step_resources.train.cpu, memory=step_resources.train.memory)
    @card(type="blank")
    @step
    def train(self):
        """DPO / SELM on the pairs, reference = the policy at the start of the round; atomic checkpoint."""
        from pathlib import Path

        from selm.pipeline.train import train
        from selm.progress import timed
        from selm.report import rounds as report

        self.policy_out = str(Path(self.out_dir) / "policy")
        with timed(self.timings, "train"):
            history = train(self.policy_in, self.pairs, self.config, self.round, Path(self.policy_out))
        self.train_history, self.train_summary = history.steps, history.summary()
        report.training(current.card, self.mlflow_run, history, self.config.train.loss, self.round, self.timings)
        self.next(self.evaluate)

    @resources(gpu=step_resources.evaluate.gpu, cpu=step_resources.evaluate.cpu, memory=step_resources.evaluate.memory)
    @card(type="blank")
    @step
    def evaluate(self):
        """Held-out reward of the new policy, per objective, with standard errors; the enabled benchmarks; and the
        exploration diagnostics (how far the policy moved from its reference, how varied the round's samples were)."""
        from selm.models.cache import ModelCache
        from selm.pipeline.evaluate import evaluate_all
        from selm.pipeline.explore import diagnostics
        from selm.progress import timed
        from selm.report import rounds as report

        models = ModelCache()  # the new policy and its reference, each loaded once for both
        evaluation = evaluate_all(self.policy_out, self.config, self.round, f"round-{self.round}", models)
        self.eval_metrics, self.eval_scores = evaluation.metrics, evaluation.scores
        self.timings |= evaluation.timings
        report.evaluation(current.card, self.mlflow_run, evaluation)
        with timed(self.timings, "diagnostics"):
            self.explore_metrics = diagnostics(
                self.policy_out,
                self.policy_in,
                self.samples,
                self.selection,
                self.judgments,
                (evaluation.completions, evaluation.judgments),
                self.config,
                self.round,
                models,
            )
        report.exploration(current.card, self.mlflow_run, self.explore_metrics)
        self.next(self.end)

    @card(type="blank")
    @step
    def end(self):
        """Register the round's policy (aliases <experiment>-round-k, champion) and close the MLflow run."""
        from selm import tracking
        from selm.report import rounds as report

        self.metrics = {
            **self.train_metrics,
            **self.judge_usage,
            "labels": self.selection.labels,
            **self.eval_metrics,
            **self.explore_metrics,
            **self.train_summary,
            **self.timings,
            "pairs": len(self.pairs),
            "round": self.round,
        }
        self.registered = tracking.register_policy(
            self.mlflow_run, self.policy_out, self.config, self.round, self.eval_metrics, self.experiment_id
        )
        tracking.finish_run(self.mlflow_run)
        report.end(current.card, self.round, self.policy_out, self.registered, self.metrics)


if __name__ == "__main__":
    from selm.orchestration import exit_code_of, exit_without_teardown

    exit_without_teardown(exit_code_of(RoundFlow))
