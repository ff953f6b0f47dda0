"""Where public evaluation and prompt data live: ``$SELM_DATA_DIR`` (default ``../shared/data``), read in place.

The data sets carry their own licenses and are never copied into the repository; every loader also accepts an
explicit file path.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    return Path(os.environ.get("SELM_DATA_DIR", "../shared/data")).expanduser()


def data_path(relative: str) -> Path:
    """``data_dir()/relative``, or a clear error saying how to point selm at the data."""
    path = data_dir() / relative
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: set SELM_DATA_DIR to the folder holding {relative!r} (see README: Data), "
            "or pass the file's path explicitly"
        )
    return path
