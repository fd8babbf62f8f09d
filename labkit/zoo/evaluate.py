"""``labkit zoo eval``: the quality table of the zoo models on the held-out (test) split.

tiny-chat
  - context-QA exact match (the reply must equal the answer span of the passage),
  - tool-call format validity (first reply to a calculator or lookup question is one well-formed call),
  - multi-digit multiplication with the calculator (the harness runs the call and feeds the observation back;
    the final reply must state the product), and the same questions without tools (``NO_TOOLS_SYSTEM``),
  - lookup answers (the final reply contains the fact's value).
tiny-base
  - validation perplexity on the held-out pre-training documents, and sampled stories.

``run_chat`` is the generation harness with tool execution; the agent lab can reuse it.
"""
from __future__ import annotations

import math
import re
import time

from . import formats as F
from .corpus import Corpus, run_tool

_NUM = re.compile(r"-?\d+")


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int = 48, batch_size: int = 32,
             do_sample: bool = False, temperature: float = 1.0, top_k: int = 0, seed: int = 0) -> list[str]:
    """Continue each prompt (text rendered with ``format_chat`` or plain text); returns the new text only.

    Greedy by default; stops at ``<|end|>``/``<|endoftext|>``. Batched with left padding."""
    import torch

    tokenizer.padding_side = "left"
    end_ids = [tokenizer.convert_tokens_to_ids(F.END), tokenizer.convert_tokens_to_ids(F.EOT)]
    pad = tokenizer.convert_tokens_to_ids(F.PAD)
    outs: list[str] = []
    torch.manual_seed(seed)
    for i in range(0, len(prompts), batch_size):
        batch = prompts[i:i + batch_size]
        enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=end_ids, pad_token_id=pad, do_sample=do_sample)
        if do_sample:
            kwargs.update(temperature=temperature, top_k=top_k or None)
        with torch.no_grad():
            gen = model.generate(**enc, **kwargs)
        for row in gen[:, enc["input_ids"].shape[1]:]:
            outs.append(tokenizer.decode(row, skip_special_tokens=False))
    return [o.replace(F.PAD, "") for o in outs]


def _first_turn(text: str) -> str:
    """Raw generated assistant content up to its <|end|> (keeps <|call|>)."""
    for stop in (F.END, F.EOT):
        text = text.split(stop, 1)[0]
    return text


def run_chat(model, tokenizer, conversations: list[list[dict]], world=None, max_tool_calls: int = 2,
             max_new_tokens: int = 64) -> list[dict]:
    """Answer each conversation, running tool calls the model makes and feeding the observations back.

    Returns per conversation: ``{"messages": [...with the model's turns...], "reply": final text,
    "calls": [(raw call text, parsed or None)], "valid_first": bool|None}``."""
    state = [{"messages": list(c), "reply": None, "calls": [], "done": False} for c in conversations]
    for _round in range(max_tool_calls + 1):
        todo = [s for s in state if not s["done"]]
        if not todo:
            break
        outs = generate(model, tokenizer, [F.format_chat(s["messages"]) for s in todo], max_new_tokens)
        for s, out in zip(todo, outs):
            turn = _first_turn(out)
            if turn.lstrip().startswith(F.CALL) and _round < max_tool_calls:
                parsed = F.parse_tool_call(turn)
                s["calls"].append((turn, parsed))
                s["messages"].append({"role": "assistant", "content": turn.strip()})
                obs = run_tool(parsed[0], parsed[1], world) if parsed else "Error: malformed tool call."
                s["messages"].append({"role": "tool", "content": obs})
            else:
                s["reply"] = F.reply_text(turn)
                s["messages"].append({"role": "assistant", "content": s["reply"]})
                s["done"] = True
    for s in state:
        s.pop("done")
        if s["reply"] is None:
            s["reply"] = ""
    return state


