"""RoundFlow — one round of online preference alignment: sample → select → judge → train → evaluate.

``select`` comes before ``judge`` because it decides which comparisons are worth paying a judge for (Active
Preference Learning under a label budget); with ``select.acquisition = "all"`` every sample is judged and the
judge step pairs each prompt's best reply against its worst.

Usually launched by SELMFlow (one run per round); also runs alone for debugging:

    python flows/round_flow.py run --round 1

Each step takes the round's state (``selm.pipeline.runtime.RoundState``, one Metaflow artifact), runs one stage on
it with the step's own components (world, judges, models: each built once, on the step's device), keeps the state,
and renders the step's card (``selm.report.rounds``). Every step has ``@retry`` and ``@timeout`` from the recipe's
``[resources]`` (``selm.orchestration`` says what is retried and what is not). No step imports MLflow: SELMFlow logs
the finished round and registers its policy from its own process (a round run alone does it in ``end``).
``@resources`` says what a real-scale run needs (the recipe's ``[resources]``, handed over as the Config
``resources``: ``--config-value resources '{"train": {"gpu": 8, ...}}'`` when run alone); local runs ignore it.
"""

from metaflow import Config, FlowSpec, Parameter, card, current, resources, retry, step, timeout

from selm.orchestration import step_card

# Heavy imports (torch, transformers, mlflow) stay inside the steps: the card renderer re-imports this file.
STEP_CARD = step_card()  # a card per step, written once when it ends (one process, not two)


