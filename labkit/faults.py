"""Named points where a test kills the process, to prove that an interrupted write never leaves a half-written file
that the next call would load as complete (issue: interrupts and restarts lose nothing).

Off unless the environment names a point: ``LABKIT_FAULT_AT=index.manifest`` kills the process with SIGKILL
(no cleanup code runs, as when the kernel dies or the machine loses power) the first time that point is reached;
``LABKIT_FAULT_AT=checkpoint.staged#2`` the second time. ``tests/test_interrupts.py`` runs each writer in a
subprocess, kills it at every point, and checks what the next call finds.
"""
from __future__ import annotations

import os
import signal
from collections import Counter

_SEEN: Counter = Counter()


def point(name: str) -> None:
    want = os.environ.get("LABKIT_FAULT_AT")
    if not want:
        return
    target, _, nth = want.partition("#")
    if target != name:
        return
    _SEEN[name] += 1
    if _SEEN[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
