"""One way to watch long work: labkit.watch.Progress, Reporter, tqdm_progress."""
from __future__ import annotations

import pytest

from labkit.watch import Progress, Reporter, tqdm_progress


def test_reporter_calls_and_drops_a_failing_callback():
    seen = []
    r = Reporter(seen.append)
    r(Progress("train", 1, 4))
    assert seen[0].fraction == 0.25 and bool(r)

    def broken(p):
        raise RuntimeError("front end closed")

    r = Reporter(broken)
    with pytest.warns(RuntimeWarning, match="front end closed"):
        r(Progress("train", 1, 4))
    r(Progress("train", 2, 4))  # dropped: no second warning, no error
    assert not r and not Reporter(None)
    with pytest.raises(TypeError, match="on_progress"):
        Reporter(3)


def test_tqdm_progress():
    cb = tqdm_progress(disable=True)
    for i in range(1, 4):
        cb(Progress("train", i, 3, info={"loss": 1.0 / i}, state="done" if i == 3 else "running"))
