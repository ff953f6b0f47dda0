"""Typed, validated recipes: one TOML file per experiment.

Every section is a pydantic model that forbids unknown keys, so a typo (``[train] lr_rate = ...``) or a wrong
type fails before any work starts with the dotted name of the offending key. ``load_recipe`` also applies
command-line overrides (``train.loss=dpo``) and returns the fully resolved recipe, which is what MLflow
records as params and what each round receives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from selm.errors import Permanent
from selm.metric_names import grouped

DEFAULT_RECIPE = "tiny_selm"

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]

# A "one value or one per round" field is validated against the branch its input's shape picks, so a bad value gives
# one error at the key itself instead of one per union branch ("must be > 0" and "must be a list"); ``_format`` drops
# these tags from the error's location.
_SCALAR, _PER_ROUND = "one value", "per-round list"


def _scalar_or_list(value) -> str:
    return _PER_ROUND if isinstance(value, list) else _SCALAR


PositiveFloatOrPerRound = Annotated[
    Annotated[PositiveFloat, Tag(_SCALAR)] | Annotated[list[PositiveFloat], Tag(_PER_ROUND)],
    Discriminator(_scalar_or_list),
]


@dataclass(frozen=True)
class LossSpec:
    """What a preference loss reads besides the chosen and rejected replies: y0 (the reference's greedy reply), and
    its own hyperparameters — the ``train.*`` keys passed to it by name. The functions themselves are
    ``selm.algorithms.losses.LOSSES`` (torch); this table is what config validation, the trainer and the memory
    planner read without loading torch."""

    reads_greedy: bool
    hyperparameters: tuple[str, ...]


#: ``train.loss`` → its spec: the one list of the losses a recipe may name
LOSS_SPECS: dict[str, LossSpec] = {
    "dpo": LossSpec(reads_greedy=False, hyperparameters=("beta",)),
    "ipo": LossSpec(reads_greedy=False, hyperparameters=("beta",)),
    "selm": LossSpec(reads_greedy=True, hyperparameters=("beta", "alpha")),
}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Experiment(Section):
    name: str = "tiny-selm"
    rounds: int = Field(3, ge=1)
    seed: int = 0
    output_dir: str = "outputs"  # checkpoints and round records; relative to the working directory
    #: where the steps hand each other policies and judgments when they share no disk (pods): "s3://bucket/prefix"
    #: (the experiment id is appended); "" = the Metaflow datastore's root when it is not local, else nothing is
    #: copied (selm.storage)
    output_uri: str = Field("", pattern=r"^(s3://[^/]+.*)?$")


class TinyBuild(Section):
    """How the tiny world's SFT policy is built (each setting changes the cache key)."""

    demos: int = Field(24000, ge=100)
    pretrain_steps: int = Field(500, ge=1)
    sft_steps: int = Field(500, ge=1)


class Policy(Section):
    #: "tiny" builds (once, cached) the tiny world's SFT policy; anything else is a local path or hub id.
    init: str = "tiny"
    tiny: TinyBuild = TinyBuild()


class World(Section):
    #: a registered world (``selm.worlds``): "tiny", the built-in world of generated tasks and rule judges;
    #: "prompts", prompts with a dataset preference pair each from ``prompts_file`` (UltraFeedback-binarized style);
    #: "instructions", prompts from ``prompts_file`` with IFEval-style verifiable constraints
    name: str = "tiny"
    #: the training prompts (JSONL; a path, or relative to $SELM_DATA_DIR) of the prompts and instructions worlds
    prompts_file: str = ""
    heldout_file: str = ""  # the instructions world's held-out prompts (a file disjoint from prompts_file)
    train_prompts_per_round: int = Field(512, ge=1)  # a disjoint slice of the prompts each round
    heldout_prompts: int = Field(600, ge=1)  # the held-out reward's prompts, in worlds that have a held-out set
    #: prompts of more words (``selm.data.word_count``) are left out of both files (prompts and instructions
    #: worlds); 0 = keep all. On a CPU the prompt's tokens dominate sampling and training cost
    max_prompt_words: int = Field(0, ge=0)


class Sampling(Section):
    #: "auto": vLLM when a GPU and vllm are present, else Hugging Face generate; or force "hf" / "vllm"
    backend: Literal["auto", "hf", "vllm"] = "auto"
    n: int = Field(4, ge=1)  # replies per training prompt (≥ 2 unless pairs.dataset_candidates)
    temperature: float = Field(1.0, gt=0)
    max_new_tokens: int = Field(32, ge=1)
    batch_size: int = Field(512, ge=1)  # sequences per generate() call
    #: the policy's weights while it generates (training samples, held-out replies, y0, MT-Bench / AlpacaEval
    #: answers): "auto" = bfloat16 where the sampler's device computes it natively (a GPU from Ampere on, a CPU
    #: with AVX512-BF16 or AMX), else float32 (``selm.models.precision``; README, Precision); or an explicit dtype,
    #: always honoured. In bf16 the replies' log-probs are the bf16 model's
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


class LLMJudgeConfig(Section):
    """An LLM judge behind an OpenAI-compatible endpoint (OpenAI, ``vllm serve``, ``transformers serve``)."""

    base_url: str = "http://127.0.0.1:8000/v1"
    #: model name as the server knows it; "tiny" = the tiny world's judge LM (serve it: see README, LLM judge)
    model: str = "tiny"
    #: the *name* of the environment variable that holds the API key (never the key itself); "" = no key
    api_key_env: str = Field("", pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$")
    #: a shipped template name (pairwise, single, tiny-pairwise, tiny-single), mt_bench:NAME, or a .json path;
    #: its type decides the mode: single ratings, or round-robin pairwise ranking of each prompt's replies
    template: str = "tiny-pairwise"
    swap: bool = True  # pairwise: judge both orders, a disagreement counts as a tie
    max_tokens: int = Field(512, ge=1)
    temperature: float = Field(0.0, ge=0)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0)
    backoff_s: float = Field(1.0, ge=0)
    concurrency: int = Field(8, ge=1)
    price_in_per_mtok: float = Field(0.0, ge=0)  # USD per million prompt tokens
    price_out_per_mtok: float = Field(0.0, ge=0)  # USD per million completion tokens


class Judge(Section):
    #: who ranks the training replies: the world's rule judges, a sequence-classification reward model, a
    #: sentence-embedding similarity to a reference, or an LLM judge (``[judge.llm]``)
    backend: Literal["rules", "reward_model", "embedding", "llm"] = "rules"
    llm: LLMJudgeConfig = LLMJudgeConfig()
    #: reward model folder or hub id; "tiny" builds (once, cached) a reward model trained on the tiny world
    reward_model: str = "tiny"
    #: sentence-embedding model for the reference-similarity judge, and the prompt meta key of the reference
    embedding_model: str = "all-MiniLM-L6-v2"
    reference_key: str = "answer"
    #: weight of each of the world's rule objectives in the combined reward (raw weighted sum); {} = the world's
    #: default weights. A reward model, embedding or LLM judge scores one objective of its own.
    weights: dict[str, NonNegativeFloat] = {}
    #: persistent judgment cache (SQLite): "auto" = $SELM_CACHE/judgments.sqlite, "off", or a file path
    cache: str = "auto"
    #: how objectives combine into the reward that ranks training replies: raw weighted "sum", or "lsc" =
    #: Σ log σ(s_i − r_ref,i(x)) with r_ref the lsc_quantile of the prompt's sampled replies (Wang et al., 2024)
    combine: Literal["sum", "lsc"] = "sum"
    lsc_quantile: float = Field(0.85, gt=0, lt=1)


class Pairs(Section):
    min_margin: float = Field(0.05, ge=0)  # drop pairs whose reward gap is smaller (ties always dropped)
    #: rank each prompt's dataset ``chosen`` and ``rejected`` replies together with the policy's samples and pair
    #: the best against the worst of all: the SELM paper's {policy reply, chosen, rejected} ranked by PairRM
    dataset_candidates: bool = False


class Select(Section):
    """Which comparisons are sent to the judge (Active Preference Learning)."""

    #: "all": judge every sample and pair best vs worst; otherwise an APL acquisition function under a budget
    acquisition: Literal["all", "random", "entropy", "certainty", "uncertainty", "hybrid"] = "all"
    label_budget: int | None = Field(None, ge=1)  # judge comparisons per round; required unless "all"
    hybrid_factor: int = Field(2, ge=1)  # hybrid: entropy shortlists label_budget × hybrid_factor prompts


class LoRA(Section):
    """Low-rank adapters (peft) for small GPUs: only the adapters train; the saved policy has them merged in."""

    enabled: bool = False
    r: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class Train(Section):
    loss: str = "selm"  # a key of LOSS_SPECS
    beta: float = Field(0.1, gt=0)
    alpha: float = Field(1e-3, ge=0)  # SELM's optimism weight (read by the losses whose spec names it)
    #: one learning rate for every round, or one per round (the paper decays it across iterations); each > 0
    learning_rate: PositiveFloatOrPerRound = 1e-3
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(32, ge=1)
    grad_accum: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)

    #: bf16 autocast (DeepSpeed: its bf16 mode) or fp32; "auto" = bf16 where the training device computes it
    #: natively, else fp32 (``selm.models.precision``). The reference pass runs in the same precision
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    #: recompute activations in the backward pass: less memory, about a third more compute. "auto" = on where
    #: training runs on a GPU (its memory bounds the batch and the model; TRL's default too), off on a CPU (memory
    #: is plentiful there and the recompute is the cost) — ``checkpointing``; what it chose is a run param
    gradient_checkpointing: bool | Literal["auto"] = "auto"
    #: the LM head a chunk of reply positions at a time (``selm.models.logprobs.chosen_token_logprobs``): the
    #: [rows, length, vocabulary] logits are never held. "auto" = on where training runs on a GPU (there the logits
    #: are much of the peak memory), off on a CPU until the kill matrix has passed with it on: its sums differ from
    #: the plain path's by ~1e-7, so as a CPU default it would move the seeded numbers (bit-reproducible run to run
    #: since its gather became an index_select) — ``head_in_chunks``; what it chose is a run param
    chunked_head: bool | Literal["auto"] = "auto"
    #: DeepSpeed through accelerate: "zero2" / "zero3" (selm/models/deepspeed/*.json) or a config file; "" = plain
    #: accelerate (DDP when launched with several processes)
    deepspeed: str = ""
    #: training processes on this machine (torchrun; one per GPU); > 1 trains with DDP, or DeepSpeed if set
    processes: int = Field(1, ge=1)
    lora: LoRA = LoRA()
    #: tokens per sequence: the prompt keeps its last max_prompt_length tokens, each reply is cut to fit max_length
    max_length: int = Field(1024, ge=2)
    max_prompt_length: int = Field(512, ge=1)

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, name: str) -> str:
        if name not in LOSS_SPECS:
            raise ValueError(f"no such loss {name!r}; one of {', '.join(sorted(LOSS_SPECS))}")
        return name

    @property
    def loss_spec(self) -> LossSpec:
        return LOSS_SPECS[self.loss]

    def loss_hyperparameters(self) -> dict[str, float]:
        """The values of this loss's own hyperparameters, by name (what ``LOSSES[loss]`` takes after the log-probs)."""
        return {name: getattr(self, name) for name in self.loss_spec.hyperparameters}

    def lr_for(self, round: int) -> float:
        return self.learning_rate if isinstance(self.learning_rate, float) else self.learning_rate[round - 1]

    def checkpointing(self, device: str) -> bool:
        """Whether training on ``device`` ("cpu", "cuda", "cuda:N") recomputes activations in the backward pass."""
        return _on_gpu_if_auto(self.gradient_checkpointing, device)

    def head_in_chunks(self, device: str) -> bool:
        """Whether training on ``device`` computes the LM head in chunks fused with the gather (``chunked_head``)."""
        return _on_gpu_if_auto(self.chunked_head, device)


