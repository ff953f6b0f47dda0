"""Where a step leaves what a later step reads: its own disk when every task shares one, S3 when tasks do not.

A policy is handed from step to step (and round to round) as a string: a local folder, a hub id, or an ``s3://``
URI. On one machine (Metaflow's local datastore) every hand-off is the folder itself and nothing is copied. When the
tasks run in pods with their own empty disks (``--datastore s3 … --with kubernetes``), the step that writes a policy
``publish``-es it under the experiment's store URI and hands over that URI; the step that reads it asks for a
``local_copy``, downloaded once per machine into ``$SELM_CACHE/remote``. The judgment cache mirrors its entries
under the same store (``selm.judges.cache``), so a judge step retried in a fresh pod pays for nothing twice.

S3 goes through Metaflow's own client (``metaflow.S3``: the credentials, endpoint and retries of the datastore).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from selm.cache import cache_dir

#: what to configure when a hand-off needs a store the tasks share
STORE_HINT = ("set experiment.output_uri = 's3://bucket/prefix' in the recipe, or run with --datastore s3 "
              "(its root then holds them)")  # fmt: skip


def is_remote(location: str) -> bool:
    return location.startswith("s3://")


def experiment_store(output_uri: str, datastore: str | None, datastore_root: str | None, experiment_id: str) -> str:
    """The URI under which the experiment's steps hand each other policies and judgments, or "" when they share a
    disk. ``output_uri`` (the recipe's ``experiment.output_uri``) wins; else a non-local Metaflow datastore's root
    (``<root>/selm``); else "". The experiment id is appended, so experiments never share a folder."""
    root = output_uri or (f"{datastore_root.rstrip('/')}/selm" if datastore not in (None, "local") and datastore_root
                          else "")  # fmt: skip
    if root and not is_remote(root):
        raise ValueError(f"the store of experiment {experiment_id!r} is {root!r}: only s3:// is supported "
                         f"({STORE_HINT})")  # fmt: skip
    return f"{root.rstrip('/')}/{experiment_id}" if root else ""


def publish(folder: str | Path, store: str, key: str) -> str:
    """Hand ``folder`` to later steps: its absolute path when ``store`` is "" (a shared disk), else its files
    uploaded to ``<store>/<key>/`` and that URI."""
    if not store:
        return str(Path(folder).resolve())
    uri = f"{store}/{key}"
    files = [(str(p.relative_to(folder)), str(p)) for p in sorted(Path(folder).rglob("*")) if p.is_file()]
    with _s3(uri) as s3:
        s3.put_files(files)
    return uri


def local_copy(location: str | Path) -> str:
    """A folder on this machine holding ``location``: an ``s3://`` folder is downloaded once (atomically) into
    ``$SELM_CACHE/remote``; a local folder is itself, and an absolute one that is not here is an error that says what
    to configure (the step that wrote it ran on another machine); anything else (a hub id) is returned as it is."""
    location = str(location)
    if is_remote(location):
        return str(_download(location))
    if os.path.isabs(location) and not os.path.exists(location):
        raise FileNotFoundError(
            f"{location} is not on this machine ({socket.gethostname()}): the step that wrote it ran elsewhere, on "
            f"a disk this task does not share. To hand models between tasks that do not share a disk, {STORE_HINT}."
        )
    return location


def _download(uri: str) -> Path:
    """``uri``'s files in ``$SELM_CACHE/remote/<hash>``, fetched unless a complete copy is already there."""
    dest = cache_dir() / "remote" / hashlib.sha256(uri.encode()).hexdigest()[:24]
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp, _s3(uri, tmproot=tmp) as s3:
        objects = s3.get_recursive([""])
        if not objects:
            raise FileNotFoundError(f"nothing at {uri}: was the step that writes it run with this store?")
        staged = Path(tmp) / "folder"
        for obj in objects:
            target = staged / obj.key.removeprefix(uri).lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(obj.path, target)
        try:
            staged.rename(dest)  # all or nothing: a killed download leaves no half folder
        except OSError:
            if not dest.exists():  # another process of this machine finished first: its copy is as good
                raise
    return dest


class RemoteFolder:
    """An ``s3://`` folder of small JSON objects, its client held open: many small writes, one connection."""

    def __init__(self, uri: str):
        self.uri = uri
        self._s3 = _s3(uri)

    def put_json(self, key: str, value: Any) -> None:
        self._s3.put(key, json.dumps(value))

    def get_json_all(self) -> list[Any]:
        """Every object under the folder, parsed (none when it is empty)."""
        with tempfile.TemporaryDirectory() as tmp, _s3(self.uri, tmproot=tmp) as s3:
            return [json.loads(Path(o.path).read_text()) for o in s3.get_recursive([""]) if o.exists]

    def close(self) -> None:
        self._s3.close()


def _s3(uri: str, tmproot: str | None = None):
    from metaflow import S3

    # metaflow-stubs declare S3() without the keyword arguments its docs and code take
    return S3(s3root=uri, tmproot=tmproot or tempfile.gettempdir())  # type: ignore[call-arg]
