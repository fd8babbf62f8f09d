"""requirements.lock: the versions the suite runs on are the locked ones, and a lock that no longer matches
pyproject.toml is caught (deploy/lock.sh check; `make test` also runs its full re-resolution)."""
import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def test_the_installed_versions_are_the_locked_ones():
    pins = locked()
    assert len(pins) > 100 and pins["torch"] == "2.13.0"
    wrong = []
    for dist in importlib.metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if name in pins and dist.version.split("+")[0] != pins[name]:
            wrong.append(f"{name} {dist.version} (locked {pins[name]})")
    assert not wrong, "installed outside the lock (make setup reinstalls): " + ", ".join(wrong)


def _copy(tmp_path: Path) -> Path:
    (tmp_path / "deploy").mkdir()
    for rel in ("pyproject.toml", "constraints.txt", "requirements.lock", "deploy/lock.sh"):
        shutil.copy(ROOT / rel, tmp_path / rel)
    return tmp_path


def _check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(root / "deploy/lock.sh"), "check", "--fast"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})


def test_check_passes_on_the_repository(tmp_path):
    res = _check(_copy(tmp_path))
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("edit", [
    lambda s: s.replace('"networkx",', '"networkx",\n  "rich",'),            # a new dependency
    lambda s: s.replace('"transformers>=4.46"', '"transformers>=4.47"'),   # a changed bound
])
def test_check_catches_a_changed_pyproject(tmp_path, edit):
    root = _copy(tmp_path)
    text = (root / "pyproject.toml").read_text()
    changed = edit(text)
    assert changed != text
    (root / "pyproject.toml").write_text(changed)
    res = _check(root)
    assert res.returncode == 1
    assert "run make lock" in res.stderr


def test_check_catches_a_changed_torch_pin(tmp_path):
    root = _copy(tmp_path)
    (root / "constraints.txt").write_text("torch==2.14.0\n")
    assert _check(root).returncode == 1