def eval_chat(model, tokenizer, n: int = 200, seed: int = 0, log=print) -> dict:
    """Quality figures of a chat model on held-out items (``split='test'``)."""
    corpus = Corpus(seed)
    res: dict = {"n": n}
    t0 = time.perf_counter()
    # context QA
    items = corpus.context_qa("test", n, stream="eval-cqa")
    outs = run_chat(model, tokenizer, [F.context_qa_messages(it["context"], it["question"]) for it in items],
                    corpus.world, max_tool_calls=0)
    res["context_qa_em"] = sum(o["reply"] == it["answer"] for o, it in zip(outs, items)) / n
    res["context_qa_examples"] = [(it["question"], it["answer"], o["reply"]) for it, o in list(zip(items, outs))[:5]]
    res["context_qa_errors"] = [(it["context"], it["question"], it["answer"], o["reply"])
                                for it, o in zip(items, outs) if o["reply"] != it["answer"]][:20]
    log(f"context-QA exact match: {res['context_qa_em']:.1%}")
    # calculator with tools
    mul = corpus.multiplication("test", n, stream="eval-mul")
    outs = run_chat(model, tokenizer, [[{"role": "user", "content": it["question"]}] for it in mul], corpus.world)
    valid = [bool(o["calls"]) and F.is_valid_tool_call(o["calls"][0][0]) for o in outs]
    right_call = [bool(o["calls"]) and o["calls"][0][1] is not None and o["calls"][0][1][0] == "calculator"
                  and F.calculator(o["calls"][0][1][1].get("expression", "")) == it["answer"] for o, it in zip(outs, mul)]
    correct = [_last_number(o["reply"]) == it["answer"] for o, it in zip(outs, mul)]
    res["calc_tool_used"] = sum(bool(o["calls"]) for o in outs) / n
    res["calc_call_correct"] = sum(right_call) / n
    res["calc_with_tool"] = sum(correct) / n
    res["calc_examples"] = [(it["question"], it["answer"], o["calls"][0][0] if o["calls"] else None, o["reply"])
                            for it, o in list(zip(mul, outs))[:3]]
    log(f"multiplication with the calculator: {res['calc_with_tool']:.1%} (tool used {res['calc_tool_used']:.1%})")
    # lookup
    lk = corpus.lookups("test", n, stream="eval-lookup")
    louts = run_chat(model, tokenizer, [[{"role": "user", "content": it["question"]}] for it in lk], corpus.world)
    lvalid = [bool(o["calls"]) and F.is_valid_tool_call(o["calls"][0][0]) for o in louts]
    nl = max(1, len(lk))  # the world has ~110 held-out entity/attribute pairs
    res["n_lookup"] = len(lk)
    res["lookup_entity_correct"] = sum(bool(o["calls"]) and o["calls"][0][1] is not None
                                       and o["calls"][0][1][1].get("entity") == it["entity"]
                                       for o, it in zip(louts, lk)) / nl
    res["lookup_correct"] = sum(it["answer"] in o["reply"] for o, it in zip(louts, lk)) / nl
    res["lookup_examples"] = [(it["question"], it["answer"], o["calls"][0][0] if o["calls"] else None, o["reply"])
                              for it, o in list(zip(lk, louts))[:3]]
    log(f"lookup answers: {res['lookup_correct']:.1%}")
    res["tool_format_valid"] = (sum(valid) + sum(lvalid)) / (n + len(lk))
    log(f"tool-call format valid: {res['tool_format_valid']:.1%}")
    # no tools
    outs = run_chat(model, tokenizer, [[{"role": "system", "content": F.NO_TOOLS_SYSTEM},
                                        {"role": "user", "content": it["question"]}] for it in mul],
                    corpus.world, max_tool_calls=0)
    res["calc_no_tool"] = sum(_last_number(o["reply"]) == it["answer"] for o, it in zip(outs, mul)) / n
    log(f"multiplication without tools: {res['calc_no_tool']:.1%}")
    res["seconds"] = time.perf_counter() - t0
    return res


def _last_number(text: str) -> str | None:
    nums = _NUM.findall(text.replace(",", ""))
    return nums[-1] if nums else None


