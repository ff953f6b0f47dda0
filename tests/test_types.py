"""The type check (mypy, configured in pyproject.toml: the package, the flows and evals, pydantic's plugin,
Metaflow's stubs): zero errors in the code — and a hand-off of the wrong type, such as a dict of timings where a
float is expected, is one."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WRONG = """
from selm.report import experiment


def start_card(card, recipe, round0) -> None:
    timings: dict[str, float] = {"time/initial_policy_s": 1.0}
    experiment.start(card, "run", "tiny_selm", recipe, "exp", "policy", round0, {}, timings, {})
"""


def test_the_code_type_checks_and_a_wrong_hand_off_does_not(tmp_path):
    bad = tmp_path / "wrong_hand_off.py"
    bad.write_text(WRONG)
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent)) or "mypy"
    r = subprocess.run(
        [mypy, "--cache-dir", str(tmp_path / "cache"), "selm", "flows", "evals", str(bad)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    errors = [line for line in r.stdout.splitlines() if re.search(r":\d+: error:", line)]
    assert errors and all(line.startswith(str(bad)) for line in errors), r.stdout  # nothing in selm, flows, evals
    assert (
        len(errors) == 1
        and 'Argument 9 to "start" has incompatible type "dict[str, float]"; expected "float"' in (errors[0])
    )
