"""The model registry: every zoo entry loads offline, the memory guard, clear errors for bad names and files."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import labkit
import labkit.models as M
from labkit.errors import LabkitError, LabkitUsageError, MemoryBudgetError

ZOO_MODELS = ["tiny-base", "tiny-chat", "tiny-chat-v2", "tiny-draft"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LABKIT_MEM_BUDGET", raising=False)


def test_import_is_light():
    code = "import sys, labkit.models, labkit.zoo.formats, labkit.zoo.corpus; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_zoo_causal_lm_loads_offline_and_runs(name):
    import torch

    lm = labkit.load(name)
    assert lm.kind == "causal-lm" and lm.path == M.zoo_path(name)
    assert 1_000_000 < lm.num_parameters < 10_000_000
    assert lm.model.config.model_type == "llama"
    ids = lm.tokenizer("Once upon a time", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = lm.model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], len(lm.tokenizer))
    assert torch.isfinite(logits).all()
    assert labkit.load(name) is lm  # cached per process


def test_minilm_encoder_and_sentence_embedder():
    import torch

    lm = M.load("minilm")
    assert lm.kind == "encoder" and lm.num_parameters > 20_000_000
    enc = lm.tokenizer(["a cat sat"], return_tensors="pt")
    with torch.no_grad():
        out = lm.model(**enc).last_hidden_state
    assert out.shape[-1] == 384
    emb = M.sentence_embedder().encode(["a cat sat", "a dog ran"])
    assert emb.shape == (2, 384)


def test_tokenizers():
    tiny = M.load_tokenizer("tiny")
    assert len(tiny) == 4096 and tiny.chat_template
    assert M.load_tokenizer("tiny") is tiny
    text = tiny.apply_chat_template([{"role": "user", "content": "Hi!"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|endoftext|><|user|> Hi!<|end|>\n<|assistant|>"
    bert = M.load_tokenizer("minilm")
    assert bert("hello world")["input_ids"][0] == bert.cls_token_id
    cl = M.load_tokenizer("cl100k")
    assert cl.decode(cl.encode("hello world")) == "hello world"


def test_eager_attention_is_a_separate_cache_entry():
    import torch

    lm = M.load("tiny-base", attn_implementation="eager")
    assert lm is not M.load("tiny-base")
    ids = lm.tokenizer("Mira found a key.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = lm.model(input_ids=ids, output_attentions=True)
    assert len(out.attentions) == lm.model.config.num_hidden_layers
    assert out.attentions[0].shape[-1] == ids.shape[1]


def test_list_models():
    infos = {i.name: i for i in M.list_models()}
    assert {"tiny-base", "tiny-chat", "minilm", "tiny", "cl100k"} <= set(infos)
    assert all(i.available for i in infos.values()), [str(i) for i in infos.values() if not i.available]
    assert infos["tiny-chat"].parameters > 1_000_000 and infos["tiny-chat"].disk_bytes > 1_000_000


def test_memory_guard_refuses_over_budget(monkeypatch):
    M.unload()
    monkeypatch.setenv("LABKIT_MEM_BUDGET", "1M")
    with pytest.raises(MemoryBudgetError, match="LABKIT_MEM_BUDGET"):
        M.load("tiny-chat")
    with pytest.raises(MemoryBudgetError):
        M.sentence_embedder()
    monkeypatch.delenv("LABKIT_MEM_BUDGET")
    assert M.load("tiny-chat").kind == "causal-lm"


def test_unknown_name_lists_the_zoo():
    with pytest.raises(LabkitUsageError) as err:
        M.load("tiny-gpt9")
    msg = str(err.value)
    for name in ("tiny-base", "tiny-chat", "minilm"):
        assert name in msg
    assert "org/model" in msg
    with pytest.raises(LabkitUsageError):
        M.load("")


def test_hub_id_offline_is_a_fast_clear_error():
    t = time.perf_counter()
    with pytest.raises(LabkitError, match="huggingface-cli download someone/not-cached"):
        M.load("someone/not-cached")
    assert time.perf_counter() - t < 10


def test_corrupt_weight_file_names_the_file(tmp_path):
    d = tmp_path / "broken"
    shutil.copytree(M.zoo_path("tiny-base"), d)
    w = d / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(LabkitError) as err:
        M.load(str(d))
    assert "model.safetensors" in str(err.value) and "labkit zoo build" in str(err.value)
    w.write_bytes(b"\x00garbage")
    with pytest.raises(LabkitError, match="corrupt"):
        M.load(str(d))
    w.unlink()
    with pytest.raises(LabkitError, match="labkit zoo build|No weight file"):
        M.load(str(d))


def test_local_folder_loads_like_a_zoo_name(tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(M.zoo_path("tiny-chat"), d)
    lm = M.load(str(d))
    assert lm.kind == "causal-lm" and lm.path == d.resolve()
    M.unload(str(d))


def test_gguf_without_llama_cpp_is_clear(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + b"\x00" * 64)
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        with pytest.raises(LabkitError, match=r"labkit\[gguf\]"):
            M.load(f"gguf:{f}")
    else:  # pragma: no cover - only where llama-cpp-python is installed
        with pytest.raises(LabkitError):
            M.load(f"gguf:{f}")
    with pytest.raises(LabkitUsageError):
        M.load("gguf:/nonexistent/model.gguf")


def test_register_makes_a_folder_loadable_by_name(tmp_path):
    import shutil

    from labkit import models

    folder = tmp_path / "my-model"
    shutil.copytree(models.zoo_path("tiny-base"), folder)
    models.register("my-run", folder)
    try:
        lm = models.load("my-run")
        assert lm.kind == "causal-lm" and lm.num_parameters > 0
        assert models.load_tokenizer("my-run").vocab_size == models.load_tokenizer("tiny").vocab_size
        assert any(i.name == "my-run" and i.available for i in models.list_models())
        with pytest.raises(LabkitUsageError):
            models.register("tiny-chat", folder)
        with pytest.raises(LabkitUsageError):
            models.register("empty", tmp_path)
    finally:
        models._registered.pop("my-run", None)
        models.unload("my-run")


# ------------------------------------------------------------------------------------------- the one model door
def test_the_door_names_every_spec_without_loading(tmp_path, monkeypatch):
    import shutil

    from labkit.finetune import runs

    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    assert M.spec_kind("tiny-chat") == M.spec_kind("BERT") == "zoo"
    assert M.spec_kind("openai:http://127.0.0.1:9/v1") == "openai"
    assert M.spec_kind("gguf:/x/model.gguf") == M.spec_kind("weights.gguf") == "gguf"
    assert M.spec_kind("org/model") == "hub"
    assert M.spec_kind("no-such-model") == "unknown"
    assert M.spec_kind(str(tmp_path)) == "folder"
    run_model = runs.run_dir("door_run") / "model"  # a saved fine-tuning run, found by its name
    shutil.copytree(M.zoo_path("tiny-base"), run_model)
    assert M.spec_kind("door_run") == "run"
    lm = M.resolve("door_run", kinds=("causal-lm",))
    assert lm.kind == "causal-lm" and lm.path == run_model.resolve()
    assert M.spec_kind(lm) == "loaded" and M.resolve(lm) is lm
    assert M.spec_kind(lm.model) == "object"
    assert M.resolve(lm.model, tokenizer=lm.tokenizer).kind == "causal-lm"
    with pytest.raises(LabkitUsageError, match="tokenizer"):
        M.resolve(lm.model)
    with pytest.raises(LabkitUsageError, match="fine-tuning needs a causal-lm model"):
        M.resolve("minilm", kinds=("causal-lm",), use="fine-tuning")
    with pytest.raises(LabkitUsageError, match="Unknown model"):
        M.resolve("no-such-model")
    server = M.resolve("openai:http://127.0.0.1:9/v1")
    assert server.kind == "openai" and server.model is None and server.load_kwargs["base_url"] == "http://127.0.0.1:9/v1"
    with pytest.raises(LabkitUsageError, match="model"):
        M.spec_kind(3.5)
    M.unload(str(run_model.resolve()))


def test_context_length_is_asked_of_the_door():
    lm = M.load("tiny-chat")
    assert M.context_length(lm) == M.context_length(lm.model, lm.tokenizer) == lm.model.config.max_position_embeddings

    class FakeLlama:
        def n_ctx(self):
            return 4096

    assert M.context_length(FakeLlama()) == 4096
    assert M.context_length(object(), default=77) == 77


def test_engines_resolve_models_through_the_door(monkeypatch):
    """attend, generate, finetune, the agent's chat model and rag's generated answer all ask labkit.models.resolve."""
    from labkit import attend, generate
    from labkit.agent.chat_models import ZooChatModel
    from labkit.finetune.engine import resolve_model
    from labkit.rag.answer import generate_answer

    asked = []
    real = M.resolve

    def spy(spec, **kw):
        asked.append((spec, kw.get("use", "")))
        return real(spec, **kw)

    monkeypatch.setattr(M, "resolve", spy)
    attend.resolve("tiny-base")
    generate._resolve("tiny-base")
    resolve_model("tiny-base", copy_model=False)
    ZooChatModel._load("tiny-chat")
    with pytest.raises(LabkitUsageError, match="a generated answer needs a causal-lm"):
        generate_answer("minilm", "Who?", [])
    uses = [u for _, u in asked]
    assert uses == ["looking inside attention", "generating text", "fine-tuning", "an agent's chat model",
                    "a generated answer"]
