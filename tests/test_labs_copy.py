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


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "labkit.cli", "labs", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_cli_copies_student_versions_by_default(tmp_path):
    """`labkit labs copy DEST`: the student versions (what `labkit student build` writes), edits kept on re-run."""
    from labkit.grading import write_student_versions

    assert any(p.name == "03_tokenization.ipynb" for p in lab_files())
    dest = tmp_path / "labs"
    out = _cli("copy", str(dest))
    assert out.returncode == 0, out.stderr
    assert "student versions" in out.stdout and "copied" in out.stdout and "--instructor" in out.stdout
    write_student_versions(tmp_path / "built")
    mine = dest / "03_tokenization.ipynb"
    assert mine.read_bytes() == (tmp_path / "built" / "03_tokenization.ipynb").read_bytes()
    assert "### BEGIN SOLUTION" not in mine.read_text() and "# YOUR ANSWER HERE" in mine.read_text()
    assert {p.name for p in dest.glob("*.ipynb")} == {p.name for p in labs_dir().glob("*.ipynb")}

    answered = mine.read_text().replace("answer = ...  # YOUR ANSWER HERE", "answer = 4  # mine", 1)
    mine.write_text(answered)
    (dest / "00_welcome.ipynb").unlink()
    out = _cli("copy", str(dest))  # rebuilt from scratch: the same bytes, so the manifest still knows them
    assert out.returncode == 0, out.stderr
    assert mine.read_text() == answered and "your version is kept" in out.stdout
    assert "restored" in out.stdout and "### BEGIN SOLUTION" not in (dest / "00_welcome.ipynb").read_text()
    assert not (dest / "03_tokenization.updated.ipynb").exists()  # the course did not change: nothing beside
    assert "already up to date" in out.stdout


def test_cli_copies_instructor_versions_only_when_asked(tmp_path):
    dest = tmp_path / "solved"
    out = _cli("copy", "--instructor", str(dest))
    assert out.returncode == 0, out.stderr
    assert "instructor versions" in out.stdout
    assert (dest / "03_tokenization.ipynb").read_bytes() == (labs_dir() / "03_tokenization.ipynb").read_bytes()


def test_copy_into_the_labs_own_folder_is_refused(tmp_path):
    for args in (("copy", str(labs_dir())), ("copy", "--instructor", str(labs_dir()))):
        out = _cli(*args)
        assert out.returncode == 2 and "pick another destination" in out.stderr, out
        assert "Traceback" not in out.stderr
