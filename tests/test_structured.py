"""Lab 17's engine (labkit.structured, and what it added to labkit.serve and labkit.generate): the records and their
scoring, outlines set up for a chat model, llama.cpp's grammar with JSON-safe strings, the client-side tool loop,
%%generate --model openai:<url>, the load test, and the student version of lab 17 run end to end."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from labkit import serve
from labkit import structured as S
from labkit.errors import LabkitUsageError
from conftest import lab_checkers

ROOT = Path(__file__).resolve().parents[1]
LAB17 = ROOT / "labs" / "17_serving_apps.ipynb"


# ------------------------------------------------------------------------------------------------ no model
def test_records_are_fixed_held_out_and_fit_the_schema():
    recs = S.records(8, seed=3)
    assert recs == S.records(8, seed=3) and recs != S.records(8, seed=4)
    for r in recs:
        assert r.city in r.context and r.job in r.context and f"favourite colour is {r.colour}" in r.context
        obj, ok = S.parse(json.dumps(r.truth()))
        assert ok, r  # the right answer is always schema-valid: the bounds admit it
    from labkit.zoo.reading import TRAIN_LOCALES, _locale_pools

    trained = {n for loc in TRAIN_LOCALES[:6] for n in _locale_pools(loc)["city"]}
    assert sum(r.city in trained for r in S.records(40)) <= 4  # places from locales the model never saw
    with pytest.raises(LabkitUsageError, match="n:"):
        S.records(0)


def test_parse_and_score_tell_parsing_from_right():
    recs = S.records(3)
    good = json.dumps(recs[0].truth())
    wrong = json.dumps({**recs[1].truth(), "city": "Nowhere"})
    outs = [good, wrong, '{"city": "x", "job": "y"']  # the last is cut: does not parse
    sc = S.score("t", outs, recs)
    assert (sc.parsed, sc.valid) == (2, 2)
    assert sc.right == {"city": 1, "job": 2, "colour": 2} and sc.parse_rate == pytest.approx(2 / 3)
    assert S.parse('{"city": "a", "job": "b", "colour": "mauve"}') == ({"city": "a", "job": "b", "colour": "mauve"}, False)
    assert S.parse('{"city": "' + "a" * 30 + '", "job": "b", "colour": "red"}')[1] is False  # maxLength
    assert S.parse("[1, 2]") == (None, False) and S.parse("the attic") == (None, False)
    # case, spaces and a final full stop do not make a field wrong
    assert S.score("t", [json.dumps({**recs[0].truth(), "job": " " + recs[0].job.upper() + "."})], recs[:1]).right["job"] == 1
    with pytest.raises(LabkitUsageError, match="outputs"):
        S.score("t", [good], recs)


def test_token_budget_covers_the_longest_object():
    n = S.max_tokens_for(S.SCHEMA)
    longest = json.dumps({"city": "c" * 24, "job": "j" * 32, "colour": max(S.colours(), key=len)}, separators=(" , ", " : "))
    assert len(longest) <= n < 2 * len(longest)  # one token a character always fits
    with pytest.raises(LabkitUsageError, match="maxLength"):
        S.max_tokens_for({"type": "object", "properties": {"x": {"type": "string"}}})


def test_gbnf_strings_refuse_control_characters():
    pytest.importorskip("llama_cpp")
    from llama_cpp import LlamaGrammar

    strict, loose = S.gbnf(S.SCHEMA), S.gbnf(S.SCHEMA, json_strings=False)
    assert strict != loose and "x00-" in strict and "x00-" not in loose
    assert strict.count("char ::=") == 1 and '"\\"red\\""' in strict
    LlamaGrammar.from_string(strict, verbose=False)  # llama.cpp accepts the tightened grammar


def test_bucket_decisions_are_the_servers_bucket():
    assert serve.bucket_decisions([0, 0, 0, 0, 0.5, 0.6, 3], 2, 3) == [True, True, True, False, True, False, True]
    assert serve.bucket_decisions([], 1, 1) == []
    assert sum(serve.bucket_decisions([i / 100 for i in range(1000)], 3, 5)) <= 5 + 30 + 1


def test_calculator_tool_and_questions():
    assert S.run_calculator('{"expression": "12*34"}') == "408"
    assert S.run_calculator("not json").startswith("error") and S.run_calculator('{"expression": "__import__"}').startswith("error")
    qs = S.arithmetic_questions(3, seed=1)
    assert qs == S.arithmetic_questions(3, seed=1) and all(str(a) not in q for q, a in qs)


def test_choice_options_must_be_prefix_free():
    for bad in ([" yes", " yes please"], [], [" a", " a"]):
        with pytest.raises(LabkitUsageError, match="options"):
            S._prefix_free(bad)


# ------------------------------------------------------------------------------------------------ outlines
@pytest.fixture(scope="module")
def om():
    pytest.importorskip("outlines")
    import torch

    torch.set_num_threads(1)
    return S.outlines_model("tiny-chat-v2")


def test_outlines_json_always_parses_and_choice_matches_the_kit(om):
    assert om.hf_tokenizer.eos_token == "<|end|>" and om.labkit_chat_tokenizer.eos_token == "<|endoftext|>"
    assert 6 not in S.suppress(om) and 0 in S.suppress(om)  # the turn's end is allowed, the other specials are not
    recs = S.records(2)
    texts = S.outlines_json(om, [S.json_request(r) for r in recs])
    sc = S.score("outlines", texts, recs)
    assert sc.parsed == sc.valid == 2, texts
    options = [" " + c for c in S.colours()]
    texts_ = S.token_texts(om.labkit_chat_tokenizer)
    for r in recs:
        q = S.field_question(r, "colour")
        mine = S.reference_choose(om.model, om.labkit_chat_tokenizer, S.chat_prompt(om, q), options, texts_)
        assert mine == S.outlines_choice(om, q, options) == " " + r.colour


# ------------------------------------------------------------------------------------------------ a server
@pytest.fixture(scope="module")
def server():
    srv = serve.start("tiny-chat-v2", wait=False)
    assert srv.started_s == 0.0  # returned at once
    srv.wait()
    yield srv
    srv.stop()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", srv.port)) != 0


def test_generate_with_an_openai_model_streams_from_the_server(server, ip):
    from labkit.generate import generate

    pieces = []
    r = generate("Once upon a time", f"openai:{server.url}", max_new_tokens=12, temperature=0, on_text=pieces.append)
    local = generate("Once upon a time", "tiny-chat-v2", max_new_tokens=12, temperature=0)
    assert r.text == local.text and "".join(pieces) == r.text and len(pieces) > 3  # streamed, same greedy text
    assert r.n_new_tokens == 12 and r.n_prompt_tokens == local.n_prompt_tokens and r.stop == "length"
    qa = generate("Context: Ada keeps the key in the red box. Question: Where does Ada keep the key?",
                  f"openai:{server.url}", chat=True, temperature=0)
    assert qa.text == "the red box" and qa.stop == "eos"
    with pytest.raises(LabkitUsageError, match="step"):
        generate("x", f"openai:{server.url}", step=True)
    res = ip.run_cell_magic("generate", f"--model openai:{server.url} --temperature 0 --max-new-tokens 12",
                            "Once upon a time")
    assert res.text == local.text and "openai:" in res.summary()
    with pytest.raises(LabkitUsageError, match="cannot reach"):
        generate("x", "openai:http://127.0.0.1:9/v1")


def test_tool_loop_and_load_test_against_the_server(server):
    from openai import OpenAI

    c = OpenAI(base_url=server.url, api_key="none", max_retries=0)
    answer, messages = S.tool_loop(c, "What is 4096 times 1234?")
    assert str(4096 * 1234) in answer and [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[2]["tool_call_id"] == messages[1]["tool_calls"][0]["id"]
    ts = serve.load_test(server.url, 3, 1, prompt="Tell me a story.", max_tokens=16)
    assert len(ts) == 3 and all(t.tokens == 16 and t.first is not None for t in ts)
    assert sorted(t.ttft for t in ts)[-1] > sorted(t.ttft for t in ts)[0]  # one at a time: the last one waited
    with pytest.raises(LabkitUsageError, match="url"):
        serve.load_test("http://example.com/v1", 1)


# ------------------------------------------------------------------------------------------------ the lab
@pytest.mark.slow
def test_student_version_of_lab17_runs_end_to_end(run_student_version):
    """`labkit student build`'s version of lab 17 (every exercise `...`) runs to the end in strict mode, on the
    kit's own versions, and stops every server it started."""
    report, text = run_student_version(LAB17.name)
    assert report.solutions >= 3, report
    assert "not answered yet" in text and "using the kit's own" in text
    assert "field by field + choose" in text and "N=8: TTFT" in text
    assert text.count("process ended, port closed") == 3 and "STILL" not in text


