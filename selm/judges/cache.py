"""A persistent judgment cache: a judge is never paid twice for the same (judge, prompt, replies).

Stored in SQLite (one file, safe across processes), keyed by the judge id and a SHA-256 of the prompt and the
replies in order. A resumed or repeated round therefore hits the cache for every judgment it already made.

When the judge step runs in a pod with its own empty disk, the cache also has a ``mirror`` (an ``s3://`` folder of
the experiment's store, ``selm.storage``): every batch of new verdicts is written there as one object the moment it
is stored, and a cache opened on another machine starts from every object under the mirror — so a retried or resumed
judge step on a fresh disk finds each judgment already paid for.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import Sequence
from pathlib import Path

from selm import storage


def key(prompt: str, responses: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps([prompt, list(responses)]).encode()).hexdigest()


class JudgmentCache:
    """``get``/``put`` of a judgment (any JSON value), keyed by judge id, prompt and replies; ``mirror``: an
    ``s3://`` folder shared with the experiment's other tasks ("" for none)."""

    def __init__(self, path: str | Path, mirror: str = ""):
        self.path = Path(path).expanduser()
        self.mirror = storage.RemoteFolder(mirror) if mirror else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS judgments (judge TEXT, key TEXT, value TEXT, PRIMARY KEY (judge, key))"
        )
        self._db.commit()
        if self.mirror is not None:  # what other tasks of the experiment paid for
            rows = [tuple(row) for entries in self.mirror.get_json_all() for row in entries]
            self._db.executemany("INSERT OR IGNORE INTO judgments VALUES (?, ?, ?)", rows)
            self._db.commit()

    def get(self, judge: str, prompt: str, responses: Sequence[str]):
        row = self._db.execute(
            "SELECT value FROM judgments WHERE judge = ? AND key = ?", (judge, key(prompt, responses))
        ).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, judge: str, prompt: str, responses: Sequence[str], value) -> None:
        """Store at once (committed, and mirrored), so a crash right after a paid call loses nothing."""
        self.put_many(judge, [(prompt, responses, value)])

    def put_many(self, judge: str, verdicts: Sequence[tuple[str, Sequence[str], object]]) -> None:
        """Store a batch of (prompt, replies, verdict) at once: one commit, and one object on the mirror."""
        rows = [(judge, key(prompt, responses), json.dumps(value)) for prompt, responses, value in verdicts]
        self._db.executemany("INSERT OR REPLACE INTO judgments VALUES (?, ?, ?)", rows)
        self._db.commit()
        if self.mirror is not None and rows:
            self.mirror.put_json(f"{uuid.uuid4().hex}.json", rows)

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]

    def close(self) -> None:
        self._db.close()
        if self.mirror is not None:
            self.mirror.close()