def _on_gpu_if_auto(choice: bool | Literal["auto"], device: str) -> bool:
    """An explicit choice on any device; "auto": on where ``device`` is a GPU (a memory saving worth its cost there)."""
    return choice if isinstance(choice, bool) else device.startswith("cuda")


class BenchmarkJudge(Section):
    """Who grades MT-Bench and AlpacaEval: an offline embedding "proxy" (metrics named *_proxy_*), or an LLM judge
    with the official judge prompts (GPT-4 family for official numbers, or a ``vllm serve``d local judge)."""

    backend: Literal["proxy", "llm"] = "proxy"
    llm: LLMJudgeConfig = LLMJudgeConfig(model="gpt-4-0613", max_tokens=2048)
    embedding_model: str = "all-MiniLM-L6-v2"


class MTBench(Section):
    enabled: bool = False
    #: true = fail at validation (preflight) when the data is absent; false = skip the benchmark with a reason
    required: bool = False
    per_category: int | None = Field(None, ge=1)  # first N questions of each of the 8 categories; None = all 80
    max_new_tokens: int = Field(1024, ge=1)
    questions: str = ""  # path override of question.jsonl ("" = $SELM_DATA_DIR, else the official source)
    references: str = ""  # path override of the GPT-4 reference answers


class AlpacaEval(Section):
    enabled: bool = False
    #: true = fail at validation (preflight) when the data is absent; false = skip the benchmark with a reason
    required: bool = False
    limit: int | None = Field(None, ge=2)  # first N of the 805 instructions; None = all
    max_new_tokens: int = Field(2048, ge=1)
    baseline_outputs: str = ""  # path override of the gpt4_1106_preview model_outputs.json
    judge_prompt: str = ""  # path override of the alpaca_eval_clf_gpt4_turbo prompt


