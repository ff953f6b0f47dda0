"""Sampling from a policy: batched Hugging Face ``generate`` (KV cache, left padding, chat template) or vLLM.

Both samplers return one ``Completion`` per generated reply with its token ids and token log-probs, so later stages
never re-tokenize text, and both decode the same ids to the same text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList, TemperatureLogitsWarper

from selm.models.batching import length_batches
from selm.models.cache import ModelCache
from selm.models.chat import encode_prompt
from selm.models.precision import compute_device, resolve
from selm.progress import progress
from selm.records import Completion, Prompt, number
from selm.storage import local_copy


def _eos_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    return {e for e in eos + [tokenizer.eos_token_id] if e is not None}


class Sampler(ABC):
    """What every backend shares: ``sample`` renders prompts with the chat template and calls ``sample_encoded``."""

    tokenizer: Any  # a transformers tokenizer with a chat template
    policy: str  # the policy's label on its replies
    truncated: int  # prompts cut to fit the context

    @abstractmethod
    def sample_encoded(
        self,
        encoded: Sequence[list[int]],
        prompt_keys: Sequence[str],
        n: int = 1,
        temperature: float = 1.0,
        max_new_tokens: int = 32,
        greedy: bool = False,
        round: int = 0,
        desc: str = "sample",
        seed: int | None = None,
    ) -> list[Completion]:
        """``n`` replies per already-encoded prompt (``prompt_keys`` name them), in prompt order."""

    def sample(
        self,
        prompts: Sequence[Prompt],
        n: int = 1,
        temperature: float = 1.0,
        max_new_tokens: int = 32,
        greedy: bool = False,
        round: int = 0,
        desc: str = "sample",
        seed: int | None = None,
    ) -> list[Completion]:
        """``n`` replies per prompt (all replies of a prompt are adjacent, prompts keep their order), with their ids
        (``records.number``: ``<prompt id>/sample/<k>`` or ``<prompt id>/greedy/<k>``).

        Sampling is from the full distribution at ``temperature`` (no top-k / top-p), so ``token_logprobs``
        are log-probs under exactly the distribution that was sampled; with ``greedy`` n must be 1. A ``seed``
        makes the draw reproducible (on the same machine).
        """
        encoded = [encode_prompt(self.tokenizer, p.text) for p in prompts]
        replies = self.sample_encoded(
            encoded, [p.id for p in prompts], n, temperature, max_new_tokens, greedy, round, desc, seed
        )
        return number(replies)

    def _completion(self, token_ids: list[int], logprobs: list[float], greedy: bool, prompt_key: str, round: int):
        """A generated reply as a record; every backend decodes the same way, so the same ids give the same text."""
        return Completion(
            prompt_id=prompt_key,
            text=self.tokenizer.decode(token_ids, skip_special_tokens=True).strip(),
            token_ids=token_ids,
            token_logprobs=logprobs,
            kind="greedy" if greedy else "sample",
            round=round,
            policy=self.policy,
        )


class HFSampler(Sampler):
    """Batched sampling with ``model.generate``; prompts in batches of similar length (``length_batches``), so a
    batch pads only a little."""

    def __init__(self, model, tokenizer, batch_size: int = 256, policy: str = "policy"):
        self.model, self.tokenizer, self.batch_size, self.policy = model, tokenizer, batch_size, policy
        self.eos = _eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos)
        self.truncated = 0  # prompts cut to fit the context (see sample_encoded)

    @torch.no_grad()
    def sample_encoded(
        self,
        encoded: Sequence[list[int]],
        prompt_keys: Sequence[str],
        n: int = 1,
        temperature: float = 1.0,
        max_new_tokens: int = 32,
        greedy: bool = False,
        round: int = 0,
        desc: str = "sample",
        seed: int | None = None,
    ) -> list[Completion]:
        """``sample`` for prompts already rendered to token ids (e.g. multi-turn conversations); ``prompt_keys``
        are the ``Prompt.id`` of each, carried into the replies.

        A prompt longer than the model's context less ``max_new_tokens`` keeps its *last* tokens (the latest turn
        and the assistant header) and is counted in ``self.truncated``."""
        if greedy and n != 1:
            raise ValueError("greedy decoding gives one reply per prompt; set n=1")
        if seed is not None:
            torch.manual_seed(seed)
        encoded, cut = truncate_prompts(
            encoded, getattr(self.model.config, "max_position_embeddings", None), max_new_tokens
        )
        self.truncated += cut
        results: list[list[Completion]] = [[] for _ in encoded]
        bar = progress(total=len(encoded) * n, desc=desc, unit="reply")
        for idx in length_batches([len(x) for x in encoded], self.batch_size, n):
            rows = [i for i in idx for _ in range(n)]  # generate returns the n replies of a prompt adjacent
            generated = self._generate([encoded[i] for i in idx], n, temperature, max_new_tokens, greedy)
            for i, (ids, logprobs) in zip(rows, generated, strict=True):
                results[i].append(self._completion(ids, logprobs, greedy, prompt_keys[i], round))
            bar.update(len(idx) * n)
        bar.close()
        return [c for per_prompt in results for c in per_prompt]

    def _generate(self, batch: list[list[int]], n, temperature, max_new_tokens, greedy) -> list[tuple[list, list]]:
        """(reply token ids up to and including end of turn, their log-probs) per returned sequence."""
        T = max(len(x) for x in batch)
        ids = torch.full((len(batch), T), self.pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        for r, x in enumerate(batch):  # left padding: the last prompt token sits at the same position in every row
            ids[r, T - len(x) :] = torch.tensor(x)
            attn[r, T - len(x) :] = 1
        generate = dict(
            input_ids=ids.to(self.model.device),
            attention_mask=attn.to(self.model.device),
            max_new_tokens=max_new_tokens,
            num_return_sequences=n,
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.eos),
            use_cache=True,
        )
        sequences, logp = self._draw(generate, temperature, greedy)
        replies = []
        for row, lp in zip(sequences[:, T:].tolist(), logp.tolist()):
            end = next((k + 1 for k, t in enumerate(row) if t in self.eos), len(row))
            replies.append((row[:end], lp[:end]))
        return replies

    def _draw(self, generate: dict, temperature: float, greedy: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``model.generate(**generate)`` sampling from softmax(z / T) — nothing else: no top-k, no top-p — or
        greedily: (sequences, [rows, new tokens] log-prob of each new token under that distribution), on the CPU.
        The temperature is applied here, ahead of the recorder, because generate applies its own after every
        processor it is handed."""
        recorder = ChosenTokenLogprobs()
        warp = [TemperatureLogitsWarper(temperature)] if not greedy and temperature != 1.0 else []
        sampling = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0)
        sequences = self.model.generate(
            **generate,
            logits_processor=LogitsProcessorList([*warp, recorder]),
            **(dict(do_sample=False) if greedy else sampling),
        )
        return sequences.cpu(), recorder.logprobs(sequences).cpu()


