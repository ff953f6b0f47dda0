"""Documented means working: every shell command the README and ``docs/`` show either runs in the tests or says what
it needs that CI lacks (``# needs GPU``, ``# needs 40 min``, …); the cheap ones run here, from the repository's root,
as a reader would type them; the flow commands that cannot run here still name a recipe and overrides that load.
The newcomer's commands (a run, resume, cards, the servers, a second run and the comparison, the Python snippet)
run in ``tests/test_default_run.py``, in a scratch folder."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from documented import ELSEWHERE, FROM_ROOT, INSTALL, NEED_KINDS, NEWCOMER, PLOTS, SERVERS, commands


def shell_env() -> dict:
    """The environment a reader's shell has after the README's install: this interpreter's ``python`` first."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def test_every_documented_command_runs_in_the_tests_or_says_what_it_needs():
    tested = {*NEWCOMER, *SERVERS, *FROM_ROOT, *PLOTS, *INSTALL, *ELSEWHERE}
    found = commands()
    assert len(found) > 20, "the README and docs/ show their commands in ```bash blocks"
    untested = [f"{c.page}:{c.line}: {c.text}" for c in found if c.needs is None and c.text not in tested]
    assert not untested, "documented commands that no test runs (add them to tests/documented.py, or mark what " \
        "they need with '# needs …'):\n" + "\n".join(untested)  # fmt: skip
    vague = [f"{c.page}:{c.line}: # needs {c.needs}" for c in found if c.needs and not NEED_KINDS.match(c.needs)]
    assert not vague, "a '# needs' marker names a GPU, the network, a cluster, an API key or minutes:\n" + "\n".join(
        vague
    )
    shown = {c.text for c in found}
    stale = [c for c in [*NEWCOMER, *SERVERS, *FROM_ROOT, *PLOTS] if c not in shown]
    assert not stale, f"tests run commands the docs no longer show: {stale}"


def test_the_install_commands_are_the_ones_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    for command in INSTALL:
        for part in command.split("&&"):
            words = [w for w in shlex.split(part) if w not in ("--quiet",)]
            if words[0] == "source":
                continue
            assert " ".join(words[1:]) in " ".join(w for w in shlex.split(ci, comments=True) if w != "--quiet"), part


def test_the_needs_markers_are_read_from_the_pages(tmp_path):
    """The parser joins continuations and reads markers (a check of the checker)."""
    import documented

    page = tmp_path / "p.md"
    page.write_text("```bash\npython a.py \\\n  --x 1   # needs GPU\nexport X=1\npython b.py  # a comment\n```\n"
                    "```text\npython c.py\n```\n")  # fmt: skip
    pages, documented.ROOT = documented.PAGES, tmp_path
    documented.PAGES = [page]
    try:
        found = documented.commands()
    finally:
        documented.PAGES, documented.ROOT = pages, ROOT
    assert [(c.text, c.needs) for c in found] == [("python a.py --x 1", "GPU"), ("python b.py", None)]


@pytest.mark.parametrize("command", FROM_ROOT)
def test_a_documented_command_runs_from_the_repository_root(command, tmp_path):
    """Run in a folder laid out like the repository (its ``benchmarks/`` results), so that what a command writes
    (``comparison/``) stays out of the checkout."""
    (tmp_path / "benchmarks").symlink_to(ROOT / "benchmarks")
    p = subprocess.run(command, shell=True, cwd=tmp_path, env=shell_env(), capture_output=True, text=True,
                       timeout=600)  # fmt: skip
    assert p.returncode == 0, f"{command}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    assert p.stdout.strip(), "it printed its result"


def test_the_plots_in_the_docs_are_the_ones_their_command_draws(tmp_path):
    """docs/results.md shows PNGs from the exported runs: the documented commands, run in a folder laid out like the
    repository, draw exactly those files."""
    (tmp_path / "benchmarks").symlink_to(ROOT / "benchmarks")
    for command in PLOTS:
        p = subprocess.run(command, shell=True, cwd=tmp_path, env=shell_env(), capture_output=True, text=True,
                           timeout=600)  # fmt: skip
        assert p.returncode == 0, f"{command}\n{p.stderr[-3000:]}"
    drawn = sorted(str(f.relative_to(tmp_path)) for f in tmp_path.glob("docs/results/**/*.png"))
    committed = sorted(str(f.relative_to(ROOT)) for f in ROOT.glob("docs/results/**/*.png"))
    assert drawn == committed and len(drawn) == 8
    shown = (ROOT / "docs" / "results.md").read_text()
    assert all(f.removeprefix("docs/") in shown for f in committed), "every plot is shown on the page"


def test_documented_flow_runs_name_recipes_and_overrides_that_load():
    """The runs that need more than CI has still parse: a renamed key or recipe in the docs fails here."""
    from selm.config import load_recipe

    checked = 0
    for c in commands():
        words = shlex.split(c.text)
        if words[:2] != ["python", "flows/selm_flow.py"] or "run" not in words:
            continue
        recipe = words[words.index("--recipe") + 1] if "--recipe" in words else None
        overrides = shlex.split(words[words.index("--overrides") + 1]) if "--overrides" in words else []
        load_recipe(recipe, overrides)
        checked += 1
    assert checked >= 8
