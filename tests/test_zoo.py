"""The zoo: corpus determinism and splits, the chat/tool format, the recipe really learns, the CLI."""
from __future__ import annotations

import math

import pytest

from labkit.zoo import formats as F
from labkit.zoo.corpus import SPLITS, Corpus, split_of, world


# --------------------------------------------------------------------------------------------------------- corpus
def test_world_is_deterministic_and_exposes_the_encyclopedia():
    w = world(0)
    enc = w.encyclopedia
    assert len(enc) == len(w.people) + len(w.towns) >= 300
    name, facts = next(iter(enc.items()))
    assert all(name in f for f in facts) and len(facts) >= 5
    assert w.entry(name) == " ".join(facts)
    assert w.entry("Nobody Atall") == "No entry for Nobody Atall."
    again = Corpus(0).world.encyclopedia
    assert list(again.items())[:20] == list(enc.items())[:20]
    assert name in w.text()


def test_same_seed_same_items_and_splits_are_disjoint():
    a, b = Corpus(0), Corpus(0)
    assert a.context_qa("train", 20) == b.context_qa("train", 20)
    docs_a, docs_b = a.pretrain_docs("train"), b.pretrain_docs("train")
    assert [next(docs_a) for _ in range(50)] == [next(docs_b) for _ in range(50)]
    for split in SPLITS:
        for it in a.context_qa(split, 50):
            assert split_of(f"cqa:{it['context']}|{it['question']}") == split
            assert it["answer"] in it["context"]
        for it in a.multiplication(split, 50):
            assert split_of(f"mul:{min(it['a'], it['b'])}*{max(it['a'], it['b'])}") == split
    train_pairs = {(it["a"], it["b"]) for it in a.multiplication("train", 3000)}
    test_pairs = {(it["a"], it["b"]) for it in a.multiplication("test", 200)}
    assert not {tuple(sorted(p)) for p in train_pairs} & {tuple(sorted(p)) for p in test_pairs}


def test_chat_examples_cover_every_kind():
    chats = Corpus(0).chat_examples("train", 300)
    texts = [F.format_chat(c, add_generation_prompt=False) for c in chats]
    assert any("Context:" in t for t in texts)
    assert any('calculator(expression="' in t for t in texts)
    assert any('lookup(entity="' in t for t in texts)
    assert any(F.NO_TOOLS_SYSTEM in t for t in texts)
    for c in chats:
        for m in c:
            if m["role"] == "assistant" and m["content"].startswith(F.CALL):
                assert F.is_valid_tool_call(m["content"])


# --------------------------------------------------------------------------------------------------------- format
def test_parse_tool_call():
    assert F.parse_tool_call('<|call|>calculator(expression="123*45")') == ("calculator", {"expression": "123*45"})
    assert F.parse_tool_call(' <|call|>lookup(entity="Mira \\"V\\"")<|end|>\n') == ("lookup", {"entity": 'Mira "V"'})
    assert F.parse_tool_call('<|call|>f(a="1", b="2")') == ("f", {"a": "1", "b": "2"})
    assert F.parse_tool_call("The answer is 5.") is None
    assert F.parse_tool_call('<|call|>calculator(expression=123)') is None
    assert F.parse_tool_call('<|call|>calculator(expression="1"') is None
    assert F.is_valid_tool_call('<|call|>lookup(entity="Ostrand")')
    assert not F.is_valid_tool_call('<|call|>lookup(name="Ostrand")')
    assert not F.is_valid_tool_call('<|call|>search(query="x")')
    call = F.format_call("calculator", expression="2*3")
    assert F.parse_tool_call(call) == ("calculator", {"expression": "2*3"})


def test_tools():
    assert F.calculator("347*86") == "29842"
    assert F.calculator("(2+3)*4-1") == "19"
    assert F.calculator("7/2") == "3.5"
    assert F.calculator("1/0").startswith("Error")
    assert F.calculator("__import__('os')").startswith("Error")
    # one calculator: the training traces' and the agent tool's are the same implementation (labkit.calculator)
    from labkit.agent.sandbox import calculate
    from labkit.calculator import calculator_text

    for expr in ["347*86", "7/3", "(12+3)*4", "2**10", "sqrt(16)", "10//3", "-5+2"]:
        assert F.calculator(expr) == calculator_text(expr, digits=6)
    assert F.calculator("7/3") == "2.333333" and calculate("7/3") == 7 / 3
    name = next(iter(world().people))
    from labkit.zoo.corpus import run_tool

    assert run_tool("lookup", {"entity": name}).startswith(name)
    assert run_tool("search", {}).startswith("Error")