def _lab_checkers(ns: dict) -> dict:
    return lab_checkers(LAB17, ns)


def test_the_lab_checkers_tell_right_from_wrong(om):
    import numpy as np
    import torch

    tok = om.labkit_chat_tokenizer
    ns = _lab_checkers({"S": S, "serve": serve, "np": np, "torch": torch, "om": om, "model": om.model,
                        "tokenizer": tok, "c": None})
    bucket, choice = ns["_is_a_token_bucket"], ns["_is_choice_decoding"]
    assert bucket(serve.bucket_decisions)

    def whole_tokens(times, rate, burst):  # refills only whole tokens, losing the fractions
        tokens, last, out = burst, times[0] if times else 0.0, []
        for t in times:
            gained = int((t - last) * rate)
            if gained:
                tokens, last = min(burst, tokens + gained), t
            out.append(tokens >= 1)
            tokens -= tokens >= 1
        return out

    def no_cap(times, rate, burst):  # saves up without limit
        tokens, last, out = float(burst), times[0] if times else 0.0, []
        for t in times:
            tokens, last = tokens + (t - last) * rate, t
            out.append(tokens >= 1)
            tokens -= tokens >= 1
        return out

    def starts_empty(times, rate, burst):
        tokens, last, out = 0.0, times[0] if times else 0.0, []
        for t in times:
            tokens, last = min(burst, tokens + (t - last) * rate), t
            out.append(tokens >= 1)
            tokens -= tokens >= 1
        return out

    for wrong in (whole_tokens, no_cap, starts_empty, lambda t, r, b: [True] * len(t),
                  lambda t, r, b: serve.bucket_decisions(t, r, b + 1)):
        assert not bucket(wrong), wrong
    texts = S.token_texts(tok)
    assert choice(lambda p, o: S.reference_choose(om.model, tok, p, o, texts))
    assert not choice(lambda p, o: o[0]) and not choice(lambda p, o: o[-1])
    assert not choice(lambda p, o: "red")  # not one of the options
