"""Atomic checkpoints on a full disk: a clear error, nothing partial left behind, the previous checkpoint intact,
and the same save succeeding once there is room. The disk is a real 1 MB tmpfs where this machine allows mounting
one (root, as in CI here); elsewhere the save fails with a simulated ENOSPC instead."""

import errno
import subprocess

import pytest

from selm.models.checkpoint import atomic_save_pretrained


@pytest.fixture
def small_disk(tmp_path):
    """(folder on a 1 MB device, whether it is a real tmpfs)."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True)
    yield folder, mounted.returncode == 0
    if mounted.returncode == 0:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_fails_clearly_and_leaves_nothing_partial(small_disk, tiny_policy, tmp_path, monkeypatch):
    folder, real = small_disk
    model, tokenizer = tiny_policy
    if not real:  # no tmpfs here: the model's writer hits a full disk instead

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(model, "save_pretrained", full)
    (folder / "policy").mkdir()
    (folder / "policy" / "config.json").write_text("{}")  # the previous checkpoint, small enough to fit
    with pytest.raises(OSError) as err:
        atomic_save_pretrained(folder / "policy", model, tokenizer)
    assert err.value.errno == errno.ENOSPC and "free some space and `resume`" in str(err.value)
    assert sorted(p.name for p in folder.iterdir()) == ["policy"]  # no half-written temporary folder
    assert [p.name for p in (folder / "policy").iterdir()] == ["config.json"]  # the previous checkpoint is intact
    monkeypatch.undo()
    saved = atomic_save_pretrained(tmp_path / "roomy" / "policy", model, tokenizer)  # room again: it works
    assert (saved / "model.safetensors").exists()