class RoundFlow(FlowSpec):
    # Parameters are annotated with the values the steps read (Metaflow's stubs type them as Parameter objects)
    step_resources = Config("resources", default_value="{}", parser="selm.config.flow_resources")
    recipe_json: str = Parameter("recipe_json", default="", help="Resolved recipe as JSON (SELMFlow passes it)")  # type: ignore[assignment]
    recipe: str = Parameter(
        "recipe", default="tiny_selm", help="Recipe name or .toml path, used when recipe_json is empty"
    )  # type: ignore[assignment]
    round: int = Parameter("round", default=1, type=int, help="Round index, 1-based")  # type: ignore[assignment]
    policy: str = Parameter("policy", default="", help="Policy at the start of the round (also the reference)")  # type: ignore[assignment]
    reference: str = Parameter(
        "reference", default="", help="The policy's own reference (APL certainty); default: policy"
    )  # type: ignore[assignment]
    experiment: str = Parameter("experiment", default="", help="Experiment id (output folder); defaults to this run")  # type: ignore[assignment]
    mlflow_parent: str = Parameter("mlflow_parent", default="", help="MLflow parent run id of the experiment")  # type: ignore[assignment]
    store: str = Parameter(
        "store", default="", help="Where steps hand each other policies (selm.storage); default: as SELMFlow decides"
    )  # type: ignore[assignment]

    @retry(times=step_resources.retries, minutes_between_retries=step_resources.retry_wait_minutes)
    @timeout(seconds=step_resources.light.timeout_s)
    @card(type=STEP_CARD)
    @step
    def start(self):
        """Validate the recipe and pick this round's prompts: the round's state (``selm.pipeline.runtime``)."""
        import sys

        from selm.config import load_recipe, recipe_from_json
        from selm.orchestration import store_for
        from selm.pipeline import preflight, runtime
        from selm.pipeline.policy import handed_on, initial_policy_path, round_dir
        from selm.report import rounds as report

        if self.recipe_json:  # from SELMFlow, which checked it before the experiment started
            self.config, skipped = recipe_from_json(self.recipe_json), {}
        else:  # run alone: checked here; benchmarks whose data is absent are skipped, as SELMFlow does
            checked = preflight.check(load_recipe(self.recipe))
            self.config, skipped = checked.recipe, checked.skipped
        experiment = self.experiment or f"RoundFlow-{current.run_id}"
        self.experiment_store = self.store or store_for(self.config.experiment.output_uri, experiment, sys.argv)
        policy = self.policy or handed_on(initial_policy_path(self.config), self.experiment_store)
        out_dir = round_dir(self.config, experiment, self.round)
        parts = runtime.Components(self.config, store=self.experiment_store)
        self.state = runtime.begin(parts, self.round, experiment, policy, self.reference or policy, out_dir)
        report.start(current.card, self.state, skipped)
        self.next(self.sample)

    @resources(gpu=step_resources.sample.gpu, cpu=step_resources.sample.cpu, memory=step_resources.sample.memory)
    @retry(times=step_resources.retries, minutes_between_retries=step_resources.retry_wait_minutes)
    @timeout(seconds=step_resources.sample.timeout_s)
    @card(type=STEP_CARD)
    @step
    def sample(self):
        """n replies per prompt from the policy, and its greedy reply y0 (SELM's optimism term)."""
        from selm.pipeline import runtime
        from selm.report import rounds as report

        self.state = runtime.run_sample(self.state, runtime.Components(self.config, store=self.experiment_store))
        report.samples(current.card, self.state)
        self.next(self.select)

    @resources(gpu=step_resources.select.gpu, cpu=step_resources.select.cpu, memory=step_resources.select.memory)
    @retry(times=step_resources.retries, minutes_between_retries=step_resources.retry_wait_minutes)
    @timeout(seconds=step_resources.select.timeout_s)
    @card(type=STEP_CARD)
    @step
    def select(self):
        """Choose which comparisons the judge labels: every sample, or an APL acquisition under a label budget."""
        from selm.pipeline import runtime
        from selm.report import rounds as report

        self.state = runtime.run_select(self.state, runtime.Components(self.config, store=self.experiment_store))
        report.selection(current.card, self.state)
        self.next(self.judge)

    @resources(gpu=step_resources.judge.gpu, cpu=step_resources.judge.cpu, memory=step_resources.judge.memory)
    @retry(times=step_resources.retries, minutes_between_retries=step_resources.retry_wait_minutes)
    @timeout(seconds=step_resources.judge.timeout_s)
    @card(type=STEP_CARD)
    @step
    def judge(self):
        """Label the selected replies on each objective (cached), then pair best vs worst per prompt."""
        from selm.pipeline import runtime
        from selm.report import rounds as report

        self.state = runtime.run_judge(self.state, runtime.Components(self.config, store=self.experiment_store))
        report.judged(current.card, self.state)
        self.next(self.train)

    @resources(gpu=step_resources.train.gpu, cpu=step_resources.train.cpu, memory=step_resources.train.memory)
    @retry(times=step_resources.retries, minutes_between_retries=step_resources.retry_wait_minutes)
    @timeout(seconds=step_resources.train.timeout_s)
    @card(type=STEP_CARD)
    @step
    def train(self):
        """DPO / SELM on the pairs, reference = the policy at the start of the round; atomic checkpoint."""
        from selm.pipeline import runtime
        from selm.report import rounds as report

        self.state = runtime.run_train(self.state, runtime.Components(self.config, store=self.experiment_store))
        report.training(current.card, self.state, self.config.train.loss)
        self.next(self.evaluate)

    @resources(gpu=step_resources.evaluate.gpu, cpu=step_resources.evaluate.cpu, memory=step_resources.evaluate.memory)
    @retry(times=step_resources.retries, minutes_between_retries=step_resources.retry_wait_minutes)
    @timeout(seconds=step_resources.evaluate.timeout_s)
    @card(type=STEP_CARD)
    @step
    def evaluate(self):
        """Held-out reward of the new policy, per objective, with standard errors; the enabled benchmarks; and the
        exploration diagnostics (how far the policy moved from its reference, how varied the round's samples were)."""
        from selm.pipeline import runtime
        from selm.report import rounds as report

        self.state = runtime.run_evaluate(self.state, runtime.Components(self.config, store=self.experiment_store))
        report.evaluation(current.card, self.state)
        self.next(self.end)

    @retry(times=step_resources.retries, minutes_between_retries=step_resources.retry_wait_minutes)
    @timeout(seconds=step_resources.light.timeout_s)
    @card(type=STEP_CARD)
    @step
    def end(self):
        """``metrics`` and ``policy_out`` for SELMFlow, which logs the round to MLflow and registers its policy; a
        round run alone (no ``mlflow_parent``) does both here (``selm.report.rounds.to_mlflow``)."""
        from metaflow import Run

        from selm.orchestration import step_attempts
        from selm.report import rounds as report

        self.metrics, self.policy_out = self.state.metrics, self.state.policy_out
        self.eval_scores = self.state.evaluation.scores if self.state.evaluation else {}
        report.end(current.card, self.state, step_attempts(Run(f"{current.flow_name}/{current.run_id}")))
        if not self.mlflow_parent:
            pathspec = str(current.pathspec).rsplit("/", 2)[0]
            self.mlflow_run, self.registered = report.to_mlflow(self.config, self.state, None, pathspec)
            report.registered(current.card, self.mlflow_run, self.registered)


if __name__ == "__main__":
    from selm.orchestration import exit_code_of, exit_without_teardown

    exit_without_teardown(exit_code_of(RoundFlow))
