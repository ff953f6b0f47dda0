"""Judges (``base.Judge``): a world's rule judges, reward models, sentence-embedding similarity, LLM judges;
and the judgment cache."""