class LMEval(Section):
    """lm-eval-harness tasks: standard names need the hub; ``*_local`` ones read $SELM_DATA_DIR (see evals)."""

    tasks: list[str] = []
    #: true = fail at validation (preflight) when a task's data is absent; false = drop the task with a reason
    required: bool = False
    limit: int | None = Field(None, ge=1)  # examples per task; None = all
    batch_size: int = Field(32, ge=1)
    #: render prompts with the policy's chat template (instruction-tuned policies, e.g. for ifeval_local)
    apply_chat_template: bool = False
    max_gen_toks: int | None = Field(None, ge=1)  # cap on generation tasks' reply length; None = each task's own
    #: false = only the initial policy (round 0) and the last round's: the long benchmark where it matters
    every_round: bool = True
    #: the policy's weights while lm-eval runs: "auto" = bfloat16 where the device computes it natively, else
    #: float32 (as ``sampling.dtype``), or an explicit dtype
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


class Eval(Section):
    temperature: float = Field(1.0, gt=0)  # held-out replies are sampled like training replies
    batch_size: int = Field(600, ge=1)
    #: the round's exploration diagnostics (``explore_*``: KL to the reference, y0 log-ratio, diversity, best-of-n)
    diagnostics: bool = True
    judge: BenchmarkJudge = BenchmarkJudge()
    mt_bench: MTBench = MTBench()
    alpaca_eval: AlpacaEval = AlpacaEval()
    lm_eval: LMEval = LMEval()


