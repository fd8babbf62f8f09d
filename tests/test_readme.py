"""The README's commands, run as written, and the learner's path it describes.

Every line of the README's ```bash blocks runs (in order, in a fresh HOME and working folder, with this venv's
``labkit`` first on PATH) unless ``SKIP`` names it with the reason; a skipped command must still be in the
README, so the list cannot go stale. ``make lab``'s recipe is checked with ``make -n`` and its copy step run.
The learner's path: copy the labs as the README says, open lab 03 (exercises unanswered), answer one and have it
checked, reveal another's solution with the README's own snippet, and find both in the progress store.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BIN = Path(sys.executable).parent

# command (as the README writes it, without its comment) -> why a test cannot run it unattended
SKIP = {
    "make lab": "starts JupyterLab and serves until stopped (its recipe is checked with `make -n` below)",
    "make lab-instructor": "starts JupyterLab on labs/ and serves until stopped (recipe checked with `make -n`)",
    "make test": "runs the whole suite, this test included, and installs system packages",
    "make lock": "re-resolves requirements.lock against the package index (tests/test_lock.py and `make test`'s "
                 "`deploy/lock.sh check` cover it)",
    "make upgrade": "re-resolves, reinstalls and runs the whole suite, this test included",
}


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README.read_text(), flags=re.M | re.S)


def _commands() -> dict[str, str]:
    """Each command of the README's bash blocks: its words without the comment -> the line as written."""
    out = {}
    for block in _blocks("bash"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                out[" ".join(words)] = line
    return out


COMMANDS = _commands()
RUN = [c for c in COMMANDS if c not in SKIP]


def test_readme_has_commands_and_every_skip_is_still_there():
    assert RUN, "no runnable command found in the README's bash blocks"
    stale = [c for c in SKIP if c not in COMMANDS]
    assert not stale, f"SKIP names commands the README no longer shows: {stale}"
    assert "make lab-instructor" in COMMANDS, "the README must give instructors their one command"


@pytest.fixture(scope="module")
def fresh_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("readme_home")
    (home / "work").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "JPY_", "XDG_"))}
    env.update(HOME=str(home), LABKIT_HOME=str(home / ".labkit"), HF_HUB_OFFLINE="1",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return home, env


@pytest.mark.parametrize("command", RUN)
def test_readme_command_runs(command, fresh_home):
    home, env = fresh_home
    done = subprocess.run(["bash", "-c", COMMANDS[command]], cwd=home / "work", env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, (f"README command failed: {command}\n--- stdout\n{done.stdout[-3000:]}\n"
                                  f"--- stderr\n{done.stderr[-3000:]}")


def _make_n(target: str) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_make_lab_copies_student_versions_into_an_ignored_workspace(tmp_path):
    lines = _make_n("lab")
    copy = [ln for ln in lines if " labs copy " in ln]
    jupyter = [ln for ln in lines if "jupyter lab" in ln]
    assert len(copy) == 1 and len(jupyter) == 1, lines
    words = shlex.split(copy[0])
    assert "--instructor" not in words
    workspace = words[-1]
    assert f"--notebook-dir={workspace}" in jupyter[0]
    ignored = subprocess.run(["git", "check-ignore", "-q", f"{workspace}/03_tokenization.ipynb"], cwd=ROOT)
    assert ignored.returncode == 0, f"{workspace}/ is not git-ignored: a learner's answers would show in git status"
    # the recipe's copy step, run in a scratch folder: student versions
    done = subprocess.run([str(BIN / "labkit"), *words[1:]], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    lab = (tmp_path / workspace / "03_tokenization.ipynb").read_text()
    assert "### BEGIN SOLUTION" not in lab and "# YOUR ANSWER HERE" in lab


def test_make_lab_instructor_opens_labs():
    jupyter = [ln for ln in _make_n("lab-instructor") if "jupyter lab" in ln]
    assert len(jupyter) == 1 and "--notebook-dir=labs" in jupyter[0], jupyter
    assert not any(" labs copy " in ln for ln in _make_n("lab-instructor"))


def _readme_reveal_snippet() -> str:
    snippets = [b for b in _blocks("python") if "solution(" in b]
    assert len(snippets) == 1, "the README shows how to reveal a solution in exactly one python block"
    return snippets[0]


def _outputs(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        for kind in ("text/markdown", "text/plain"):
            parts.append(out.get("data", {}).get(kind, ""))
        if out.get("output_type") == "error":
            parts.append(f"{out['ename']}: {out['evalue']}")
    return "\n".join(parts)


@pytest.mark.slow
def test_learner_path_in_lab03(tmp_path, monkeypatch):
    """README: `labkit labs copy ~/labkit-labs`, open lab 03, answer Exercise 1, reveal Exercise 2, use it."""
    from nbclient import NotebookClient

    from labkit import progress

    copy_cmd = next(c for c in RUN if c.startswith("labkit labs copy") and "--instructor" not in c)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "labkit-home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    done = subprocess.run(["bash", "-c", COMMANDS[copy_cmd]], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"))
    assert done.returncode == 0, done.stderr
    path = Path(os.path.expanduser(shlex.split(copy_cmd)[-1])) / "03_tokenization.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "### BEGIN SOLUTION" not in path.read_text()
    ex1 = next(c for c in code if 'check("Exercise 1"' in c.source)
    ex2 = next(c for c in code if 'check("Exercise 2"' in c.source)
    assert "answer = ...  # YOUR ANSWER HERE" in ex1.source and "bpe_encode = ...  # YOUR ANSWER HERE" in ex2.source

    # the learner answers Exercise 1, and runs the lab up to Exercise 2 with the README's reveal cell before it
    ex1.source = ex1.source.replace("answer = ...  # YOUR ANSWER HERE", "answer = 4  # my answer")
    reveal = nbformat.v4.new_code_cell(_readme_reveal_snippet())
    stop = nb.cells.index(ex2)
    nb.cells = nb.cells[:stop] + [reveal]
    monkeypatch.setenv("JPY_SESSION_NAME", str(path))  # what JupyterLab's server tells a notebook's kernel
    monkeypatch.delenv("LABKIT_STRICT_EXERCISES", raising=False)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
                   ).execute()
    assert "✅ Exercise 1: correct!" in _outputs(ex1)
    shown = _outputs(reveal)
    assert "Solution of Exercise 2 (03_tokenization)" in shown and "def bpe_encode(word, merges):" in shown
    assert "Exercise 3" not in shown  # one solution at a time

    store = progress.load()
    lab = store["labs"]["03_tokenization"]
    assert progress.status(lab["Exercise 1"]) == "solved" and lab["Exercise 1"]["tries"] == 1
    assert progress.status(lab["Exercise 2"]) == "revealed"
    assert set(lab) == {"Exercise 1", "Exercise 2"}  # the unanswered exercises were not attempts

    # the learner uses the revealed code in Exercise 2's cell: checked correct, solved with help
    revealed = re.search(r"```python\n(.*?)```", shown, re.S).group(1)
    ex2.source = ex2.source.replace("bpe_encode = ...  # YOUR ANSWER HERE", revealed)
    nb.cells.append(ex2)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
                   ).execute()
    assert "✅ Exercise 2: correct!" in _outputs(ex2)
    lab = json.loads((tmp_path / "labkit-home" / "progress.json").read_text())["labs"]["03_tokenization"]
    assert progress.status(lab["Exercise 2"]) == "solved with help"
    assert progress.status(lab["Exercise 1"]) == "solved"
