"""The `labkit` command."""
from __future__ import annotations

import os
import subprocess
import sys


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "labkit.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def test_doctor_reports_assets_threads_and_limits():
    out = run("doctor", env={"CPU_LIMIT": "1", "MEM_LIMIT": "2G"})
    text = out.stdout
    assert "versions:" in text and "torch" in text
    assert "[ok] cl100k tokenizer" in text and "[ok] bert WordPiece" in text
    import re

    assert re.search(r"threads \(torch/BLAS\)\s+1\n", text)
    assert "MEM_LIMIT" in text and "2G" in text
    assert "torch threads 1" in text  # the forward pass ran with the quota's threads
    assert out.returncode == 0, text


def test_models_lists_the_zoo():
    out = run("models")
    assert out.returncode == 0, out.stderr
    for name in ("tiny-base", "tiny-chat", "minilm"):
        assert name in out.stdout


def test_bad_subcommand():
    out = run("frobnicate")
    assert out.returncode == 2 and "invalid choice" in out.stderr
