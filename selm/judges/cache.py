"""A persistent judgment cache: a judge is never paid twice for the same (judge, prompt, replies).

Stored in SQLite (one file, safe across processes), keyed by the judge id and a SHA-256 of the prompt and the
replies in order. A resumed or repeated round therefore hits the cache for every judgment it already made.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path


def key(prompt: str, responses: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps([prompt, list(responses)]).encode()).hexdigest()


class JudgmentCache:
    """``get``/``put`` of a judgment (any JSON value), keyed by judge id, prompt and replies."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS judgments (judge TEXT, key TEXT, value TEXT, PRIMARY KEY (judge, key))"
        )
        self._db.commit()

    def get(self, judge: str, prompt: str, responses: Sequence[str]):
        row = self._db.execute(
            "SELECT value FROM judgments WHERE judge = ? AND key = ?", (judge, key(prompt, responses))
        ).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, judge: str, prompt: str, responses: Sequence[str], value) -> None:
        """Store at once (committed), so a crash right after a paid call loses nothing."""
        self._db.execute(
            "INSERT OR REPLACE INTO judgments VALUES (?, ?, ?)", (judge, key(prompt, responses), json.dumps(value))
        )
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]

    def close(self) -> None:
        self._db.close()
