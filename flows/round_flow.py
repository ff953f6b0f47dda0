"""RoundFlow — one round of online preference alignment: sample → select → judge → train → evaluate.

``select`` comes before ``judge`` because it decides which comparisons are worth paying a judge for (Active
Preference Learning under a label budget); with ``select.acquisition = "all"`` every sample is judged and the
judge step pairs each prompt's best reply against its worst.

Usually launched by SELMFlow (one run per round); also runs alone for debugging:

    python flows/round_flow.py run --round 1

Each step loads its inputs, calls one function of ``selm.stages``, stores artifacts, logs to MLflow and renders
its card. ``@resources`` says what a real-scale run needs (the recipe's ``[resources]``, handed over as the Config
``resources``: ``--config-value resources '{"train": {"gpu": 8, ...}}'`` when run alone); local runs ignore it.
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
        from selm import cards, stages, tracking
        from selm.config import load_recipe, recipe_from_json

        self.config = recipe_from_json(self.recipe_json) if self.recipe_json else load_recipe(self.recipe)
        self.experiment_id = self.experiment or f"RoundFlow-{current.run_id}"
        self.policy_in = self.policy or stages.initial_policy_path(self.config)
        self.reference_in = self.reference or self.policy_in
        self.policy_in_name = f"round-{self.round - 1}" if self.round > 1 else "sft"
        self.prompts = stages.train_prompts(self.config, self.round)
        self.out_dir = str(stages.round_dir(self.config, self.experiment_id, self.round))
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
        current.card.append(
            cards.markdown(
                f"# Round {self.round} of `{self.experiment_id}`\n"
                f"policy in: `{self.policy_in}` · {len(self.prompts)} prompts · "
                f"MLflow run `{self.mlflow_run}`"
            )
        )
        current.card.append(cards.table([{"id": p.id, "prompt": p.text, **p.meta} for p in self.prompts[:20]]))
        self.next(self.sample)

    @resources(gpu=step_resources.sample.gpu, cpu=step_resources.sample.cpu, memory=step_resources.sample.memory)
    @card(type="blank")
    @step
    def sample(self):
        """n replies per prompt from the policy, and its greedy reply y0 (SELM's optimism term)."""
        from selm import cards, stages, tracking

        with stages.timed(self.timings, "sample"):
            self.samples = stages.sample(self.policy_in, self.prompts, self.config, self.round, self.policy_in_name)
        tracking.log_records(self.mlflow_run, self.samples.completions, "samples")
        tracking.log_records(self.mlflow_run, self.samples.greedy, "greedy")
        tracking.log_metrics(self.mlflow_run, {"time_sample_s": self.timings["time_sample_s"]})
        texts = {p.id: p.text for p in self.prompts}
        current.card.append(
            cards.markdown(f"# Samples: {len(self.samples.completions)} replies, {len(self.samples.greedy)} greedy y0")
        )
        current.card.append(
            cards.table(
                [
                    {"prompt": texts[c.prompt_id], "reply": c.text, "logprob": c.logprob, "tokens": len(c.token_ids)}
                    for c in self.samples.completions[:40]
                ]
            )
        )
        self.next(self.select)

    @resources(gpu=step_resources.select.gpu, cpu=step_resources.select.cpu, memory=step_resources.select.memory)
    @card(type="blank")
    @step
    def select(self):
        """Choose which comparisons the judge labels: every sample, or an APL acquisition under a label budget."""
        from selm import cards, plots, stages, tracking

        with stages.timed(self.timings, "select"):
            self.selection = stages.select_comparisons(
                self.samples, self.config, self.policy_in, self.reference_in, self.round
            )
        sel = self.selection
        tracking.log_metrics(
            self.mlflow_run,
            {
                "labels": sel.labels,
                "replies_to_judge": len(sel.completion_indices),
                "time_select_s": self.timings["time_select_s"],
            },
        )
        current.card.append(
            cards.markdown(
                f"# Selection: `{sel.method}` — {sel.labels} comparisons, {len(sel.completion_indices)} replies "
                f"to judge out of {len(self.samples.completions)}"
            )
        )
        if sel.candidates:
            rows = stages.acquisition_rows(sel, self.prompts)
            tracking.log_dict(self.mlflow_run, {"method": sel.method, "candidates": rows}, "records/acquisition.json")
            current.card.append(cards.figure(plots.acquisition_scores(sel)))
            current.card.append(cards.table(sorted(rows, key=lambda r: r["rank"] or 10**9)[:40]))
        self.next(self.judge)

    @resources(gpu=step_resources.judge.gpu, cpu=step_resources.judge.cpu, memory=step_resources.judge.memory)
    @card(type="blank")
    @step
    def judge(self):
        """Label the selected replies on each objective (cached), then pair best vs worst per prompt."""
        from selm import cards, plots, stages, tracking
        from selm.judging import JudgeUsage

        usage = JudgeUsage()
        with stages.timed(self.timings, "judge"):
            judged = [self.samples.completions[i] for i in self.selection.completion_indices]
            self.judgments = stages.judge_completions(
                self.prompts, judged, self.config, stages.judgment_cache(self.config), usage, training=True
            )
            self.pairs = stages.make_pairs(self.samples, self.selection, self.judgments, self.config, self.round)
        self.judge_usage = usage.metrics()
        self.train_metrics = stages.reward_metrics(self.judgments, "train")
        tracking.log_records(self.mlflow_run, self.judgments, "judgments")
        tracking.log_records(self.mlflow_run, self.pairs, "pairs")
        tracking.log_metrics(
            self.mlflow_run,
            {
                **self.train_metrics,
                **self.judge_usage,
                "pairs": len(self.pairs),
                "time_judge_s": self.timings["time_judge_s"],
            },
        )
        current.card.append(cards.markdown(f"# Judgments of {len(judged)} replies → {len(self.pairs)} pairs"))
        current.card.append(cards.metrics_table({**self.train_metrics, **self.judge_usage}))
        current.card.append(cards.figure(plots.reward_histograms(self.judgments, "reward per objective (train)")))
        current.card.append(
            cards.table(
                [
                    {
                        "chosen": p.chosen_text,
                        "rejected": p.rejected_text,
                        "r_chosen": p.chosen_reward,
                        "r_rejected": p.rejected_reward,
                    }
                    for p in self.pairs[:40]
                ]
            )
        )
        self.next(self.train)

    @resources(gpu=step_resources.train.gpu, cpu=step_resources.train.cpu, memory=step_resources.train.memory)
    @card(type="blank")
    @step
    def train(self):
        """DPO / SELM on the pairs, reference = the policy at the start of the round; atomic checkpoint."""
        from pathlib import Path

        from selm import cards, plots, stages, tracking

        self.policy_out = str(Path(self.out_dir) / "policy")
        with stages.timed(self.timings, "train"):
            history = stages.train(self.policy_in, self.pairs, self.config, self.round, Path(self.policy_out))
        self.train_history = history.steps
        self.train_summary = history.summary()
        tracking.log_curves(self.mlflow_run, history.steps, "train")
        tracking.log_metrics(self.mlflow_run, {**self.train_summary, "time_train_s": self.timings["time_train_s"]})
        current.card.append(cards.markdown(f"# Training ({self.config.train.loss}), {len(history.steps)} steps"))
        current.card.append(cards.metrics_table(self.train_summary))
        current.card.append(cards.figure(plots.training_curves(history.steps, f"round {self.round}")))
        self.next(self.evaluate)

    @resources(gpu=step_resources.evaluate.gpu, cpu=step_resources.evaluate.cpu, memory=step_resources.evaluate.memory)
    @card(type="blank")
    @step
    def evaluate(self):
        """Held-out reward of the new policy, per objective, with standard errors."""
        from selm import cards, plots, stages, tracking

        with stages.timed(self.timings, "evaluate"):
            self.eval_metrics, completions, judgments = stages.evaluate(
                self.policy_out, self.config, self.round, f"round-{self.round}"
            )
        with stages.timed(self.timings, "benchmarks"):
            bench_metrics, bench_records = stages.benchmarks(
                self.policy_out, self.config, self.round, f"round-{self.round}"
            )
        self.eval_metrics |= bench_metrics
        tracking.log_records(self.mlflow_run, completions, "heldout_samples")
        tracking.log_records(self.mlflow_run, judgments, "heldout_judgments")
        for name, records in bench_records.items():  # answers and judgments of each benchmark
            tracking.log_records(self.mlflow_run, records, name, "benchmarks")
        times = {k: self.timings[k] for k in ("time_evaluate_s", "time_benchmarks_s")}
        tracking.log_metrics(self.mlflow_run, {**self.eval_metrics, **times})
        current.card.append(cards.markdown(f"# Held-out evaluation ({len(judgments)} prompts)"))
        current.card.append(cards.metrics_table(self.eval_metrics))
        current.card.append(cards.figure(plots.reward_histograms(judgments, "reward per objective (held-out)")))
        cards.benchmarks(current.card, bench_metrics, bench_records)
        self.next(self.end)

    @card(type="blank")
    @step
    def end(self):
        """Register the round's policy (aliases <experiment>-round-k, champion) and close the MLflow run."""
        from selm import cards, tracking

        self.metrics = {
            **self.train_metrics,
            **self.judge_usage,
            "labels": self.selection.labels,
            **self.eval_metrics,
            **self.train_summary,
            **self.timings,
            "pairs": len(self.pairs),
            "round": self.round,
        }
        self.registered = tracking.register_policy(
            self.mlflow_run, self.policy_out, self.config, self.round, self.eval_metrics, self.experiment_id
        )
        tracking.finish_run(self.mlflow_run)
        current.card.append(
            cards.markdown(
                f"# Round {self.round} done\npolicy `{self.policy_out}` registered as "
                f"`{self.registered['name']}` v{self.registered['version']}"
                + (" — new **champion**" if self.registered["champion"] else "")
            )
        )
        current.card.append(cards.metrics_table(self.metrics, [k for k in self.metrics if k.startswith("time_")]))


if __name__ == "__main__":
    RoundFlow()
