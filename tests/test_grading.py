"""Student versions of the labs (``labkit student``): solution regions -> ``NAME = ...``, hidden tests removed,
outputs cleared; the student version runs end to end; the nbgrader export carries valid cell metadata."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest

from labkit import grading
from labkit.errors import LabkitUsageError

ROOT = Path(__file__).resolve().parent.parent
LAB03 = ROOT / "labs" / "03_tokenization.ipynb"

SECRET = "SECRET_SOLUTION_TEXT"


def _nb(cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    for kind, src in cells:
        cell = nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
        if kind == "code":
            cell.outputs = [nbformat.v4.new_output("stream", text="old output\n")]
            cell.execution_count = 3
        cells_list = nb.cells
        cells_list.append(cell)
    return nb


def small_lab() -> nbformat.NotebookNode:
    return _nb([
        ("md", "# A tiny lab\nExercises below."),
        ("code", "from labkit.exercises import check\nimport math"),
        ("code", f"# Exercise 1\n### BEGIN SOLUTION\nanswer = len('{SECRET}') - len('{SECRET}') + 2\n### END SOLUTION\n"
                 "check('ex1', answer, expected=2, hint='two')"),
        ("code", "# Exercise 2: two names, tuple unpacking and an augmented assignment\n### BEGIN SOLUTION\n"
                 f"low, high = 1, 3  # {SECRET}\nhigh += 1\n### END SOLUTION\n"
                 "check('ex2a', low, expected=1)\ncheck('ex2b', high, expected=4)\n"
                 f"### BEGIN HIDDEN TESTS\nassert high == 4, '{SECRET}'\n### END HIDDEN TESTS"),
        ("code", "# Exercise 3: inside a block, and a function\nfor _ in range(1):\n    ### BEGIN SOLUTION\n"
                 f"    total = 41 + 1  # {SECRET}\n    ### END SOLUTION\n    pass\n"
                 "### BEGIN SOLUTION\ndef double(x):\n    return 2 * x\n### END SOLUTION\n"
                 "check('ex3', total, expected=42)\ncheck('ex3b', double, expected=lambda f: f(2) == 4)"),
        ("md", f"Explain why.\n### BEGIN SOLUTION\nBecause {SECRET}.\n### END SOLUTION"),
        ("code", "from labkit.exercises import score\nprint(score())"),
    ])


def test_assigned_names():
    assert grading.assigned_names("a = 1\nb, (c, *d) = x\ne += 1\nf: int = 2\nimport numpy as np\n"
                                  "def g(): pass\nclass H: pass\nobj.attr = 3\nd2[k] = 4\n(w := 5)") == \
        ["a", "b", "c", "d", "e", "f", "np", "g", "H", "w"]
    assert grading.assigned_names("    x = 1\n    y = 2\n") == ["x", "y"]  # indented region


def test_student_source_replaces_and_removes():
    src = "### BEGIN SOLUTION\nanswer = 6 * 7\n### END SOLUTION\ncheck('e', answer, expected=42)\n" \
          "### BEGIN HIDDEN TESTS\nassert answer == 42\n### END HIDDEN TESTS\n"
    out, info = grading.student_source(src)
    assert out == "answer = ...  # YOUR ANSWER HERE\ncheck('e', answer, expected=42)\n"
    assert info["solutions"] == 1 and info["hidden"] == 1 and info["answers"] == ["answer"]


def test_a_function_blank_keeps_its_signature_and_docstring_and_not_its_body():
    src = ('### BEGIN SOLUTION\n@decorated\ndef loss(a, b: int = 2) -> float:\n    """The loss.\n\n    Shapes."""\n'
           '    secret = a * b\n    return secret\n### END SOLUTION\ncheck("e", loss, expected=lambda f: f(1) == 2)\n')
    out, info = grading.student_source(src)
    assert "secret" not in out and info["answers"] == ["loss"]
    assert "# @decorated\n# def loss(a, b: int = 2) -> float:\n#     \"\"\"The loss.\n#\n#     Shapes.\"\"\"\n#     ...\n" in out
    assert out.endswith('loss = ...  # YOUR ANSWER HERE\ncheck("e", loss, expected=lambda f: f(1) == 2)\n')
    compile(out, "student", "exec")  # still Python, and the blank is still `...` (check: "not answered yet")
    # no docstring: the header alone; an indented region keeps its indentation
    out, _ = grading.student_source("if True:\n    ### BEGIN SOLUTION\n    def g(x):\n        return x\n"
                                    "    ### END SOLUTION\n    pass\n")
    assert "    # def g(x):\n    #     ...\n    g = ...  # YOUR ANSWER HERE\n" in out and "return x" not in out
    compile(out, "student", "exec")


def test_every_function_a_region_defines_stays_a_blank_even_if_no_later_cell_reads_it():
    """Helper variables of a worked solution are dropped when no later code reads them, but a def is the learner's
    piece (lab 05 lost `top_k_filter` that way: the cell read it only behind an `is not ...` guard)."""
    src = ("### BEGIN SOLUTION\ndef f(x):\n    return x\n\ndef g(x):\n    return x\ntmp = 3\nused = tmp\n"
           "### END SOLUTION\n")
    out, info = grading.student_source(src, later=["print(g(1), used)"])
    assert info["answers"] == ["f", "g", "used"] and "tmp = ..." not in out and "f = ...  # YOUR ANSWER HERE" in out


@pytest.mark.parametrize("src,needle", [
    ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
    ("x = 1\n### END SOLUTION\n", "without a matching"),
    ("### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS\n### END SOLUTION\n", "inside an open"),
    ("### BEGIN SOLUTION\nx = (1,\n### END SOLUTION\n", "not whole Python statements"),
])
def test_bad_markers_are_clear_errors(src, needle):
    with pytest.raises(LabkitUsageError, match=needle):
        grading.student_source(src, "lab.ipynb, cell 4")


def test_region_without_assignment_warns():
    out, info = grading.student_source("### BEGIN SOLUTION\nprint(1)\n### END SOLUTION\n")
    assert "pass  # YOUR ANSWER HERE" in out and info["warnings"]


def test_student_notebook(tmp_path):
    student, rep = grading.student_notebook(small_lab(), "tiny.ipynb")
    text = json.dumps(student)
    assert SECRET not in text and "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert rep.solutions == 5 and rep.hidden == 1
    assert rep.answers == ["answer", "low", "high", "total", "double"]
    code = [c for c in student.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert "    total = ...  # YOUR ANSWER HERE\n    pass" in code[3].source  # indentation kept
    assert "YOUR ANSWER HERE" in student.cells[5].source  # markdown solution


def _execute(path: Path, strict: bool = True) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    env_before = os.environ.get("LABKIT_STRICT_EXERCISES")
    os.environ["LABKIT_STRICT_EXERCISES"] = "1" if strict else "0"
    from nbclient.exceptions import CellExecutionError

    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
                       ).execute()
    except CellExecutionError as exc:
        failing = next((i for i, c in enumerate(nb.cells) for o in c.get("outputs", [])
                        if o.get("output_type") == "error"), None)
        pytest.fail(f"{path.name} stops with an error at cell {failing}: {exc.ename}: {exc.evalue}. In a student "
                    f"version every answer name is `...`: a later cell that *uses* an answer (calls a function "
                    f"the learner writes, indexes a value) must not run it unanswered.")
    finally:
        if env_before is None:
            os.environ.pop("LABKIT_STRICT_EXERCISES", None)
        else:
            os.environ["LABKIT_STRICT_EXERCISES"] = env_before
    return nb


def _outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or "".join(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


@pytest.mark.slow
def test_student_version_of_a_small_lab_runs_end_to_end(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    nbformat.write(small_lab(), str(src / "01_tiny.ipynb"))
    (src / "data.txt").write_text("lab data")
    assert grading.main(["build", "--src", str(src), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "data.txt").read_text() == "lab data"
    nb = _execute(tmp_path / "out" / "01_tiny.ipynb")  # strict mode: `...` is "not answered", not an error
    text = _outputs_text(nb)
    assert "not answered yet" in text and "0/5 exercises correct" in text  # 5 checks ran, none raised
    # and the instructor version passes every check
    inst = _execute(src / "01_tiny.ipynb")
    assert "5/5 exercises correct" in _outputs_text(inst)


@pytest.mark.slow
@pytest.mark.skipif(not LAB03.exists(), reason="labs/03_tokenization.ipynb is not written yet")
def test_student_version_of_lab03_runs_end_to_end(tmp_path):
    reports = grading.write_student_versions(tmp_path, None, ["03_tokenization.ipynb"])
    assert reports[0].solutions >= 3, reports[0]
    student = tmp_path / "03_tokenization.ipynb"
    assert "### BEGIN SOLUTION" not in student.read_text()
    nb = _execute(student)
    assert "not answered yet" in _outputs_text(nb)


def test_build_refuses_to_overwrite_the_instructor_labs(tmp_path):
    nbformat.write(small_lab(), str(tmp_path / "01_tiny.ipynb"))
    with pytest.raises(LabkitUsageError, match="refusing"):
        grading.write_student_versions(tmp_path, tmp_path)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert grading.main(["build", "--src", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "l").mkdir()
    nbformat.write(small_lab(), str(tmp_path / "l" / "01_tiny.ipynb"))
    assert grading.main(["build", "missing_lab", "--src", str(tmp_path / "l"), "--out", str(tmp_path / "o")]) == 2
    assert "01_tiny.ipynb" in capsys.readouterr().err  # names the labs that exist


def test_default_subcommand_is_build(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    nbformat.write(small_lab(), str(src / "01_tiny.ipynb"))
    monkeypatch.chdir(tmp_path)
    assert grading.main(["--src", str(src)]) == 0
    assert (tmp_path / "labs-student" / "01_tiny.ipynb").exists()


def test_check_command(tmp_path, capsys):
    nbformat.write(small_lab(), str(tmp_path / "01_tiny.ipynb"))
    assert grading.main(["check", "--src", str(tmp_path)]) == 0
    nb = small_lab()
    nb.cells[2].source = "### BEGIN SOLUTION\nanswer = 2\n"
    nbformat.write(nb, str(tmp_path / "02_broken.ipynb"))
    assert grading.main(["check", "--src", str(tmp_path)]) == 1
    assert "never closed" in capsys.readouterr().out


def test_student_copy_keeps_learner_edits(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    nbformat.write(small_lab(), str(src / "01_tiny.ipynb"))
    home = tmp_path / "home"
    assert grading.main(["copy", str(home), "--src", str(src)]) == 0
    mine = home / "01_tiny.ipynb"
    assert SECRET not in mine.read_text()
    nb = nbformat.read(str(mine), as_version=4)
    nb.cells[2].source = nb.cells[2].source.replace("answer = ...", "answer = 2")
    nbformat.write(nb, str(mine))
    edited = mine.read_text()
    assert grading.main(["copy", str(home), "--src", str(src)]) == 0  # rebuilt: same bytes, edit kept
    assert mine.read_text() == edited


def test_nbgrader_export(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    nbformat.write(small_lab(), str(src / "01_tiny.ipynb"))
    assert grading.main(["nbgrader", str(tmp_path / "course"), "--src", str(src), "--points", "2"]) == 0
    nb = nbformat.read(str(tmp_path / "course" / "source" / "01_tiny" / "01_tiny.ipynb"), as_version=4)
    nbformat.validate(nb)
    meta = [c.metadata["nbgrader"] for c in nb.cells if "nbgrader" in c.metadata]
    answers = [m for m in meta if m["solution"] and not m["grade"]]
    tests = [m for m in meta if m["grade"] and not m["solution"]]
    assert len(answers) == 3 and len(tests) == 3
    assert all(t["points"] == 2 and t["locked"] for t in tests)
    assert len({m["grade_id"] for m in meta}) == len(meta)  # unique ids, as nbgrader requires
    test_src = [c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")
                and c.cell_type == "code"]
    assert test_src[0].startswith("assert (_labkit_fb := check('ex1'")
    assert "assert (_labkit_fb := check('ex2b'" in test_src[1]
    assert "### BEGIN HIDDEN TESTS" in test_src[1]  # kept for nbgrader to strip from the release
    answer_src = [c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")
                  and c.cell_type == "code"]
    assert answer_src[0].startswith("# Exercise 1\n# Assign: answer\n### BEGIN SOLUTION")
    assert (tmp_path / "course" / "nbgrader_config.py").exists()
    written = [m for m in meta if m["solution"] and m["grade"]]
    assert len(written) == 1 and written[0]["points"] == 2  # the markdown answer: graded by hand


def test_nbgrader_test_cell_fails_when_unanswered():
    code = grading._assert_checks("check('ex1', answer, expected=2)\nprint('x')\n")
    from labkit.exercises import check

    ns = {"check": check, "answer": ...}
    with pytest.raises(AssertionError):
        exec(code, ns)
    ns["answer"] = 2
    exec(code, ns)


@pytest.mark.slow
def test_nbgrader_grades_the_export(tmp_path):
    """Real nbgrader on the export: generate_assignment strips the solutions; autograde gives 0 to an untouched
    release and full marks to the instructor's answers."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("nbgrader") is None:
        pytest.skip("nbgrader is not installed (pip install nbgrader)")
    src = tmp_path / "labs"
    src.mkdir()
    nbformat.write(small_lab(), str(src / "01_tiny.ipynb"))
    course = tmp_path / "course"
    assert grading.main(["nbgrader", str(course), "--src", str(src)]) == 0
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")

    def nbgrader(*args):
        done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    nbgrader("generate_assignment", "01_tiny", "--force")
    release = course / "release" / "01_tiny" / "01_tiny.ipynb"
    assert SECRET not in release.read_text() and "YOUR ANSWER HERE" in release.read_text()
    for student, notebook in (("blank", release), ("solved", course / "source" / "01_tiny" / "01_tiny.ipynb")):
        nbgrader("db", "student", "add", student)
        (course / "submitted" / student / "01_tiny").mkdir(parents=True)
        shutil.copy(notebook, course / "submitted" / student / "01_tiny" / "01_tiny.ipynb")
    nbgrader("autograde", "01_tiny")
    nbgrader("export")
    import csv

    rows = {r["student_id"]: r for r in csv.DictReader((course / "grades.csv").open())}
    assert float(rows["blank"]["score"]) == 0.0
    # 3 autograded exercises; the written (markdown) answer is 1 more point, graded by hand in formgrader
    assert float(rows["solved"]["score"]) == 3.0 and float(rows["solved"]["max_score"]) == 4.0


