"""`labkit labs copy`: copies, restores, updates untouched files, never overwrites a learner's edits."""
from __future__ import annotations

import json
import subprocess
import sys

from labkit.labs import copy_labs, lab_files, labs_dir


def _course(tmp_path, files):
    src = tmp_path / "course"
    src.mkdir(exist_ok=True)
    for name, text in files.items():
        (src / name).write_text(text)
    return src


def test_copy_restore_update_and_keep_edits(tmp_path):
    src = _course(tmp_path, {"01.ipynb": "v1-a", "02.ipynb": "v1-b", "03.ipynb": "v1-c"})
    dest = tmp_path / "student"
    r = copy_labs(dest, src)
    assert sorted(r.copied) == ["01.ipynb", "02.ipynb", "03.ipynb"]

    (dest / "01.ipynb").write_text("my work")  # learner edits
    (dest / "02.ipynb").unlink()  # learner deletes
    _course(tmp_path, {"01.ipynb": "v2-a", "03.ipynb": "v2-c"})  # course update

    r = copy_labs(dest, src)
    assert (dest / "01.ipynb").read_text() == "my work"
    assert r.kept == ["01.ipynb"]
    assert (dest / "01.updated.ipynb").read_text() == "v2-a"  # new version beside, not over, the learner's
    assert r.restored == ["02.ipynb"] and (dest / "02.ipynb").read_text() == "v1-b"
    assert r.updated == ["03.ipynb"] and (dest / "03.ipynb").read_text() == "v2-c"
    assert "skipped" in str(r) and "01.ipynb" in str(r)

    r = copy_labs(dest, src)  # idempotent: nothing new to write
    assert r.kept == ["01.ipynb"] and not r.beside and not r.updated and not r.copied
    assert json.loads((dest / ".labkit-labs.json").read_text())


def test_cli_copies_the_shipped_labs(tmp_path):
    assert any(p.name == "03_tokenization.ipynb" for p in lab_files())
    dest = tmp_path / "labs"
    out = subprocess.run([sys.executable, "-m", "labkit.cli", "labs", "copy", str(dest)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (dest / "03_tokenization.ipynb").read_bytes() == (labs_dir() / "03_tokenization.ipynb").read_bytes()
    assert "copied" in out.stdout