class ChosenTokenLogprobs(LogitsProcessor):
    """Records log p(chosen token) under the distribution each step samples from, without keeping any step's scores.

    A logits processor sees step t's scores before its token is picked, and that token as the last input id at step
    t + 1: so it keeps one step's log-softmax [rows, vocabulary] and reads it there (``logprobs`` reads the last).
    Keeping every step's full scores instead (``output_scores`` + ``compute_transition_scores``) holds
    steps × rows × vocabulary fp32 floats to the end: 12.9 GB at 512 rows × 128 steps × 49k tokens."""

    def __init__(self):
        self.previous: torch.Tensor | None = None
        self.chosen: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.previous is not None:
            self.chosen.append(self.previous.gather(-1, input_ids[:, -1:]).squeeze(-1))
        self.previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def logprobs(self, sequences: torch.Tensor) -> torch.Tensor:
        """[rows, generated tokens]: the log-prob of each generated token (padding after a row's end included)."""
        if self.previous is None:
            return torch.zeros((sequences.shape[0], 0))
        return torch.stack([*self.chosen, self.previous.gather(-1, sequences[:, -1:]).squeeze(-1)], dim=1)


def truncate_prompts(encoded: Sequence[list[int]], context: int | None, max_new_tokens: int) -> tuple[list, int]:
    """Prompts cut to their last ``context − max_new_tokens`` tokens (the latest turn and the assistant header), and
    how many were cut."""
    if not context:
        return list(encoded), 0
    room = max(1, context - max_new_tokens)
    return [x[-room:] for x in encoded], sum(len(x) > room for x in encoded)