def test_lint_finds_answers_used_before_they_are_written():
    nb = _nb([
        ("code", "from labkit.exercises import check\ndef helper(x):\n    return solve(x) + 1\n"
                 "def outer(x):\n    return helper(x)"),
        ("code", "### BEGIN SOLUTION\ndef solve(x):\n    return 2 * x\n### END SOLUTION\n"
                 "check('e1', solve, expected=lambda f: f(1) == 2)"),
        ("code", "print(outer(3))"),                                    # through two functions: fails
        ("code", "### BEGIN SOLUTION\nanswer = 5\n### END SOLUTION\ncheck('e2', answer, expected=5)"),
        ("code", "%%capture\nprint(answer)"),                            # a cell magic body: not Python, skipped
        ("code", "print(answer + 1)"),                                   # direct use: fails
        ("code", "answer = 7\nprint(answer + 1)"),                       # reassigned by the lab first: fine
        ("code", "check('e3', answer, expected=7)"),                     # inside check: fine
    ])
    student, _ = grading.student_notebook(nb, "lab.ipynb")
    problems = grading.unanswered_uses(student, "lab.ipynb")
    assert len(problems) == 2, problems
    assert "cell 3: calls `outer`, which uses `solve`" in problems[0]
    assert "cell 6: uses `answer`, which the learner writes in cell 4" in problems[1]