def eval_base(model, tokenizer, seed: int = 0, val_tokens: int = 100_000, n_samples: int = 3, log=print) -> dict:
    """Held-out perplexity on the validation documents, plus sampled stories."""
    from .train import evaluate_loss, pack_pretrain

    corpus = Corpus(seed)
    t0 = time.perf_counter()
    val = pack_pretrain(tokenizer, corpus.pretrain_docs("val"), val_tokens, 256)
    loss = evaluate_loss(model, val)
    res = {"val_loss": loss, "val_perplexity": math.exp(loss), "val_tokens": int(val.numel())}
    log(f"validation perplexity: {res['val_perplexity']:.2f} (loss {loss:.3f}, {val.numel():,} tokens)")
    prompts = [F.EOT + p for p in ["Once upon a time,", "One winter morning,", "In the town of"]][:n_samples]
    samples = generate(model, tokenizer, prompts, max_new_tokens=96, do_sample=True, temperature=0.8, top_k=40,
                       seed=seed)
    res["samples"] = [p[len(F.EOT):] + s.split(F.EOT)[0] for p, s in zip(prompts, samples)]
    res["seconds"] = time.perf_counter() - t0
    return res


# ------------------------------------------------------------------------------------------------ zoo v2: reading
def _operands(expression: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", expression or "")


def _said_unknown(reply: str) -> bool:
    low = reply.lower()
    return any(w in low for w in ("could not find", "not found", "unknown", "no entry", "don't know", "do not know"))


def eval_reading(model, tokenizer, n: int = 200, seed: int = 0, heldout: bool = True, log=print) -> dict:
    """Zoo v2's reading figures on items built apart from training (``heldout=True``: held-out locales,
    relations, phrasings and words; ``reading.Reading``) or on the training generator's distribution
    (``heldout=False``, a fresh stream). Exact match uses SQuAD's normalisation (``reading.exact_match``)."""
    from .reading import Reading, exact_match

    rd = Reading(seed + 7919, heldout=heldout)
    tag = "out-of-world" if heldout else "reading, in-distribution"
    res: dict = {"n": n, "heldout": heldout}
    t0 = time.perf_counter()
    items = rd.context_qa(n, stream="eval-cqa")
    outs = run_chat(model, tokenizer, [F.context_qa_messages(it["context"], it["question"]) for it in items],
                    max_tool_calls=0)
    ok = [exact_match(o["reply"], it["answer"]) for o, it in zip(outs, items)]
    res["context_qa_em"] = sum(ok) / n
    res["context_qa_strict_em"] = sum(o["reply"] == it["answer"] for o, it in zip(outs, items)) / n
    by_len: dict = {}
    for it, k in zip(items, ok):
        b = "1-3" if it["sentences"] <= 3 else "4-5" if it["sentences"] <= 5 else "6-8"
        by_len.setdefault(b, []).append(k)
    res["context_qa_em_by_sentences"] = {b: sum(v) / len(v) for b, v in sorted(by_len.items())}
    res["context_qa_errors"] = [(it["context"], it["question"], it["answer"], o["reply"])
                                for it, o, k in zip(items, outs, ok) if not k][:12]
    log(f"[{tag}] context-QA exact match: {res['context_qa_em']:.1%}")
    calc = rd.calculator(n, stream="eval-calc")
    outs = run_chat(model, tokenizer, [[{"role": "user", "content": it["question"]}] for it in calc])
    first = [o["calls"][0] if o["calls"] else None for o in outs]
    res["calc_format_valid"] = sum(bool(c) and F.is_valid_tool_call(c[0]) for c in first) / n
    res["calc_operands_copied"] = sum(bool(c) and c[1] is not None and _operands(c[1][1].get("expression", ""))
                                      == _operands(it["a"]) + _operands(it["b"]) for c, it in zip(first, calc)) / n
    res["calc_answer_right"] = sum(it["answer"] in o["reply"].replace(",", "") for o, it in zip(outs, calc)) / n
    res["calc_errors"] = [(it["question"], c[0] if c else None, o["reply"]) for it, c, o in zip(calc, first, outs)
                          if not (c and c[1] and _operands(c[1][1].get("expression", "")) == _operands(it["a"]) + _operands(it["b"]))][:8]
    log(f"[{tag}] calculator: operands copied {res['calc_operands_copied']:.1%}, answer {res['calc_answer_right']:.1%}")
    unk = rd.unknown_lookup(n // 2, stream="eval-unknown")
    outs = run_chat(model, tokenizer, [[{"role": "user", "content": it["question"]}] for it in unk])
    res["unknown_format_valid"] = sum(bool(o["calls"]) and F.is_valid_tool_call(o["calls"][0][0]) for o in outs) / len(unk)
    res["unknown_said_unknown"] = sum(_said_unknown(o["reply"]) for o in outs) / len(unk)
    res["tool_format_valid"] = (res["calc_format_valid"] * n + res["unknown_format_valid"] * len(unk)) / (n + len(unk))
    log(f"[{tag}] unknown entities answered as unknown: {res['unknown_said_unknown']:.1%}; "
        f"tool-call format valid {res['tool_format_valid']:.1%}")
    fu = rd.followup(n // 2, stream="eval-followup")
    res["followup_em"] = _followup_em(model, tokenizer, fu)
    log(f"[{tag}] follow-up about the first turn's context: {res['followup_em']:.1%}")
    res["seconds"] = time.perf_counter() - t0
    return res


def _followup_em(model, tokenizer, items: list[dict]) -> float:
    """Two turns: the model answers the first question itself, then the follow-up (about the first context)."""
    from .reading import exact_match

    first = run_chat(model, tokenizer, [F.context_qa_messages(it["context"], it["question"]) for it in items],
                     max_tool_calls=0)
    convs = [o["messages"] + [{"role": "user", "content": f"Question: {it['question2']}"}] for o, it in zip(first, items)]
    second = run_chat(model, tokenizer, convs, max_tool_calls=0)
    return sum(exact_match(o["reply"], it.get("answers2") or it["answer2"]) for o, it in zip(second, items)) / max(1, len(items))


def eval_handwritten(model, tokenizer, log=print) -> dict:
    """The hand-written set (``data/handwritten.json``): questions in the style a learner types."""
    import json
    from pathlib import Path

    from .reading import exact_match

    d = json.loads((Path(__file__).parent / "data" / "handwritten.json").read_text())
    res: dict = {}
    cq = d["context_qa"]
    outs = run_chat(model, tokenizer, [F.context_qa_messages(it["context"], it["question"]) for it in cq], max_tool_calls=0)
    res["context_qa_em"] = sum(exact_match(o["reply"], it["answers"]) for o, it in zip(outs, cq)) / len(cq)
    res["context_qa"] = [(it["question"], it["answers"][0], o["reply"]) for it, o in zip(cq, outs)]
    calc = d["calculator"]
    outs = run_chat(model, tokenizer, [[{"role": "user", "content": it["question"]}] for it in calc])
    res["calc_operands_copied"] = sum(bool(o["calls"]) and o["calls"][0][1] is not None and _operands(
        o["calls"][0][1][1].get("expression", "")) == [it["a"], it["b"]] for o, it in zip(outs, calc)) / len(calc)
    res["calc_answer_right"] = sum(it["answer"] in o["reply"].replace(",", "") for o, it in zip(outs, calc)) / len(calc)
    res["calc"] = [(it["question"], it["answer"], o["calls"][0][0] if o["calls"] else None, o["reply"]) for it, o in zip(calc, outs)]
    unk = d["unknown_lookup"]
    outs = run_chat(model, tokenizer, [[{"role": "user", "content": it["question"]}] for it in unk])
    res["unknown_said_unknown"] = sum(_said_unknown(o["reply"]) for o in outs) / len(unk)
    res["followup_em"] = _followup_em(model, tokenizer, d["followup"])
    log(f"[hand-written] context QA {res['context_qa_em']:.1%} ({len(cq)}), calculator operands "
        f"{res['calc_operands_copied']:.1%} / answer {res['calc_answer_right']:.1%} ({len(calc)}), unknown "
        f"{res['unknown_said_unknown']:.1%} ({len(unk)}), follow-up {res['followup_em']:.1%} ({len(d['followup'])})")
    return res
