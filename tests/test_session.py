"""The one session registry (labkit.session): trained tokenizers, models made here, RAG indexes."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from labkit import session
from labkit.errors import LabkitUsageError


def test_add_get_names_remove():
    session.add("index", "t_session", object())
    assert "t_session" in session.names("index") and session.get("index", "t_session") is not None
    session.remove("index", "t_session")
    assert session.get("index", "t_session") is None and session.get("index", "t_session", 3) == 3
    with pytest.raises(LabkitUsageError, match="kinds: tokenizer, model, index"):
        session.names("widget")
    with pytest.raises(LabkitUsageError):
        session.add("model", " ", "x")
    assert "tokenizers:" in session.summary() and "indexes:" in session.summary()


def test_the_engines_old_names_are_the_registry():
    import labkit.models as M
    import labkit.rag as rag
    import labkit.tokenize as tk
    from labkit.finetune import runs

    assert tk._TRAINED is session.store("tokenizer")
    assert M._registered is session.store("model") and runs._REGISTERED is session.store("model")
    assert rag._SESSION is session.store("index")


def test_trained_tokenizer_is_named_in_the_session():
    import labkit.tokenize as tk

    tk.train("bpe", ["low lower lowest " * 20, "new newer newest " * 20], 280, "t_sess_bpe")
    assert "t_sess_bpe" in session.names("tokenizer") and tk.get("t_sess_bpe") is session.get("tokenizer", "t_sess_bpe")
    tk.forget("t_sess_bpe")
    assert "t_sess_bpe" not in session.names("tokenizer")


def test_a_run_is_named_through_the_model_door(tmp_path):
    from labkit import models
    from labkit.finetune import runs

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    runs.register("t_sess_run", folder)
    assert models.registered()["t_sess_run"] == folder.resolve() == runs.resolve("t_sess_run")
    bare = tmp_path / "bare"  # no config.json: the door refuses it, the run is still named for finetune
    bare.mkdir()
    runs.register("t_sess_bare", bare)
    assert runs.resolve("t_sess_bare") == bare and "t_sess_bare" in runs.registered()
    session.remove("model", "t_sess_run")
    session.remove("model", "t_sess_bare")


def test_rag_names_indexes_in_the_session():
    import labkit.rag as rag

    ix = rag.Index()
    assert rag.name_index("t_sess_ix", ix) is ix and rag.session_index("t_sess_ix") is ix
    rag.forget_index("t_sess_ix")
    assert rag.session_index("t_sess_ix") is None
    with pytest.raises(LabkitUsageError, match="labkit.rag.Index"):
        rag.name_index("x", "not an index")


def test_magics_touch_no_private_engine_state():
    root = Path(__file__).resolve().parent.parent / "labkit" / "magics"
    private = re.compile(r"\b(?:rag|result|tk|engine|agent)\._[a-z]\w*|_session_index|\._widget\b|\._live\b")
    found = [f"{p.name}: {m.group()}" for p in root.glob("*.py") for m in private.finditer(p.read_text())]
    assert not found, found