LABS = sorted((ROOT / "labs").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("lab", LABS, ids=[p.name for p in LABS])
def test_every_lab_has_a_working_student_version(lab):
    """The lint behind `labkit student check`: markers balanced, >= 3 exercises, and no cell that uses a learner's
    answer before they wrote it (which makes Run All fail in the student version)."""
    student, rep = grading.student_notebook(nbformat.read(str(lab), as_version=4), lab.name)
    assert rep.solutions >= 3, rep
    problems = rep.warnings + grading.unanswered_uses(student, lab.name)
    assert not problems, "\n".join(problems)


def test_student_copy_from_prebuilt(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    nbformat.write(small_lab(), str(src / "01_tiny.ipynb"))
    assert grading.main(["build", "--src", str(src), "--out", str(tmp_path / "built")]) == 0
    assert grading.main(["copy", str(tmp_path / "home"), "--prebuilt", str(tmp_path / "built")]) == 0
    assert (tmp_path / "home" / "01_tiny.ipynb").read_bytes() == (tmp_path / "built" / "01_tiny.ipynb").read_bytes()
    assert grading.main(["copy", str(tmp_path / "home2"), "--prebuilt", str(tmp_path / "nothing")]) == 2
    assert "labkit student build --out" in capsys.readouterr().err


def test_only_answers_read_later_become_blanks():
    nb = _nb([
        ("code", "from labkit.exercises import check\nitems = [1, 2, 3]"),
        ("code", "### BEGIN SOLUTION\ntotal = n = 0\nfor x in items:\n    total += x; n += 1\nmean = total / n\n"
                 "### END SOLUTION\ncheck('e1', mean, expected=2)"),
        ("code", "print([x * 2 for x in items])\nprint(sorted(items, key=lambda n: -n))"),  # x, n: local names
    ])
    student, rep = grading.student_notebook(nb, "lab.ipynb")
    assert rep.answers == ["mean"]
    assert "mean = ...  # YOUR ANSWER HERE" in student.cells[1].source and "total" not in student.cells[1].source
    assert grading.unanswered_uses(student, "lab.ipynb") == []


# ------------------------------------------------------------------------------------------------ progress, solutions
@pytest.fixture
def store(tmp_path, monkeypatch):
    """A private progress store, and no hint of which lab is running (no notebook path, and no IPython shell
    whose history another test filled)."""
    from labkit import exercises, progress

    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "labkit-home"))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setattr(exercises, "_shell", lambda: None)

    return progress


