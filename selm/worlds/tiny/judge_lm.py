"""A tiny *judge language model* for the tiny world: a chat LM that reads a filled-in judge template
(``tiny-pairwise`` or ``tiny-single``) and answers ``[[A]]``/``[[B]]``/``[[C]]`` or ``Rating: [[N]]``.

It is trained on verdicts derived from the rule judges (weighted sum: correctness 1, conciseness ½, safety 1), so it
is an imperfect LLM judge that fits the tiny world. Served by any OpenAI-compatible server (``transformers serve``,
``vllm serve``), it lets the LLM-judge backend run end to end offline on a CPU. Built once and cached.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

from selm.cache import cached_build
from selm.judges.llm import load_template
from selm.models.chat import encode_prompt, encode_response
from selm.models.checkpoint import atomic_save_pretrained
from selm.worlds.tiny import rules
from selm.worlds.tiny.policy import (
    SPECIAL_TOKENS,
    TinyPolicySpec,
    build_model,
    build_tokenizer,
    train_lm,
)
from selm.worlds.tiny.tasks import noisy_demonstration, sample_tasks

log = logging.getLogger(__name__)

TIE_MARGIN = 0.05

#: the judge LM reuses the tiny policy's architecture and trainer with its own vocabulary and context length
DEFAULT_SPEC = TinyPolicySpec(
    vocab_size=400, max_positions=192, demos=12000, pretrain_steps=150, sft_steps=450, seed=3, version=1
)


def _reward(task, reply: str) -> float:
    return rules.weighted(rules.score(task, reply))


def verdict_examples(spec: TinyPolicySpec) -> list[tuple[str, str]]:
    """(filled template, verdict) examples: half pairwise, half single ratings, on pairs of noisy demos."""
    pairwise, single = load_template("tiny-pairwise"), load_template("tiny-single")
    rng = random.Random(spec.seed)
    out = []
    for i, task in enumerate(sample_tasks(spec.demos, "train", seed=spec.seed)):
        a = noisy_demonstration(task, rng)
        if i % 2:
            rating = 1 + round(9 * _reward(task, a) / sum(rules.WEIGHTS.values()))
            out.append((single.render(single.fields(task.prompt, [a])), f"Rating: [[{rating}]]"))
            continue
        b = noisy_demonstration(task, rng)
        gap = _reward(task, a) - _reward(task, b)
        verdict = "A" if gap > TIE_MARGIN else "B" if gap < -TIE_MARGIN else "C"
        out.append((pairwise.render(pairwise.fields(task.prompt, [a, b])), f"[[{verdict}]]"))
    return out


def build_tiny_judge_lm(spec: TinyPolicySpec, out_dir: Path) -> Path:
    torch.manual_seed(spec.seed)
    examples = verdict_examples(spec)
    tokenizer = build_tokenizer([f"{p} {v}" for p, v in examples] + SPECIAL_TOKENS, spec.vocab_size, spec.max_positions)
    data = [(encode_prompt(tokenizer, p), encode_response(tokenizer, v)) for p, v in examples]
    data = [(p, r) for p, r in data if len(p) + len(r) <= spec.max_positions]
    model = build_model(spec, tokenizer)
    pre = train_lm(
        model, tokenizer, data, spec.pretrain_steps, spec, response_only=False, desc="tiny judge LM: pretrain"
    )
    sft = train_lm(model, tokenizer, data, spec.sft_steps, spec, response_only=True, desc="tiny judge: verdicts")
    log.info("tiny judge LM built: pretrain loss %.3f, verdict loss %.3f", pre, sft)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.do_sample = False
    return atomic_save_pretrained(out_dir, model, tokenizer, extra={"tiny_judge_lm_spec.json": asdict(spec)})


def tiny_judge_lm_path(spec: TinyPolicySpec = DEFAULT_SPEC, **changes) -> Path:
    """Path of the cached tiny judge LM, building it first if needed (``changes`` tweak the spec, e.g. steps)."""
    spec = replace(spec, **changes)
    return cached_build(f"tiny-judge-lm-{spec.key()}", lambda path: build_tiny_judge_lm(spec, path))


def serve_command(path: str | Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """``transformers serve`` (an OpenAI-compatible server, CPU) for a local chat model folder."""
    launcher = "import sys; from transformers.cli.transformers import main; sys.exit(main())"
    return [sys.executable, "-c", launcher, "serve", "--device", "cpu", "--host", host, "--port", str(port), str(path)]


if __name__ == "__main__":
    # python -m selm.worlds.tiny.judge_lm [PORT]: build (once) and serve the tiny judge LM on 127.0.0.1
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    judge_path = tiny_judge_lm_path()
    print(f"serving {judge_path} at http://127.0.0.1:{port}/v1 (recipe: judge.llm.model = tiny)", flush=True)
    os.execv(sys.executable, serve_command(judge_path, port))