def test_format_chat_matches_the_tokenizer_template():
    from labkit.models import load_tokenizer

    tok = load_tokenizer("tiny")
    chats = Corpus(0).chat_examples("val", 40)
    chats.append([{"role": "user", "content": "x"},
                  {"role": "assistant", "tool_calls": [{"type": "function", "function": {
                      "name": "calculator", "arguments": {"expression": "6*7"}}}]},
                  {"role": "tool", "content": "42"}])
    for c in chats:
        for gen in (True, False):
            assert tok.apply_chat_template(c, tokenize=False, add_generation_prompt=gen) == F.format_chat(c, gen)
    text = F.format_chat(chats[-1])
    assert '<|assistant|><|call|>calculator(expression="6*7")<|end|>\n<|tool|> 42<|end|>\n<|assistant|>' in text
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    for special in F.SPECIAL_TOKENS:
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1


def test_sft_labels_cover_only_assistant_tokens():
    from labkit.models import load_tokenizer
    from labkit.zoo.train import tokenize_chat

    tok = load_tokenizer("tiny")
    msgs = Corpus(0).chat_examples("train", 1, mix={"calc": 1.0})[0]
    ids, mask = tokenize_chat(tok, msgs)
    assert tok.decode(ids) == F.format_chat(msgs, add_generation_prompt=False)
    trained = tok.decode([i for i, m in zip(ids, mask) if m])
    assert trained.startswith(F.CALL + "calculator(") and trained.endswith(F.END)
    assert "The answer is" in trained and "What" not in trained


# --------------------------------------------------------------------------------------------------------- recipe
def test_micro_model_learns_from_the_recipe():
    """About 20 s: a 0.3M-parameter model from the recipe; held-out loss must fall far below chance (ln 4096 = 8.3)."""
    import torch

    from labkit.models import load_tokenizer
    from labkit.zoo.train import evaluate_loss, model_config, new_model, pack_pretrain, train

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core box, 2 OpenMP threads stall each other (10x slower)
    tok = load_tokenizer("tiny")
    corpus = Corpus(1)
    data = pack_pretrain(tok, corpus.pretrain_docs("train"), 150 * 16 * 128, seq_len=128)
    val = pack_pretrain(tok, corpus.pretrain_docs("val"), 16 * 128 * 4, seq_len=128)
    model = new_model(model_config("micro", tok), seed=0)
    before = evaluate_loss(model, val)
    try:
        seen = []  # the zoo's training reports progress as finetune does (labkit.watch)
        stats = train(model, data, steps=150, batch_size=16, lr=5e-3, warmup=15, log_every=50, log=lambda m: None,
                      on_progress=seen.append)
        after = evaluate_loss(model, val)
    finally:
        torch.set_num_threads(threads)
    assert before > 7.5
    assert after < 3.6, f"held-out loss {after:.2f} after {stats.steps} steps ({stats.tokens_per_s:,.0f} tok/s)"
    assert math.isfinite(stats.tokens_per_s) and stats.mfu() > 0
    assert [p.done for p in seen] == [1, 51, 101, 150, 150] and {p.kind for p in seen} == {"train"}
    assert seen[-1].state == "done" and all(p.info["loss"] > 0 for p in seen[:-1])


def test_generation_harness_runs_tools():
    """run_chat executes a tool call the model emits and feeds the observation back (shipped tiny-chat)."""
    import labkit
    from labkit.zoo.evaluate import run_chat

    lm = labkit.load("tiny-chat")
    out = run_chat(lm.model, lm.tokenizer, [[{"role": "user", "content": "What is 123 times 45?"}]],
                   max_new_tokens=32)[0]
    roles = [m["role"] for m in out["messages"]]
    assert roles[0] == "user" and roles[-1] == "assistant"
    if out["calls"]:
        assert roles[1:4] == ["assistant", "tool", "assistant"]


# ------------------------------------------------------------------------------------------------------------ cli
def test_cli_eval_missing_weights_is_a_clear_error(tmp_path, capsys):
    from labkit.zoo.cli import main

    assert main(["eval", "--dir", str(tmp_path), "--no-cards"]) == 1
    assert "labkit zoo build" in capsys.readouterr().err


def test_cli_help(capsys):
    from labkit.zoo.cli import main

    with pytest.raises(SystemExit):
        main(["build", "--help"])
    assert "--quick" in capsys.readouterr().out