class StepResources(Section):
    gpu: int = Field(0, ge=0)
    cpu: int = Field(1, ge=1)
    memory: int = Field(4096, ge=256)  # MB
    #: the step's ``@timeout``: an attempt still running after this long is stopped (and retried, if attempts are
    #: left). Generous: a bound on a hang (a judge endpoint that never answers), not a budget for slow hardware
    timeout_minutes: float = Field(720, gt=0)


class SampleResources(StepResources):  # each step's own defaults: overriding one value keeps the others
    gpu: int = Field(1, ge=0)
    cpu: int = Field(8, ge=1)
    memory: int = Field(64000, ge=256)


class SelectResources(StepResources):
    gpu: int = Field(1, ge=0)
    cpu: int = Field(4, ge=1)
    memory: int = Field(32000, ge=256)


class JudgeResources(StepResources):
    cpu: int = Field(4, ge=1)
    memory: int = Field(16000, ge=256)


class TrainResources(StepResources):
    gpu: int = Field(1, ge=0)
    cpu: int = Field(8, ge=1)
    memory: int = Field(64000, ge=256)
    timeout_minutes: float = Field(1440, gt=0)


class EvaluateResources(StepResources):
    gpu: int = Field(1, ge=0)
    cpu: int = Field(4, ge=1)
    memory: int = Field(32000, ge=256)