class VLLMSampler(Sampler):
    """The ``HFSampler`` contract on vLLM (``LLM.generate`` with ``SamplingParams(n=…, logprobs=0)``): n replies
    per prompt, adjacent and in prompt order, with token ids and the log-prob of each sampled token under the
    sampling distribution, decoded exactly as ``HFSampler`` decodes. ``llm_kwargs`` go to ``vllm.LLM``
    (``tensor_parallel_size``, ``gpu_memory_utilization``, …)."""

    def __init__(self, path: str | Path, batch_size: int = 256, policy: str = "policy", **llm_kwargs):
        from transformers import AutoTokenizer
        from vllm import LLM

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.llm = LLM(model=str(path), **{"dtype": "auto", "seed": 0, **llm_kwargs})
        self.policy, self.batch_size = policy, batch_size  # vLLM batches by itself; kept for the same signature
        eos = self.llm.llm_engine.get_tokenizer().eos_token_id
        self.eos = sorted({e for e in (eos, self.tokenizer.eos_token_id) if e is not None})
        self.context = self.llm.llm_engine.model_config.max_model_len
        self.truncated = 0

    def sample_encoded(
        self,
        encoded,
        prompt_keys,
        n=1,
        temperature=1.0,
        max_new_tokens=32,
        greedy=False,
        round=0,
        desc="sample",
        seed=None,
    ) -> list[Completion]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if greedy and n != 1:
            raise ValueError("greedy decoding gives one reply per prompt; set n=1")
        encoded, cut = truncate_prompts(encoded, self.context, max_new_tokens)
        self.truncated += cut
        params = SamplingParams(
            n=n,
            temperature=0.0 if greedy else temperature,
            top_p=1.0,
            max_tokens=max_new_tokens,
            logprobs=0,
            seed=seed,
            stop_token_ids=self.eos,
        )
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(x)) for x in encoded], params, use_tqdm=True)
        return [
            self._completion(
                list(o.token_ids), [step[t].logprob for step, t in zip(o.logprobs, o.token_ids)], greedy, key, round
            )
            for key, out in zip(prompt_keys, outputs)
            for o in out.outputs
        ]


def sampling_backend(backend: str) -> str:
    """``sampling.backend`` resolved: "auto" = vLLM when a GPU and vllm are present, else Hugging Face generate."""
    if backend != "auto":
        return backend
    import importlib.util

    return "vllm" if torch.cuda.is_available() and importlib.util.find_spec("vllm") else "hf"


def make_sampler(
    backend: str, path: str | Path, batch_size: int, policy: str, dtype: str = "auto", models: ModelCache | None = None
):
    """The sampler of ``sampling.backend`` (``sampling_backend``) with the weights in ``dtype``: explicit, or "auto"
    = the precision the device computes natively (``selm.models.precision``). Hugging Face generate runs the step's
    model (``models``: loaded once, on the step's device); vLLM loads its own engine."""
    if sampling_backend(backend) == "vllm":
        return VLLMSampler(local_copy(path), batch_size, policy, dtype=resolve(dtype, compute_device()))
    model, tokenizer = (models or ModelCache()).get(path, dtype)
    return HFSampler(model, tokenizer, batch_size=batch_size, policy=policy)
