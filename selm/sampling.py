"""Sampling from a policy: batched Hugging Face ``generate`` with KV cache, left padding and the chat template.

``Sampler.sample`` returns one ``Completion`` per generated reply with its token ids and token log-probs, so
later stages never re-tokenize text. (The vLLM backend arrives with the scale-out issue and keeps this contract.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from selm.chat import encode_prompt
from selm.progress import progress
from selm.records import Completion, Prompt


def load_policy(path: str | Path, dtype=torch.float32):
    """Model and tokenizer from a ``save_pretrained`` folder (or a hub id on machines that have the hub)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model.eval()
    return model, tokenizer


def _eos_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    return {e for e in eos + [tokenizer.eos_token_id] if e is not None}


class HFSampler:
    """Batched sampling with ``model.generate``; prompts are sorted by length so a batch pads only a little."""

    def __init__(self, model, tokenizer, batch_size: int = 256, policy: str = "policy"):
        self.model, self.tokenizer, self.batch_size, self.policy = model, tokenizer, batch_size, policy
        self.eos = _eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos)
        self.truncated = 0  # prompts cut to fit the context (see sample_encoded)

    @torch.no_grad()
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
        """``n`` replies per prompt (all replies of a prompt are adjacent, prompts keep their order).

        Sampling is from the full distribution at ``temperature`` (no top-k / top-p), so ``token_logprobs``
        are log-probs under exactly the distribution that was sampled; with ``greedy`` n must be 1. A ``seed``
        makes the draw reproducible (on the same machine).
        """
        encoded = [encode_prompt(self.tokenizer, p.text) for p in prompts]
        return self.sample_encoded(
            encoded, [p.id for p in prompts], n, temperature, max_new_tokens, greedy, round, desc, seed
        )

    @torch.no_grad()
    def sample_encoded(
        self,
        encoded: Sequence[list[int]],
        prompt_ids: Sequence[str],
        n: int = 1,
        temperature: float = 1.0,
        max_new_tokens: int = 32,
        greedy: bool = False,
        round: int = 0,
        desc: str = "sample",
        seed: int | None = None,
    ) -> list[Completion]:
        """``sample`` for prompts already rendered to token ids (e.g. multi-turn conversations).

        A prompt longer than the model's context less ``max_new_tokens`` keeps its *last* tokens (the latest turn
        and the assistant header) and is counted in ``self.truncated``."""
        if greedy and n != 1:
            raise ValueError("greedy decoding gives one reply per prompt; set n=1")
        if seed is not None:
            torch.manual_seed(seed)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit:
            room = max(1, limit - max_new_tokens)
            self.truncated += sum(len(x) > room for x in encoded)
            encoded = [x[-room:] for x in encoded]
        prompts = [Prompt(pid, "") for pid in prompt_ids]
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        per_batch = max(1, self.batch_size // n)
        results: list[list[Completion]] = [[] for _ in prompts]
        bar = progress(total=len(prompts) * n, desc=desc, unit="reply")
        for start in range(0, len(order), per_batch):
            idx = order[start : start + per_batch]
            for i, comp in zip(
                [i for i in idx for _ in range(n)],
                self._generate([encoded[i] for i in idx], n, temperature, max_new_tokens, greedy),
            ):
                comp.prompt_id, comp.round = prompts[i].id, round
                results[i].append(comp)
            bar.update(len(idx) * n)
        bar.close()
        return [c for per_prompt in results for c in per_prompt]

    def _generate(self, batch: list[list[int]], n, temperature, max_new_tokens, greedy) -> list[Completion]:
        T = max(len(x) for x in batch)
        ids = torch.full((len(batch), T), self.pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        for r, x in enumerate(batch):  # left padding: the last prompt token sits at the same position in every row
            ids[r, T - len(x) :] = torch.tensor(x)
            attn[r, T - len(x) :] = 1
        kwargs = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
        out = self.model.generate(
            input_ids=ids.to(self.model.device),
            attention_mask=attn.to(self.model.device),
            max_new_tokens=max_new_tokens,
            num_return_sequences=n,
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.eos),
            output_scores=True,
            return_dict_in_generate=True,
            use_cache=True,
            **kwargs,
        )
        new = out.sequences[:, T:].cpu()
        logp = torch.stack(out.scores, 1).float().log_softmax(-1).gather(-1, new[:, :, None]).squeeze(-1).cpu()
        comps = []
        for row, lp in zip(new.tolist(), logp.tolist()):
            end = next((k + 1 for k, t in enumerate(row) if t in self.eos), len(row))
            text = self.tokenizer.decode(row[:end], skip_special_tokens=True).strip()
            comps.append(
                Completion(
                    prompt_id="",
                    text=text,
                    token_ids=row[:end],
                    token_logprobs=lp[:end],
                    kind="greedy" if greedy else "sample",
                    round=0,
                    policy=self.policy,
                )
            )
        return comps
