"""GGUF export and llama.cpp as a backend: the same token ids and (within stated tolerances) the same logits."""
from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is installed by make setup")

from labkit import models  # noqa: E402
from labkit.errors import LabkitUsageError  # noqa: E402
from labkit.gguf import export_gguf, parity  # noqa: E402

# next-token logits, max |HF - llama.cpp| over every position and the whole vocabulary, and the share of positions
# whose top token agrees. F32 differs only by summation order; F16 rounds weights; Q8_0 also quantizes llama.cpp's
# activations to 8 bits in its matmuls (the zoo's logits span about +-20).
TOLERANCE = {"f32": (0.05, 1.0), "f16": (0.1, 0.95), "q8_0": (1.5, 0.9)}
TEXTS = [
    "Context: Amara keeps her violin in the attic. Question: Where does Amara keep her violin?",
    "The ferry to Hvar leaves at 9:40 from pier three; it costs $12.50 (or 1,234 kuna).  Twice  spaced\n\nlines",
    "<|user|>What is 6021 times 3148?<|end|><|assistant|>",
    "Ünïcödé — ça va? 日本 🙂 tabs\tand 'quotes' it's we'll",
]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("gguf")


@pytest.mark.parametrize("name,qtype", [("tiny-chat", "f32"), ("tiny-chat", "f16"), ("tiny-chat", "q8_0"),
                                        ("tiny-base", "q8_0"), ("tiny-chat-v2", "f32"), ("tiny-draft", "q8_0")])
def test_same_ids_and_close_logits(out, name, qtype):
    e = export_gguf(name, out / f"{name}-{qtype}.gguf", qtype)
    assert e.path.is_file() and not e.path.with_name(e.path.name + ".part").exists()
    assert (qtype.upper() in e.types) or qtype == "f32"
    max_diff, agree = TOLERANCE[qtype]
    texts = TEXTS if (name, qtype) == ("tiny-chat", "f32") else TEXTS[:2]
    for text in texts:
        r = parity(name, e.path, text)
        assert r.same_ids, (text, r.hf_ids, r.gguf_ids)
        assert r.max_abs_diff <= max_diff, (text, r.max_abs_diff)
        assert r.argmax_agree >= agree, (text, r.argmax_agree)
    models.unload(f"gguf:{e.path}")


def test_quantized_files_are_smaller_and_q4_still_runs(out):
    sizes = {q: export_gguf("tiny-chat", out / f"size-{q}.gguf", q).bytes for q in ("f32", "f16", "q8_0", "q4_0")}
    assert sizes["f32"] > 1.8 * sizes["f16"] > 1.5 * sizes["q8_0"] > sizes["q4_0"], sizes
    r = parity("tiny-chat", out / "size-q4_0.gguf", TEXTS[0])
    assert r.same_ids and r.argmax_agree >= 0.6, r.argmax_agree  # 4 bits: close, not equal


def test_generate_runs_in_llama_cpp_and_agrees_with_transformers_under_greedy(out):
    from labkit.generate import generate

    path = export_gguf("tiny-chat", out / "gen.gguf", "f32").path
    lm = models.load(f"gguf:{path}")
    assert lm.kind == "gguf" and lm.model.n_ctx() == 512  # the model's own context, not llama.cpp's default
    hf = generate("Once upon a time", "tiny-chat", temperature=0, max_new_tokens=25)
    gg = generate("Once upon a time", f"gguf:{path}", temperature=0, max_new_tokens=25)
    assert gg.token_ids == hf.token_ids and gg.text == hf.text
    chunks = []
    chat = generate("Ada keeps the key in the red box. Where does Ada keep the key?", f"gguf:{path}",
                    temperature=0, chat=True, max_new_tokens=40, on_text=chunks.append)
    assert chat.stop == "eos" and chat.text.strip() and "".join(chunks) == chat.text
    assert "<|assistant|>" in chat.prompt  # the GGUF's own chat template
    with pytest.raises(LabkitUsageError, match="llama.cpp"):
        generate("hi", f"gguf:{path}", step=True)


def test_bad_exports_say_why(out):
    with pytest.raises(LabkitUsageError, match="pre-tokenizer"):
        export_gguf("tiny-reasoner", out / "r.gguf")  # a character-level tokenizer llama.cpp has no match for
    with pytest.raises(LabkitUsageError, match="q8_0"):
        export_gguf("tiny-chat", out / "x.gguf", "q3_k")
    with pytest.raises(LabkitUsageError, match="causal LM"):
        export_gguf("minilm", out / "m.gguf")


def test_cli_export_with_check(out, capsys):
    from labkit.cli import main

    assert main(["export", "gguf", "tiny-draft", str(out / "cli.gguf"), "--type", "q8_0", "--check", "12 + 345"]) == 0
    text = capsys.readouterr().out
    assert "token ids identical" in text and (out / "cli.gguf").is_file()
    assert main(["export", "gguf", "no-such-model", str(out / "n.gguf")]) == 2
    assert "Unknown model" in capsys.readouterr().err


def test_rag_answer_from_a_gguf_matches_the_transformers_model(out):
    from labkit.rag import Index

    path = export_gguf("tiny-chat", out / "rag.gguf", "f32").path
    ix = Index("recursive", size=300, overlap=0)
    ix.add([("p", "Mira Vell is a baker. Mira Vell lives in Brellwick. The favorite color of Mira Vell is red."),
            ("q", "Tam Oss is the harbor master of Stoneford. He was born in 1961.")])
    hf = ix.ask("What is the job of Mira Vell?", k=2, answer="tiny-chat")
    gg = ix.ask("What is the job of Mira Vell?", k=2, answer=f"gguf:{path}")
    assert gg.method == f"generated by gguf:{path}"
    assert gg.answer == hf.answer == "baker" and gg.citations == hf.citations


def test_generate_magic_takes_a_gguf(ip, out):
    path = export_gguf("tiny-chat", out / "magic.gguf", "q8_0").path
    res = ip.run_cell_magic("generate", f"--model gguf:{path} --temperature 0 --max-new-tokens 12", "Once upon a time")
    assert res.model == str(path) and 0 < res.n_new_tokens <= 12 and res.text


def test_agent_on_a_gguf_makes_the_same_tool_calls(out):
    """A zoo export keeps the zoo's chat and tool-call format (ZooGGUFChatModel), so the agent loop behaves as
    with transformers: the same calculator call, copied digits and answer."""
    from labkit.agent.chat_models import ZooGGUFChatModel, make_chat_model
    from labkit.agent.loop import run

    path = export_gguf("tiny-chat-v2", out / "agent.gguf", "f32").path
    assert isinstance(make_chat_model(f"gguf:{path}"), ZooGGUFChatModel)
    task = "What is 6021 times 3148?"
    hf, gg = run(task, "tiny-chat-v2"), run(task, f"gguf:{path}")
    assert [s.calls for s in gg.steps] == [s.calls for s in hf.steps] and gg.steps[0].calls
    assert gg.answer == hf.answer and "18954108" in gg.answer