def test_progress_store_location(tmp_path, monkeypatch, store):
    assert store.store_path() == tmp_path / "labkit-home" / "progress.json"
    monkeypatch.delenv("LABKIT_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert store.store_path() == tmp_path / "xdg" / "labkit" / "progress.json"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert store.store_path() == tmp_path / "h" / ".local" / "share" / "labkit" / "progress.json"


def test_progress_records_attempts_reveals_and_status(store):
    assert store.load() == {"version": 1, "labs": {}}  # nothing yet, and no file is needed to read
    store.record_attempt("03_tokenization", "Exercise 1", False)
    e1 = store.record_attempt("03_tokenization", "Exercise 1", True)
    assert e1["tries"] == 2 and [a["passed"] for a in e1["attempts"]] == [False, True]
    assert e1["first_passed"] == e1["attempts"][1]["time"] and store.status(e1) == "solved"
    store.record_reveal("03_tokenization", "Exercise 2")
    assert store.status(store.load()["labs"]["03_tokenization"]["Exercise 2"]) == "revealed"
    e2 = store.record_attempt("03_tokenization", "Exercise 2", True)
    assert store.status(e2) == "solved with help"
    e1 = store.record_reveal("03_tokenization", "Exercise 1")  # looked after solving it: still the learner's own
    assert store.status(e1) == "solved"
    assert store.status(store.record_attempt("03_tokenization", "Exercise 3", False)) == "tried"
    assert store.status(None) == "not started"
    data = json.loads(store.store_path().read_text())
    assert data["version"] == 1 and set(data["labs"]["03_tokenization"]) == {"Exercise 1", "Exercise 2", "Exercise 3"}
    assert data == store.load()
    with pytest.raises(ValueError, match="lab and an exercise"):
        store.record_attempt("", "Exercise 1", True)


def test_progress_keeps_the_last_attempts_and_counts_all(store, monkeypatch):
    monkeypatch.setattr(store, "MAX_ATTEMPTS", 3)
    for i in range(5):
        entry = store.record_attempt("lab", "ex", i == 0)
    assert entry["tries"] == 5 and len(entry["attempts"]) == 3 and entry["first_passed"]
    assert store.status(entry) == "solved"  # the first success is kept even once its attempt scrolled out


@pytest.mark.parametrize("damage", ["{not json", "[]", '{"version": 1, "labs": {"lab": ["x"]}}'])
def test_corrupt_progress_store_is_set_aside(store, damage):
    path = store.store_path()
    path.parent.mkdir(parents=True)
    path.write_text(damage)
    with pytest.warns(RuntimeWarning, match="not readable"):
        entry = store.record_attempt("lab", "ex", True)
    assert entry["tries"] == 1 and store.load()["labs"]["lab"]["ex"]["tries"] == 1
    aside = list(path.parent.glob("progress.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == damage  # kept for the curious, never deleted


def test_progress_writes_are_atomic(store, monkeypatch):
    store.record_attempt("lab", "ex", False)
    before = store.store_path().read_text()

    def boom(*a, **k):
        raise OSError("disk full")

    with monkeypatch.context() as m, pytest.raises(OSError, match="disk full"):
        m.setattr(store.json, "dump", boom)
        store.record_attempt("lab", "ex", True)
    assert store.store_path().read_text() == before  # the old store is whole
    assert [p.name for p in store.store_path().parent.iterdir() if p.name.endswith(".tmp")] == []


def test_progress_concurrent_writers_lose_nothing(store):
    import threading

    def work(name):
        for _ in range(15):
            store.record_attempt("lab", name, False)

    threads = [threading.Thread(target=work, args=(f"ex{i}",)) for i in range(2)] + \
              [threading.Thread(target=work, args=("shared",)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    labs = store.load()["labs"]["lab"]
    assert labs["ex0"]["tries"] == labs["ex1"]["tries"] == 15 and labs["shared"]["tries"] == 30


def test_check_records_answered_attempts_of_the_current_lab(store, tmp_path, monkeypatch):
    from labkit import exercises as E

    assert not E.check("Exercise 1", 3, expected=4).ok  # lab unknown: checked, nothing recorded
    assert not store.store_path().exists()
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "workspace" / "03_tokenization.ipynb"))
    assert E.current_lab() == "03_tokenization"
    E.check("Exercise 1", ..., expected=4)  # not answered yet: no attempt
    assert not store.store_path().exists()
    E.check("Exercise 1", 3, expected=4)
    E.check("Exercise 1", 4, expected=4)
    entry = store.load()["labs"]["03_tokenization"]["Exercise 1"]
    assert [a["passed"] for a in entry["attempts"]] == [False, True]
    monkeypatch.setenv("LABKIT_STRICT_EXERCISES", "1")  # CI runs of the labs record nothing
    E.check("Exercise 1", 4, expected=4)
    assert store.load()["labs"]["03_tokenization"]["Exercise 1"]["tries"] == 2


def test_check_survives_an_unwritable_store(store, tmp_path, monkeypatch):
    from labkit import exercises as E

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("LABKIT_HOME", str(blocker / "sub"))  # its parent is a file: cannot be created
    monkeypatch.setenv("JPY_SESSION_NAME", "03_tokenization.ipynb")
    monkeypatch.setattr(E, "_WARNED", set())
    with pytest.warns(RuntimeWarning, match="could not record"):
        fb = E.check("Exercise 1", 4, expected=4)
    assert fb.ok


def test_find_lab_names():
    from labkit.exercises import find_lab

    assert find_lab("03_tokenization").name == "03_tokenization.ipynb"
    assert find_lab("/home/me/workspace/03_tokenization.ipynb").stem == "03_tokenization"
    assert find_lab("03_tokenization-Copy1.ipynb").stem == "03_tokenization"
    assert find_lab("03_tokenization.updated.ipynb").stem == "03_tokenization"
    assert find_lab("3").stem == find_lab("03").stem == "03_tokenization"
    assert find_lab("Untitled.ipynb") is None and find_lab("99") is None


def test_solution_reveals_one_exercise_and_records_it(store, monkeypatch, capsys):
    from labkit import exercises as E

    monkeypatch.setenv("JPY_SESSION_NAME", "/home/me/workspace/03_tokenization.ipynb")
    assert E.solution("exercise  2") is None  # any spacing or case; shows, returns nothing to show twice
    shown = capsys.readouterr().out
    assert "Solution of Exercise 2 (03_tokenization)" in shown and "def bpe_encode(word, merges):" in shown
    assert "min([" not in shown  # Exercise 3's solution is not revealed with it
    lab = store.load()["labs"]["03_tokenization"]
    assert list(lab) == ["Exercise 2"] and store.status(lab["Exercise 2"]) == "revealed"
    E.check("Exercise 2", 1, expected=1)
    assert store.status(store.load()["labs"]["03_tokenization"]["Exercise 2"]) == "solved with help"
    sol = E.find_solution(2)
    assert sol.code.startswith("def bpe_encode(word, merges):") and "```python" in sol._repr_markdown_()


def test_solution_errors_are_clear(store):
    from labkit import exercises as E

    with pytest.raises(LabkitUsageError, match=r"no exercise 'Exercise 9' in lab 03_tokenization; its exercises "
                                               r"are: Exercise 1, Exercise 2a, Exercise 2, .*Exercise 6"):
        E.solution("Exercise 9", lab="03")
    with pytest.raises(LabkitUsageError, match="cannot tell which lab.*lab='03_tokenization'.*00_welcome"):
        E.solution("Exercise 2")
    with pytest.raises(LabkitUsageError, match="no lab 'nope'; the labs are: 00_welcome"):
        E.solution("Exercise 2", lab="nope")
    assert not store.store_path().exists()  # a failed reveal records nothing


def test_solution_of_a_lab_with_several_checks_and_written_answers(tmp_path, monkeypatch, store):
    """Exercise names come from check() calls and from headings/comments; an exercise with two checks is one
    solution; a written (markdown) answer is one too."""
    import labkit.labs
    from labkit import exercises as E

    (tmp_path / "labs").mkdir()
    nbformat.write(small_lab(), str(tmp_path / "labs" / "01_tiny.ipynb"))
    monkeypatch.setattr(labkit.labs, "labs_dir", lambda: tmp_path / "labs")
    names = [e.name for e in E.lab_exercises("01_tiny")]
    assert names == ["ex1", "ex2a", "ex3", "cell 6"]
    both = E.find_solution("Exercise 2", "01_tiny")  # from the cell's "# Exercise 2" comment
    assert both.exercise == "ex2a" and E.find_solution("ex2b", "01_tiny").code == both.code
    assert both.code == f"low, high = 1, 3  # {SECRET}\nhigh += 1"
    assert E.find_solution("ex3", "01_tiny").code == f"total = 41 + 1  # {SECRET}\ndef double(x):\n    return 2 * x"
    written = E.find_solution("cell 6", "01_tiny")
    assert written.written and f"Because {SECRET}." in written._repr_markdown_()
    E.solution("ex2b", lab="01_tiny")
    lab = store.load()["labs"]["01_tiny"]
    assert {n: store.status(e) for n, e in lab.items()} == {"ex2a": "revealed", "ex2b": "revealed"}


def test_current_lab_from_the_kernels_history(monkeypatch):
    """No notebook path from the front-end (a plain kernel, nbclient): the lab whose cells the kernel ran."""
    from labkit import exercises as E

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    lab = nbformat.read(str(LAB03), as_version=4)
    ran = ["", "print('my own scratch cell')"] + [c.source for c in lab.cells[:3] if c.cell_type == "code"]

    class Shell:
        user_ns: dict = {}
        history_manager = type("H", (), {"input_hist_raw": ran})()

    monkeypatch.setattr(E, "_shell", lambda: Shell())
    assert E.current_lab() == "03_tokenization"
    Shell.history_manager.input_hist_raw = ["", "print('my own scratch cell')"]
    assert E.current_lab() is None
    Shell.user_ns = {"__vsc_ipynb_file__": "/x/04_embeddings.ipynb"}
    assert E.current_lab() == "04_embeddings"


@pytest.mark.parametrize("lab", LABS, ids=[p.name for p in LABS])
def test_every_exercise_of_every_lab_can_be_revealed(lab):
    """Each solution region belongs to an exercise that `solution(name)` finds unambiguously, by its check name
    and by its "Exercise N" label."""
    from labkit import exercises as E

    exercises = E.lab_exercises(lab.stem)
    nb = nbformat.read(str(lab), as_version=4)
    assert sum(len(e.cells) for e in exercises) == sum(grading.BEGIN_SOLUTION in c.source for c in nb.cells)
    for ex in exercises:
        assert ex.solution.strip(), ex
        for name in {ex.name, *ex.checks, *ex.labels}:
            assert E.find_solution(name, lab.stem).code == ex.solution, (lab.name, name)


def test_audit_finds_circular_checks_and_answer_giving_hints():
    nb = _nb([
        ("md", "**Predict, then run.** Guess first."),
        ("code", "### BEGIN SOLUTION\nratio = costs[0].bytes / costs[1].bytes\n### END SOLUTION\n"
                 "check('ex1', ratio, expected=costs[0].bytes / costs[1].bytes, hint='a ratio')"),
        ("code", "### BEGIN SOLUTION\nanswer = [c for c in cards if valid(c)]\n### END SOLUTION\n"
                 "check('ex2', answer, expected=['a'], hint='[c for c in cards if valid(c)]')"),
        ("code", "### BEGIN SOLUTION\ndef f(x):\n    return 2 * x\nfact = 'LLM06'\n### END SOLUTION\n"
                 "check('ex3', f, expected=lambda g: g(2) == 4, hint='double it')\n"
                 "check('ex4', fact, expected='LLM06')"),
    ])
    rep = grading.audit_notebook(nb, "t.ipynb")
    assert rep.checks == 4 and rep.predictions == 1 and rep.learner_functions == ["f"]
    assert [c.split(":")[0] for c in rep.circular] == ["ex1"]          # a literal fact asked is not circular
    assert [h.split(":")[0] for h in rep.hints_with_answer] == ["ex2"]


def test_every_lab_passes_the_audit(capsys):
    assert grading.main(["audit"]) == 0, capsys.readouterr().out


def test_lint_accepts_uses_guarded_by_an_answered_test():
    nb = _nb([
        ("code", "from labkit.exercises import check"),
        ("code", "### BEGIN SOLUTION\ndef f(x):\n    return x\n### END SOLUTION\ncheck('ex1', f, expected=lambda g: g(1) == 1)"),
        ("code", "if f is not ...:\n    print(f(2))\nprint(f(3) if f is not ... else '?')"),
        ("code", "if f is not ...:\n    pass\nelse:\n    print(f(4))"),   # the else branch runs unanswered
    ])
    student, _ = grading.student_notebook(nb, "lab.ipynb")
    problems = grading.unanswered_uses(student, "lab.ipynb")
    assert len(problems) == 1 and "cell 4" in problems[0], problems
