"""Interrupts and restarts lose nothing: each writer (a RAG index save, a zoo training checkpoint and final save,
a %%finetune checkpoint and final save) runs in a subprocess that is killed with SIGKILL at fixed points
(``labkit.faults``: no cleanup code runs, as when a kernel dies); then the next call must find the previous valid
state (or the new one, past the commit point), say what it found, and never load a partial file."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def killed_at(point: str, script: str, tmp_path: Path, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "LABKIT_FAULT_AT": point, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), **env}
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=tmp_path, env=full_env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == -signal.SIGKILL, f"not killed at {point}: rc {res.returncode}\n{res.stderr[-2000:]}"
    return res


# ------------------------------------------------------------------------------------------------ RAG index
DOCS = [("a.md", "Mira Vell is a baker in Dunmere. She bakes rye bread every morning."),
        ("b.md", "Tam Oss is the harbour master of Keehaven. He keeps a logbook of every ship.")]
MORE = [("c.md", "The lighthouse of Keehaven was built in 1887 and still works.")]


@pytest.mark.parametrize("point, committed", [("index.data", False), ("index.manifest", False),
                                              ("index.committed", True)])
def test_an_index_save_killed_at_any_point_leaves_a_loadable_index(tmp_path, point, committed):
    from labkit.rag import Index

    path = tmp_path / "ix"
    first = Index("recursive", 200, 0)
    first.add(DOCS)
    first.save(path)
    before = len(Index.load(path))
    killed_at(point, f"""
        from labkit.rag import Index
        ix = Index.load({str(path)!r})
        ix.add({MORE!r})
        ix.save()
    """, tmp_path)
    ix = Index.load(path)                        # never a partial index: the old one, or the new one complete
    assert len(ix) == (before + 1 if committed else before)
    assert {c.doc_id for c in ix.chunks} == ({"a.md", "b.md", "c.md"} if committed else {"a.md", "b.md"})
    if not committed:
        assert ix.recovered and "interrupted save" in ix.recovered   # ... and it says what it found
    ix.add(MORE)
    ix.save(path)                                # the next save cleans up what the killed one left
    assert len(list(path.glob("data-*"))) == 1 and not list(path.glob("manifest.json.tmp-*"))
    assert Index.load(path).recovered is None


# ------------------------------------------------------------------------------------- zoo training + save
ZOO = """
    import torch
    from labkit.finetune import toy
    from labkit.zoo.train import train
    from labkit.zoo.build_v2 import _save
    model, tok = toy.model("micro", seed=0)
    ids = torch.randint(0, len(tok), (64, 16), generator=torch.Generator().manual_seed(0))
    stats = train(model, ids, steps=12, batch_size=8, warmup=2, log_every=0, checkpoint="run.pt",
                  checkpoint_every=0.0)
    {after}
"""


def test_zoo_training_killed_mid_checkpoint_resumes_from_the_last_complete_one(tmp_path):
    killed_at("zoo.checkpoint#3", ZOO.format(after=""), tmp_path)   # two checkpoints written, the third not
    assert (tmp_path / "run.pt").is_file()
    import torch

    ck = torch.load(tmp_path / "run.pt", weights_only=False)
    logs = []
    from labkit.finetune import toy
    from labkit.zoo.train import train

    model, tok = toy.model("micro", seed=0)
    ids = torch.randint(0, len(tok), (64, 16), generator=torch.Generator().manual_seed(0))
    stats = train(model, ids, steps=12, batch_size=8, warmup=2, log_every=0, checkpoint=str(tmp_path / "run.pt"),
                  checkpoint_every=0.0, log=logs.append)
    assert any("resumed from" in m for m in logs), logs          # it says where it picked up
    assert stats.steps == 12 and ck["step"] < 12


@pytest.mark.parametrize("point", ["folder.staged", "folder.swap"])
def test_a_zoo_model_save_killed_mid_way_never_leaves_a_half_written_model(tmp_path, point):
    after = """
    _save(model, tok, __import__("pathlib").Path("out/tiny-x"), stats, 1.0, 1, "test", {}, note="first")
    model.model.norm.weight.data.fill_(2.0)
    _save(model, tok, __import__("pathlib").Path("out/tiny-x"), stats, 1.0, 1, "test", {}, note="second")
    """
    killed_at(point, ZOO.format(after=after.strip()).replace("\n    _save", "\n    _save"), tmp_path,
              LABKIT_FAULT_AT=f"{point}#2" if point == "folder.staged" else point)  # the swap: only the 2nd save has one
    from labkit import models
    from labkit.atomic import recover_folder

    folder = tmp_path / "out" / "tiny-x"
    note = recover_folder(folder)                                  # what the next build does first
    assert note, "the interrupted save left nothing to report"
    info = json.loads((folder / "train.json").read_text())
    assert info["note"] == "first"                                 # the complete previous version
    lm = models.load(str(folder))
    assert float(lm.model.model.norm.weight[0].detach()) != 2.0
    assert not folder.with_name("tiny-x.partial").exists() and not folder.with_name("tiny-x.old").exists()


# ------------------------------------------------------------------------------------------------ finetune
FT = """
    import os
    from labkit.finetune import finetune, toy
    from labkit.zoo.corpus import Corpus
    model, tok = toy.model("micro", seed=0)
    chats = [{{"messages": m}} for m in Corpus(0).chat_examples("train", 32)]
    r = finetune(model, chats, "lora", tokenizer=tok, rank=4, steps=6, batch=4, lr=5e-3, seed=3, show=False,
                 save_every=2, name="t_kill", resume={resume})
    print("RESULT", r.step, r.resumed_from, r.recovered)
"""


@pytest.mark.parametrize("point, resumes_from", [("checkpoint.staged#2", 2), ("final.staged", None)])
def test_finetune_killed_at_a_save_resumes_from_the_last_complete_checkpoint(tmp_path, point, resumes_from):
    home = tmp_path / "home"
    env = {"LABKIT_HOME": str(home)}
    fault = "folder.staged" if point == "final.staged" else point
    killed_at(fault, FT.format(resume="False"), tmp_path, **env)
    run = next(home.rglob("t_kill"))
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert not (run / "model").exists() or point != "final.staged"
    if resumes_from:
        assert "checkpoint-2" in ckpts and "checkpoint-4" not in ckpts and ".partial" in ckpts
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(FT.format(resume="True"))], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **env},
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(l for l in res.stdout.splitlines() if l.startswith("RESULT"))
    step, resumed, recovered = line.split(" ", 3)[1:]
    # resumed from the final checkpoint (step 6 of 6), transformers' Trainer takes one more step (known, left alone)
    assert int(step) == 6 if resumes_from else int(step) in (6, 7)
    assert int(resumed) == (resumes_from or 6)        # killed after the last checkpoint: it starts from step 6
    assert "thrown away" in recovered                 # and says what it found
    assert (run / "model" / "config.json").is_file() and not (run / "checkpoints" / ".partial").exists()