class Resources(Section):
    """How each flow step runs: its ``@resources`` (what ``--with kubernetes`` / ``batch`` request; local runs ignore
    them), its ``@timeout`` and the ``@retry`` of every step of both flows. Both flows read it as their Metaflow
    Config ``resources`` (``flow_settings``): SELMFlow from the recipe on the command line, each round from SELMFlow.
    """

    sample: SampleResources = SampleResources()
    select: SelectResources = SelectResources()
    judge: JudgeResources = JudgeResources()
    train: TrainResources = TrainResources()
    evaluate: EvaluateResources = EvaluateResources()
    #: ``@timeout`` of the light steps: each flow's ``start`` and ``end`` (SELMFlow's start also builds or imports the
    #: initial policy and evaluates it: it gets this plus ``evaluate``'s)
    light_timeout_minutes: float = Field(60, gt=0)
    #: attempts after the first, for every step of both flows (``@retry``): a lost node, a killed process, a timeout
    #: or a judge outage is retried; a permanent failure (``selm.errors``) never is. Metaflow allows at most 4
    retries: int = Field(2, ge=0, le=4)
    #: wait before a retry on Kubernetes / AWS Batch (Metaflow's ``minutes_between_retries``); local retries start at
    #: once
    retry_wait_minutes: int = Field(2, ge=0)

    def flow_settings(self) -> dict:
        """The flows' Config ``resources``: every step's resources with ``timeout_s`` (``@timeout`` takes whole
        seconds), ``retries``, ``retry_wait_minutes``, and SELMFlow's own steps: ``experiment_start`` (evaluate's
        resources: it evaluates the initial policy), ``experiment_round`` (evaluate's CPUs and memory, no GPU: it
        registers the round's policy; the longest a round can take: every step's timeout on every attempt) and
        ``experiment_end``, each with its ``timeout_s``."""

        def seconds(minutes: float) -> int:
            return max(1, round(minutes * 60))

        steps = {name: getattr(self, name) for name in ("sample", "select", "judge", "train", "evaluate")}
        light = self.light_timeout_minutes
        out: dict = {name: {**r.model_dump(), "timeout_s": seconds(r.timeout_minutes)} for name, r in steps.items()}
        out["light"] = {"timeout_s": seconds(light)}
        round_minutes = (self.retries + 1) * (2 * light + sum(r.timeout_minutes for r in steps.values()))
        # SELMFlow's start evaluates the initial policy: evaluate's resources, and its time on top of the light step's
        out["experiment_start"] = {**out["evaluate"], "timeout_s": seconds(light + self.evaluate.timeout_minutes)}
        # SELMFlow's run_round loads the round's policy on the host to register it in MLflow: evaluate's CPUs and
        # memory, no GPU; its time limit, the longest a round can take, plus registering the round's policy
        out["experiment_round"] = {"cpu": self.evaluate.cpu, "memory": self.evaluate.memory,
                                   "timeout_s": seconds(round_minutes + light)}  # fmt: skip
        out["experiment_end"] = {"timeout_s": seconds(light)}
        return {**out, "retries": self.retries, "retry_wait_minutes": self.retry_wait_minutes}


def flow_resources(text: str) -> dict:
    """Parser of the flows' Config ``resources``: a (partial) JSON ``[resources]`` section, validated, completed with
    defaults and turned into ``Resources.flow_settings``."""
    return Resources.model_validate(json.loads(text)).flow_settings()


class Hardware(Section):
    """The GPUs a real-scale recipe is meant for; ``python -m selm.pipeline.plan`` checks the memory estimate against
    them."""

    gpus: int = Field(1, ge=1)  # training data-parallel degree (DeepSpeed shards over these)
    gpu_memory_gb: float = Field(80.0, gt=0)


class Tracking(Section):
    mlflow_experiment: str = "selm"
    registered_model: str = "tiny-selm-policy"
    #: higher is better; the registered version that maximises it carries the alias "champion"
    champion_metric: str = "heldout/reward"

    @field_validator("champion_metric")
    @classmethod
    def _grouped_name(cls, name: str) -> str:
        """A recipe written before the metric names were grouped (``heldout_reward``) still names its metric."""
        return grouped(name)


