"""Zoo v2's reading corpus: the out-of-world generator really is built apart, items are well-formed spans, and
the recipe teaches reading (a micro model scores out of world above a floor it cannot reach by memory)."""
from __future__ import annotations

import re

import pytest

from labkit.zoo import formats as F
from labkit.zoo.reading import (HELDOUT_LOCALES, RELATIONS, TRAIN_LOCALES, Reading, _locale_pools, exact_match,
                                normalize)


def test_heldout_generator_shares_no_locale_relation_or_phrasing_with_training():
    assert not set(TRAIN_LOCALES) & set(HELDOUT_LOCALES)
    train, held = Reading(0), Reading(0, heldout=True)
    only_held = {k for k, v in RELATIONS.items() if v.get("heldout") == "all"}
    assert only_held and not only_held & set(train.relations)
    for rel, (facts, questions) in train.relations.items():
        hf, hq = held.relations[rel]
        assert not set(facts) & set(hf) and not set(questions) & set(hq), rel
    assert not set(train.things) & set(held.things) and not set(train.jobs) & set(held.jobs)
    # first names of the two generators' pools barely overlap (common names recur across locales)
    tn = {n for loc in TRAIN_LOCALES for n in _locale_pools(loc)["female"] + _locale_pools(loc)["male"]}
    hn = {n for loc in HELDOUT_LOCALES for n in _locale_pools(loc)["female"] + _locale_pools(loc)["male"]}
    assert len(hn - tn) > 0.5 * len(hn)


@pytest.mark.parametrize("heldout", [False, True])
def test_items_are_deterministic_and_answers_are_spans(heldout):
    a, b = Reading(3, heldout).context_qa(300), Reading(3, heldout).context_qa(300)
    assert a == b
    assert Reading(4, heldout).context_qa(5) != a[:5]
    for it in a:
        assert it["answer"] in it["context"], it
        assert 1 <= len(it["answer"].split()) <= 8 and 1 <= it["sentences"] <= 8
    assert len({it["relation"] for it in a}) > 15
    for it in Reading(3, heldout).calculator(200):
        parsed = F.parse_tool_call(F.format_call("calculator", expression=it["expression"]))
        assert parsed and F.calculator(parsed[1]["expression"]) == it["answer"]
        assert re.findall(r"\d+(?:\.\d+)?", it["expression"]) == re.findall(r"\d+(?:\.\d+)?", it["a"] + " " + it["b"])
    assert max(len(it["a"].lstrip("-").split(".")[0]) for it in Reading(3, heldout).calculator(200)) == 7


def test_word_pools_hold_no_profanity_and_do_not_depend_on_the_hash_seed():
    """Passages end up in front of a class: wordfreq's web list brings profanity and slurs, which the pools drop.
    And every pool is the same in every process (it_IT's city list came from a set, so it followed the hash seed)."""
    import json
    import subprocess
    import sys

    from labkit.zoo.reading import _vocab

    words = set(_vocab(False)) | set(_vocab(True))
    assert len(words) > 20000
    assert not {"fuck", "fucking", "shit", "bitch", "cunt", "nigger", "faggot", "porn", "rape", "whore"} & words
    assert {"violin", "garden", "kitchen"} & words  # ordinary words stay
    code = ("import json; from labkit.zoo.reading import _locale_pools, _vocab; "
            "print(json.dumps([_locale_pools(l)['city'] for l in ('it_IT', 'fr_FR', 'hu_HU')] + [_vocab(True)]))")
    runs = [json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                      env={**__import__("os").environ, "PYTHONHASHSEED": seed}).stdout)
            for seed in ("1", "2")]
    assert runs[0] == runs[1]


def test_chats_are_valid_zoo_format():
    for msgs in Reading(0).chat_examples(200):
        text = F.format_chat(msgs, add_generation_prompt=False)
        assert text.startswith(F.EOT) and msgs[-1]["role"] == "assistant"
        for m in msgs:
            if m["role"] == "assistant" and m["content"].startswith(F.CALL):
                assert F.is_valid_tool_call(m["content"])
    unknown = [m for m in Reading(0).chat_examples(300) if any(x["role"] == "tool" and x["content"].startswith("No entry") for x in m)]
    assert unknown and all("could not find" in m[-1]["content"] for m in unknown)


def test_exact_match_uses_squad_normalisation():
    assert normalize("The  Attic!") == "attic"
    assert exact_match("in the attic", ["the attic", "in the attic"]) and not exact_match("attic door", "the attic")


@pytest.mark.slow
def test_micro_model_from_the_v2_recipe_reads_out_of_world(tmp_path):
    """About a minute: tokenizer + micro model from the v2 recipe (``build_v2(quick=True)``). Scored on passages
    from the held-out generator (unseen locales, relations, phrasings, words), teacher-forced accuracy on the
    answer tokens must rise far above the untrained-for-QA base and match the trained distribution: what it
    learned is copying from the passage, not the training world (measured: base 6 %, chat 22 % out of world,
    18 % in distribution)."""
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from labkit.zoo.build_v2 import build_v2
    from labkit.zoo.train import pack_sft

    threads = torch.get_num_threads()
    try:
        build_v2(tmp_path, quick=True, threads=1)
    finally:
        torch.set_num_threads(threads)
    tok = PreTrainedTokenizerFast.from_pretrained(str(tmp_path / "tiny-chat"))

    def answer_accuracy(name, heldout):
        model = AutoModelForCausalLM.from_pretrained(str(tmp_path / name)).eval()
        rd = Reading(5, heldout)
        ids, lab = pack_sft(tok, [rd.chat_cqa(it) for it in rd.context_qa(150)], 128)
        with torch.no_grad():
            pred = model(input_ids=ids).logits[:, :-1].argmax(-1)
        tgt = lab[:, 1:]
        m = tgt != -100
        return float((pred[m] == tgt[m]).float().mean())

    base_oow = answer_accuracy("tiny-base", True)
    chat_oow, chat_in = answer_accuracy("tiny-chat", True), answer_accuracy("tiny-chat", False)
    assert chat_oow > 0.13 and chat_oow > 2 * base_oow, (base_oow, chat_oow)
    assert chat_oow > 0.8 * chat_in, (chat_oow, chat_in)
