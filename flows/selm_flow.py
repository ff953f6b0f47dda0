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
"""

from pathlib import Path

from metaflow import FlowSpec, Parameter, card, current, step

ROUND_FLOW = Path(__file__).resolve().parent / "round_flow.py"


class SELMFlow(FlowSpec):
    recipe = Parameter("recipe", default="tiny_selm", help="Shipped recipe name (selm/recipes) or path to a .toml")
    overrides = Parameter("overrides", default="", help='Space-separated section.key=value, e.g. "train.loss=dpo"')

    @card(type="blank")
    @step
    def start(self):
        """Check the recipe and everything it names, make sure the initial policy exists, open (or, resumed, find
        again) the experiment's MLflow run, evaluate round 0."""
        import shlex

        from selm import cards, preflight, stages, tracking
        from selm.config import load_recipe
        from selm.orchestration import experiment_of

        self.experiment_id = experiment_of(current.run_id, current.tags)  # the same for every resume
        # checked again here (the command line checked it before `run`): a resume re-executes start without that
        # check, and the step needs the recipe to run — the one with the benchmarks whose data is absent left out
        checked = preflight.check(load_recipe(self.recipe, shlex.split(self.overrides)))
        self.config, self.skipped = checked.recipe, checked.skipped
        for name, why in self.skipped.items():
            print(f"skipped {name}: {why}")
        self.timings = {}
        with stages.timed(self.timings, "initial_policy"):
            self.policy = stages.initial_policy_path(self.config)
        self.mlflow_run = tracking.start_run(
            self.config,
            self.config.experiment.name,
            key=self.experiment_id,
            tags={"metaflow_run": f"SELMFlow/{current.run_id}", "selm_experiment": self.experiment_id},
        )
        tracking.set_tags(self.mlflow_run, {"benchmarks_skipped": tracking.describe(self.skipped)})
        with tracking.failed_on_error(self.mlflow_run), stages.timed(self.timings, "evaluate"):
            metrics, _, _ = stages.evaluate(self.policy, self.config, 0, "sft")
            bench_metrics, bench_records = stages.benchmarks(self.policy, self.config, 0, "sft")
            metrics |= bench_metrics
        for name, records in bench_records.items():
            tracking.log_records(self.mlflow_run, records, f"{name}_round0", "benchmarks")
        round0 = {**metrics, "time_initial_policy_s": self.timings["time_initial_policy_s"]}
        tracking.log_metrics_once(self.mlflow_run, round0, step=0)
        print(f"round 0 (initial policy): {stages.headline(metrics)}")
        self.rounds = [{"round": 0, **metrics}]
        self.round = 1
        self.reference = self.policy  # round 1's policy is its own reference
        self.round_runs = []
        current.card.append(
            cards.markdown(
                f"# Experiment `{self.experiment_id}`\nrecipe `{self.recipe}` · "
                f"MLflow run `{self.mlflow_run}` · initial policy `{self.policy}`"
            )
        )
        current.card.append(cards.table([{"key": k, "value": v} for k, v in self.config.flat().items()]))
        current.card.append(cards.markdown("## Round 0 (initial policy), held-out"))
        current.card.append(cards.metrics_table(metrics))
        cards.skipped(current.card, self.skipped)
        cards.benchmarks(current.card, bench_metrics, bench_records)
        self.next(self.run_round)

    @card(type="blank", refresh_interval=5)
    @step
    def run_round(self):
        """Run (or reuse, or resume) the RoundFlow run of round ``self.round``, then loop or finish."""
        from selm import cards, plots, stages, tracking
        from selm.orchestration import run_round_flow

        round_key = f"{self.experiment_id}/round-{self.round}"
        tracking.reopen(self.mlflow_run, tracking.find_run(self.config, round_key))  # a resumed round runs again
        with tracking.failed_on_error(self.mlflow_run, lambda: tracking.find_run(self.config, round_key)):
            child = run_round_flow(
                ROUND_FLOW,
                experiment_id=self.experiment_id,
                round=self.round,
                params=dict(
                    recipe_json=self.config.model_dump_json(),
                    round=self.round,
                    policy=self.policy,
                    reference=self.reference,
                    experiment=self.experiment_id,
                    mlflow_parent=self.mlflow_run,
                ),
                resources=self.config.resources.model_dump(),
            )
        data = child["end"].task.data
        self.reference, self.policy = self.policy, data.policy_out  # next round's policy and its own reference
        self.rounds = self.rounds + [data.metrics]
        self.round_runs = self.round_runs + [child.pathspec]
        tracking.log_metrics_once(self.mlflow_run, data.metrics, step=self.round)
        print(f"round {self.round} done: {stages.headline(data.metrics)}")
        current.card.append(cards.markdown(f"# Round {self.round} — `{child.pathspec}`"))
        current.card.append(
            cards.figure(
                plots.metric_curves({self.config.train.loss: self.rounds}, HELDOUT_PLOTS, "held-out reward by round")
            )
        )
        self.round += 1
        self.next_step = "run_round" if self.round <= self.config.experiment.rounds else "end"
        self.next({"run_round": self.run_round, "end": self.end}, condition="next_step")

    @card(type="blank")
    @step
    def end(self):
        """Experiment card and summary: per-round curves, improvement over the initial policy."""
        from selm import cards, plots, stages, tracking

        self.improvement = stages.improvement(self.rounds[0], self.rounds[-1])
        fig = plots.metric_curves({self.config.train.loss: self.rounds}, HELDOUT_PLOTS, "held-out reward by round")
        tracking.log_figure(self.mlflow_run, fig, "heldout_by_round")
        tracking.log_dict(self.mlflow_run, {"rounds": self.rounds, "improvement": self.improvement}, "summary.json")
        tracking.finish_run(self.mlflow_run)
        current.card.append(
            cards.markdown(
                f"# Experiment `{self.experiment_id}`: {len(self.rounds) - 1} rounds of "
                f"{self.config.train.loss}\nfinal policy `{self.policy}`"
            )
        )
        current.card.append(cards.figure(fig))
        last = len(self.rounds) - 1
        current.card.append(cards.markdown(f"## Round {last} vs the initial policy (held-out, z = Δ / SE of Δ)"))
        current.card.append(cards.table(self.improvement))
        current.card.append(cards.table([{k: v for k, v in r.items() if not k.endswith("_se")} for r in self.rounds]))
        print(f"experiment {self.experiment_id} done; MLflow run {self.mlflow_run}")
        for name, why in self.skipped.items():
            print(f"  skipped {name}: {why}")
        for row in self.improvement:
            print("  {objective:>12}: {before:.4f} -> {after:.4f}  (delta {delta:+.4f}, z {z:.1f})".format(**row))


HELDOUT_PLOTS = ("heldout_reward", "heldout_correctness", "heldout_conciseness", "heldout_safety", "heldout_good_all")

if __name__ == "__main__":
    from selm.orchestration import main

    main(SELMFlow)
