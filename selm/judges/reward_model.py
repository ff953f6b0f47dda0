"""A Hugging Face sequence-classification reward model as a judge: r(x, y) = the model's scalar output on the
chat-formatted conversation (user x, assistant y), scored in batches without gradients."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from selm.judges.base import ReplyJudge
from selm.models.chat import conversation_text
from selm.records import Prompt

OBJECTIVE = "reward_model"


class RewardModelJudge(ReplyJudge):
    """{"reward_model": r(x, y)} from ``AutoModelForSequenceClassification`` with one label."""

    weights = {OBJECTIVE: 1.0}

    def __init__(self, path: str | Path, device: str | None = None):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "right"  # the model reads the score at the last non-pad token
        self.model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
        #: cache key: the folder the weights came from (rename or set judge.id when retraining in place)
        self.id = f"rm:{Path(path).resolve()}"

    @torch.no_grad()
    def score(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[dict[str, float]]:
        texts = [conversation_text(self.tokenizer, p.text, r) for p, r in zip(prompts, replies, strict=True)]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
        scores = self.model(**enc).logits[:, 0].float().tolist()
        return [{OBJECTIVE: s} for s in scores]
