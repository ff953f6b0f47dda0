"""Which failures a retry can fix.

A flow step is retried (Metaflow's ``@retry``, ``[resources] retries``) when it fails for a reason that may pass:
a lost node, a killed process, a judge endpoint down for a while, a step stopped by its ``@timeout``. A failure that
would happen again in the same way is *permanent*: its step fails on its first attempt, with its message, instead of
being run again for nothing. ``selm.orchestration.exit_code_of`` turns a permanent failure into the exit status with
which Metaflow does not retry a task.
"""

from __future__ import annotations

import errno


class Permanent(Exception):
    """Mixed into the errors a retry cannot fix: a bad recipe, a NaN loss, a judge that refuses the request."""


#: an ``OSError`` with one of these is permanent: the disk (or the quota) is full, a retry on the same volume fails too
_FULL = {errno.ENOSPC, errno.EDQUOT}


def permanent(error: BaseException | None) -> bool:
    """True if ``error``, or an error it was raised from or while handling, is one a retry cannot fix:
    a ``Permanent``, a full disk, or running out of (GPU) memory with the same model and batch (``torch``'s
    ``OutOfMemoryError``, matched by name so that this module needs no torch)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, Permanent) or (isinstance(error, OSError) and error.errno in _FULL):
            return True
        if type(error).__name__ == "OutOfMemoryError":
            return True
        error = error.__cause__ or error.__context__
    return False