class Recipe(Section):
    experiment: Experiment = Experiment()
    policy: Policy = Policy()
    world: World = World()
    sampling: Sampling = Sampling()
    judge: Judge = Judge()
    pairs: Pairs = Pairs()
    select: Select = Select()
    train: Train = Train()
    eval: Eval = Eval()
    hardware: Hardware = Hardware()
    resources: Resources = Resources()
    tracking: Tracking = Tracking()

    @model_validator(mode="after")
    def _per_round_lists_match_rounds(self):
        lr = self.train.learning_rate
        if isinstance(lr, list) and len(lr) != self.experiment.rounds:
            raise ValueError(
                f"train.learning_rate has {len(lr)} values but experiment.rounds is {self.experiment.rounds}"
            )
        if self.select.acquisition != "all" and self.select.label_budget is None:
            raise ValueError(f"select.label_budget is required with select.acquisition = {self.select.acquisition!r}")
        if self.train.max_prompt_length >= self.train.max_length:
            raise ValueError("train.max_prompt_length must be smaller than train.max_length")
        if self.sampling.n < 2 and not self.pairs.dataset_candidates:
            raise ValueError("sampling.n must be at least 2 to form pairs (or set pairs.dataset_candidates = true)")
        if self.pairs.dataset_candidates and self.select.acquisition != "all":
            raise ValueError("pairs.dataset_candidates ranks every candidate: it needs select.acquisition = 'all'")
        if self.judge.backend == "llm" and self.judge.cache == "off":
            raise ValueError(
                "judge.cache = 'off' with judge.backend = 'llm': LLM judgments are paid calls and must be kept "
                "as they arrive (use 'auto' or a file path)"
            )
        if self.select.acquisition in ("entropy", "hybrid") and self.sampling.temperature != 1.0:
            raise ValueError(
                "select.acquisition = entropy/hybrid estimates H(y|x) from samples at T=1: "
                f"sampling.temperature must be 1.0, not {self.sampling.temperature}"
            )
        return self

    def flat(self) -> dict[str, str]:
        """Dotted key → value, for MLflow params."""
        out = {}

        def walk(prefix: str, value) -> None:
            if isinstance(value, dict) and not prefix.endswith("weights"):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                out[prefix] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)

        walk("", self.model_dump())
        return out


class RecipeError(ValueError, Permanent):
    """A recipe that cannot be used; the message names every offending key."""


def _format(err: ValidationError, source: str) -> str:
    lines = [f"invalid recipe {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"] if p not in (_SCALAR, _PER_ROUND)) or "(top level)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        if key.endswith("api_key_env"):  # someone may have pasted the key itself: never echo it
            msg = "must be the NAME of the environment variable holding the key (e.g. OPENAI_API_KEY), not the key"
            lines.append(f"  {key}: {msg}")
            continue
        lines.append(f"  {key}: {msg}" + ("" if e["type"] == "extra_forbidden" else f" (got {e.get('input')!r})"))
    return "\n".join(lines)


def _parse_override(item: str) -> tuple[list[str], object]:
    """``section.key=value`` → (dotted key parts, value). The value is TOML; what is not TOML is a bare string
    (``train.loss=dpo``), or, in brackets, a list of bare strings: the shell strips the quotes of
    ``eval.lm_eval.tasks=["a","b"]``, so ``[a,b]`` must mean the same."""
    if "=" not in item:
        raise RecipeError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        text = raw.strip()
        if text.startswith("[") and text.endswith("]"):
            value = [s.strip().strip("'\"").strip() for s in text[1:-1].split(",")]
            value = [s for s in value if s]  # [] and a trailing comma give no empty names
        else:
            value = raw  # bare strings: train.loss=dpo
    return key.strip().split("."), value


def resolve_recipe_path(recipe: str | Path | None) -> tuple[str, str]:
    """(source name, TOML text) for a file path or the name of a recipe shipped in ``selm/recipes``."""
    recipe = str(recipe or DEFAULT_RECIPE)
    path = Path(recipe)
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise RecipeError(f"recipe file not found: {path}")
        return str(path), path.read_text()
    shipped = resources.files("selm") / "recipes" / f"{recipe}.toml"
    if not shipped.is_file():
        names = sorted(p.name.removesuffix(".toml") for p in (resources.files("selm") / "recipes").iterdir())
        raise RecipeError(f"no recipe named {recipe!r}; shipped recipes: {', '.join(names)}")
    return f"selm/recipes/{recipe}.toml", shipped.read_text()


def load_recipe(recipe: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Parse, override and validate a recipe; raises ``RecipeError`` naming the offending keys."""
    source, text = resolve_recipe_path(recipe)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{source}: not valid TOML: {e}") from e
    for item in overrides:
        keys, value = _parse_override(item)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise RecipeError(f"override {item!r}: {k!r} is not a section")
        node[keys[-1]] = value
    return recipe_from_dict(data, source)


def recipe_from_dict(data: dict, source: str = "(dict)") -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(_format(e, source)) from None


def recipe_from_json(text: str) -> Recipe:
    return recipe_from_dict(json.loads(text), "(json)")
