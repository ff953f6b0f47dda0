"""A test-only Metaflow step decorator: each task runs on a private disk, as a pod on a cluster does.

    PYTHONPATH=tests python flows/selm_flow.py --datastore s3 run --with private_disk.private_disk

Before the step's code runs, the task moves into a fresh folder of its own under ``$SELM_TEST_DISKS`` and points
``HOME``, ``SELM_CACHE`` and the temporary folder there: nothing it writes is seen by another task, and nothing another
task wrote is at the path it was given — so any hand-off through a local path fails, as it would between pods.
Metaflow's own local metadata stays where ``METAFLOW_DATASTORE_SYSROOT_LOCAL`` says (it stands in for the metadata
service a cluster has).
"""

import os
import tempfile
from pathlib import Path

from metaflow.user_decorators.user_step_decorator import UserStepDecorator


class private_disk(UserStepDecorator):
    def pre_step(self, step_name, flow, inputs=None):
        disk = Path(tempfile.mkdtemp(prefix=f"{step_name}-", dir=os.environ["SELM_TEST_DISKS"]))
        for name in ("home", "cache", "tmp"):
            (disk / name).mkdir()
        os.environ.update(HOME=str(disk / "home"), SELM_CACHE=str(disk / "cache"), TMPDIR=str(disk / "tmp"))
        tempfile.tempdir = None  # the next temporary file goes to the new TMPDIR
        os.chdir(disk)
