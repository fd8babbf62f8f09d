"""The student version of every lab (`labkit student build`: each exercise a `...` blank) runs to the end in strict
mode: the blanks' checks say "not answered yet" with their hints, and no later cell fails with a traceback from
inside labkit because an answer is missing.

A lab whose own test file already runs its student version (a test named ``test_student_version_of_labNN...``,
e.g. tests/test_multimodal.py for lab 20) is left to that test; every other lab is run here, so a new lab is
covered the day it lands.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LABS = sorted(p.name for p in (ROOT / "labs").glob("[0-9][0-9]_*.ipynb"))
_OWN = re.compile(r"def test_student_version_of_lab(\d\d)")


def _labs_with_their_own_test() -> set[str]:
    found = set()
    for f in Path(__file__).parent.glob("test_*.py"):
        if f.name != Path(__file__).name:
            found |= set(_OWN.findall(f.read_text()))
    return found


OWN = _labs_with_their_own_test()
HERE = [lab for lab in LABS if lab[:2] not in OWN]


def test_every_lab_has_a_student_version_run():
    assert HERE and set(HERE) | {lab for lab in LABS if lab[:2] in OWN} == set(LABS)


@pytest.mark.slow
@pytest.mark.parametrize("lab", HERE)
def test_student_version_runs_end_to_end(run_student_version, lab):
    report, text = run_student_version(lab)
    assert report.solutions >= 1 and report.answers, report
    assert "not answered yet" in text, f"{lab}: no blank's check reported itself unanswered"
