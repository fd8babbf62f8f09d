"""The agent engine: LangGraph loop, zoo-format adapter, tools, approval, step limit, backends, magic, CLI, eval."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

import labkit.agent as A
from labkit.agent.chat_models import (LlamaCppChatModel, ScriptedChatModel, ZooChatModel, make_chat_model,
                                      reply_to_message, to_zoo_messages)
from labkit.errors import LabkitUsageError
from labkit.zoo import formats as F
from labkit.zoo.corpus import world


def scripted(*replies):
    return ScriptedChatModel(replies=list(replies))


# ------------------------------------------------------------------------------------------------- the loop
def test_calculator_round_trip():
    r = A.run("What is 347 times 86?", model=scripted('<|call|>calculator(expression="347*86")',
                                                      "The answer is 29842."))
    assert r.ok and r.answer == "The answer is 29842."
    assert [s.kind for s in r.steps] == ["model", "tool", "model"]
    assert r.steps[1].name == "calculator" and r.steps[1].observation == "29842"
    assert r.steps[0].calls == [{"name": "calculator", "args": {"expression": "347*86"}}]
    assert r.n_model_calls == 2 and r.n_tool_calls == 1 and r.tokens > 0
    assert "29842" in repr(r) and "29842" in r._repr_html_()


def test_lookup_uses_the_zoo_world():
    name = next(iter(world().people))
    r = A.run(f"Where does {name} live?", model=scripted(f'<|call|>lookup(entity="{name}")', "Done."))
    assert r.steps[1].observation == world().entry(name)
    assert world().people[name].town in r.steps[1].observation


def test_step_limit_gives_partial_trace_and_note():
    r = A.run("Loop forever", model=scripted('<|call|>calculator(expression="1+1")'), tools="calculator",
              max_steps=3)
    assert r.answer is None and not r.ok
    assert "step limit" in r.stopped
    assert r.n_model_calls == 3 and r.n_tool_calls == 3
    assert r.steps[-1].kind == "note" and "step limit" in r.steps[-1].text


def test_unknown_tool_call_lists_the_tools_and_the_model_can_recover():
    r = A.run("x", model=scripted('<|call|>weather(city="Paris")', '<|call|>calculator(expression="2+3")',
                                  "5"), tools="calculator,lookup")
    assert r.steps[1].error and "unknown tool weather" in r.steps[1].observation
    assert "calculator, lookup" in r.steps[1].observation
    assert r.steps[3].observation == "5" and r.answer == "5"


def test_malformed_call_becomes_an_error_observation():
    r = A.run("x", model=scripted('<|call|>calculator(expression="1+1"', "ok"), tools="calculator")
    assert r.steps[1].error and "well-formed" in r.steps[1].observation
    assert r.answer == "ok"


def test_wrong_argument_name_is_explained():
    r = A.run("x", model=scripted('<|call|>calculator(expr="1+1")', "ok"), tools="calculator")
    assert r.steps[1].error and "takes (expression)" in r.steps[1].observation


def test_tool_errors_are_observations_not_crashes():
    r = A.run("x", model=scripted('<|call|>calculator(expression="2**100000")', "too big"), tools="calculator")
    assert r.steps[1].error and "exponent" in r.steps[1].observation and r.answer == "too big"


def test_unknown_tool_name_in_the_tool_list():
    with pytest.raises(LabkitUsageError) as info:
        A.run("x", model=scripted("hi"), tools="calculator,teleport")
    msg = str(info.value)
    assert "teleport" in msg and "calculator" in msg and "python" in msg


def test_empty_task_is_a_usage_error():
    with pytest.raises(LabkitUsageError):
        A.run("   ", model=scripted("hi"))


def test_bad_max_steps():
    with pytest.raises(LabkitUsageError):
        A.run("x", model=scripted("hi"), max_steps=0)


def test_model_exception_keeps_partial_trace():
    class Boom(ScriptedChatModel):
        def _complete(self, prompt, dicts):
            if self._turn >= 1:
                raise ConnectionError("server went away")
            return super()._complete(prompt, dicts)

    r = A.run("x", model=Boom(replies=['<|call|>calculator(expression="1+1")']), tools="calculator")
    assert r.answer is None and "server went away" in r.stopped
    assert r.steps[1].observation == "2" and r.steps[-1].kind == "note"


def test_system_prompt_is_the_trained_one():
    seen = []

    def policy(dicts):
        seen.append(dicts)
        return "fine"

    A.run("hi", model=ScriptedChatModel(policy=policy), tools="calculator,lookup")
    A.run("hi", model=ScriptedChatModel(policy=policy), tools=None)
    A.run("hi", model=ScriptedChatModel(policy=policy), tools="calculator,lookup", system="Be brief.")
    assert seen[0][0] == {"role": "system", "content": F.TOOLS_SYSTEM}
    assert seen[1][0] == {"role": "system", "content": F.NO_TOOLS_SYSTEM}
    assert seen[2][0] == {"role": "system", "content": "Be brief."}


def test_history_renders_exactly_like_the_training_format():
    """After one tool call, the prompt the model sees equals format_chat of the trained trace."""
    prompts = []

    class Spy(ScriptedChatModel):
        def _complete(self, prompt, dicts):
            prompts.append(prompt)
            return super()._complete(prompt, dicts)

    A.run("What is 12 times 34?", model=Spy(replies=['<|call|>calculator(expression="12*34")', "The answer is 408."]))
    expected = F.format_chat([
        {"role": "system", "content": F.TOOLS_SYSTEM},
        {"role": "user", "content": "What is 12 times 34?"},
        {"role": "assistant", "content": F.format_call("calculator", expression="12*34")},
        {"role": "tool", "content": "408"},
    ])
    assert prompts[1] == expected


# --------------------------------------------------------------------------------------------- user tools
def test_tool_decorator_schema_from_signature_and_docstring():
    @A.tool
    def word_count(text: str, minimum: int = 1) -> int:
        """Count the words of a text.

        Args:
            text: the text to count
            minimum: only count words at least this long
        """
        return sum(1 for w in text.split() if len(w) >= minimum)

    assert word_count.name == "word_count"
    assert word_count.description == "Count the words of a text."
    assert word_count.args["text"]["description"] == "the text to count"
    assert word_count.args["minimum"]["type"] == "integer"
    assert "word_count" in A.available()
    r = A.run("count", model=scripted('<|call|>word_count(text="a bb ccc", minimum="2")', "2 words"),
              tools="word_count")
    assert r.steps[1].observation == "2"


def test_tool_decorator_refuses_undocumented_and_varargs():
    with pytest.raises(LabkitUsageError):
        @A.tool
        def nodoc(x: str) -> str:
            return x
    with pytest.raises(LabkitUsageError):
        @A.tool
        def star(*args) -> str:
            """Star."""
            return ""


def test_buggy_user_tool_is_an_observation():
    @A.tool
    def flaky(x: str) -> str:
        """Always fails."""
        raise RuntimeError("disk on fire")

    r = A.run("x", model=scripted('<|call|>flaky(x="1")', "sorry"), tools=[flaky])
    assert r.steps[1].error and "disk on fire" in r.steps[1].observation


# ------------------------------------------------------------------------------------------------- approval
def _counter_tool():
    calls = []

    @A.tool(dangerous=True)
    def launch(target: str) -> str:
        """Launch something irreversible.

        Args:
            target: what to launch
        """
        calls.append(target)
        return f"launched {target}"

    return launch, calls


def test_rejected_dangerous_call_is_not_run():
    launch, calls = _counter_tool()
    asked = []
    r = A.run("x", model=scripted('<|call|>launch(target="rocket")', "ok"), tools=[launch], approve=True,
              approver=lambda name, args: asked.append((name, args)) or False)
    assert asked == [("launch", {"target": "rocket"})] and calls == []
    assert r.steps[1].approved is False and r.steps[1].observation.startswith("Rejected")


def test_approved_dangerous_call_runs():
    launch, calls = _counter_tool()
    r = A.run("x", model=scripted('<|call|>launch(target="kite")', "ok"), tools=[launch], approve=True,
              approver=lambda name, args: True)
    assert calls == ["kite"] and r.steps[1].approved is True


def test_safe_tools_are_not_asked_and_no_approve_means_no_question():
    launch, calls = _counter_tool()
    asked = []
    A.run("x", model=scripted('<|call|>calculator(expression="1+1")', "ok"), tools="calculator", approve=True,
          approver=lambda n, a: asked.append(n) or False)
    A.run("x", model=scripted('<|call|>launch(target="a")', "ok"), tools=[launch], approve=False,
          approver=lambda n, a: asked.append(n) or False)
    assert asked == [] and calls == ["a"]


def test_console_approver(monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert A.console_approver("python", {"code": "print(1)"})
    monkeypatch.setattr("builtins.input", lambda prompt: "")
    assert not A.console_approver("python", {"code": "print(1)"})


def test_python_tool_through_the_agent():
    r = A.run("x", model=scripted('<|call|>python(code="print(6*7)")', "42"), tools="python", approve=True,
              approver=lambda n, a: True)
    assert r.steps[1].observation == "42"


# --------------------------------------------------------------------------------------------------- search
def test_search_tool_over_retriever_like_objects():
    class Index:
        def search(self, query, k=3):
            return [SimpleNamespace(text=f"passage about {query}")]

    r = A.run("x", model=scripted('<|call|>search(query="bells")', "ok"), tools="search", retriever=Index())
    assert r.steps[1].observation == "[1] passage about bells"

    from langchain_core.documents import Document

    class LCRetriever:
        def invoke(self, query):
            return [Document(page_content="doc one"), Document(page_content="doc two")]

    t = A.search_tool(LCRetriever(), k=1)
    assert t.invoke({"query": "q"}) == "[1] doc one"
    with pytest.raises(LabkitUsageError):
        A.resolve("search")  # no index


# ------------------------------------------------------------------------------------------ zoo chat model
class FakeLM:
    """Stands in for a causal LM: 'generates' a scripted reply (token ids from the real zoo tokenizer)."""

    def __init__(self, tokenizer, replies):
        self.tokenizer = tokenizer
        self.replies = list(replies)
        self.config = SimpleNamespace(max_position_embeddings=512)
        self.kinds = "causal-lm"
        self.calls = []

    def generate(self, ids, **kw):
        import torch

        self.calls.append(kw)
        reply = self.replies.pop(0)
        new = self.tokenizer(reply, add_special_tokens=False, return_tensors="pt")["input_ids"]
        return torch.cat([ids, new], dim=1)


@pytest.fixture(scope="module")
def zoo_tokenizer():
    from labkit import models

    try:
        return models.load_tokenizer("tiny")
    except Exception as exc:  # pragma: no cover - the zoo tokenizer is not built on this machine
        pytest.skip(f"zoo tokenizer not available: {exc}")


def test_zoo_chat_model_parses_generated_tool_calls(zoo_tokenizer):
    fake = FakeLM(zoo_tokenizer, ['<|call|>calculator(expression="12*34")<|end|>', " The answer is 408.<|end|>"])
    chat = ZooChatModel(loaded=SimpleNamespace(model=fake, tokenizer=zoo_tokenizer, kind="causal-lm"))
    r = A.run("What is 12 times 34?", model=chat)
    assert r.steps[0].calls == [{"name": "calculator", "args": {"expression": "12*34"}}]
    assert r.steps[1].observation == "408" and r.answer == "The answer is 408."
    assert r.steps[0].raw["prompt"].startswith(F.EOT + F.SYSTEM)
    end_id = zoo_tokenizer.convert_tokens_to_ids(F.END)
    assert end_id in fake.calls[0]["eos_token_id"] and fake.calls[0]["do_sample"] is False


def test_zoo_chat_model_with_a_real_random_llama(zoo_tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(zoo_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(cfg).eval()
    chat = ZooChatModel(loaded=SimpleNamespace(model=model, tokenizer=zoo_tokenizer, kind="causal-lm"),
                        max_new_tokens=8)
    r = A.run("Hello", model=chat, tools="calculator", max_steps=2)
    first = r.steps[0]
    assert first.kind == "model" and 1 <= first.tokens_out <= 8 and first.tokens_in > 5
    # a long history is cut to the context window instead of failing
    r = A.run("word " * 400, model=chat, tools=None, max_steps=1)
    assert r.steps[0].tokens_in <= 256


def test_reply_parsing_and_message_conversion():
    m = reply_to_message('<|call|>lookup(entity="Mira Vell")<|end|>')
    assert m.tool_calls[0]["name"] == "lookup" and m.tool_calls[0]["args"] == {"entity": "Mira Vell"}
    m = reply_to_message(" Hello there.<|end|>junk")
    assert m.content == "Hello there." and not m.tool_calls
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    dicts = to_zoo_messages([HumanMessage("q"), AIMessage("", tool_calls=[{"name": "calculator",
                            "args": {"expression": "1+1"}, "id": "c1"}]), ToolMessage("2", tool_call_id="c1")])
    assert F.format_chat(dicts, add_generation_prompt=False).count(F.CALL) == 1


def test_non_chat_zoo_names_are_refused():
    with pytest.raises(LabkitUsageError):
        make_chat_model("minilm")
    with pytest.raises(LabkitUsageError):
        make_chat_model("")


# ----------------------------------------------------------------------------------------- OpenAI backend
def test_unreachable_openai_url_is_a_clear_error():
    t0 = time.monotonic()
    with pytest.raises(LabkitUsageError) as info:
        make_chat_model("openai:http://127.0.0.1:9/v1")
    assert "cannot reach" in str(info.value) and "llama-server" in str(info.value)
    assert time.monotonic() - t0 < 30  # a hang guard, not a speed target (the real figure is in benchmarks/)
    with pytest.raises(LabkitUsageError):
        make_chat_model("openai:localhost:8080")


class _FakeOpenAI(BaseHTTPRequestHandler):
    """A tiny OpenAI-compatible server: /v1/models, and /v1/chat/completions that calls the calculator once."""

    def log_message(self, *a):
        pass

    def _send(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert req["model"] == "fake-model" and req["tools"][0]["function"]["name"] == "calculator"
        done = any(m["role"] == "tool" for m in req["messages"])
        msg = ({"role": "assistant", "content": "It is 6."} if done else
               {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "calculator", "arguments": json.dumps({"expression": "2*3"})}}]})
        self._send({"id": "x", "object": "chat.completion", "created": 0, "model": "fake-model",
                    "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})


def test_openai_compatible_server_end_to_end():
    server = HTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1"
        r = A.run("What is 2 times 3?", model=f"openai:{url}", tools="calculator")
        assert r.steps[1].observation == "6" and r.answer == "It is 6."
        assert r.steps[0].tokens_in == 10 and r.steps[0].tokens_out == 5
    finally:
        server.shutdown()


# ------------------------------------------------------------------------------------------------- GGUF
def test_gguf_errors(tmp_path):
    with pytest.raises(LabkitUsageError) as info:
        make_chat_model(f"gguf:{tmp_path}/missing.gguf")
    assert "no GGUF file" in str(info.value)
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF")
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        with pytest.raises(LabkitUsageError) as info:
            make_chat_model(f"gguf:{fake}")
        assert "pip install llama-cpp-python" in str(info.value)


def test_llama_cpp_adapter_with_a_fake_llama():
    class FakeLlama:
        def __init__(self):
            self.n = 0

        def create_chat_completion(self, messages, tools=None, **kw):
            self.n += 1
            if self.n == 1:
                msg = {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "calculator", "arguments": '{"expression": "9*9"}'}}]}
            else:
                msg = {"role": "assistant", "content": "81"}
            return {"choices": [{"message": msg}], "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}

    chat = LlamaCppChatModel(llm=FakeLlama(), path="fake.gguf")
    r = A.run("9 squared?", model=chat, tools="calculator")
    assert r.steps[1].observation == "81" and r.answer == "81"


# ---------------------------------------------------------------------------------------------- the widget
def test_trace_widget_state_and_live_updates():
    from labkit.widgets import payload_bytes
    from labkit.widgets.trace import TraceWidget

    r = A.run("What is 2+2?", model=scripted('<|call|>calculator(expression="2+2")', "4"), tools="calculator")
    w = r.widget()
    assert [s["kind"] for s in w.steps] == ["model", "tool", "model"]
    assert w.answer == "4" and "calculator" in w.tools and payload_bytes(w) < 20_000
    live = TraceWidget.live("t", "m", ["calculator"])
    A.run("What is 2+2?", model=scripted('<|call|>calculator(expression="2+2")', "4"), tools="calculator",
          on_step=live.add_step)
    assert len(live.steps) == 3 and live.running
    bundle = r._repr_mimebundle_()
    assert "text/plain" in bundle and "text/html" in bundle


# ------------------------------------------------------------------------------------------------ the magic
@pytest.fixture(scope="module")
def ip():
    from IPython.core.getipython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython() or get_ipython()  # a process-wide singleton: returns the shell only the first time
    shell.run_line_magic("load_ext", "labkit")
    return shell


def test_magic_runs_with_a_model_variable(ip):
    ip.user_ns["fake"] = scripted('<|call|>calculator(expression="6*7")', "The answer is 42.")
    result = ip.run_cell_magic("agent", "--model fake --tools calculator --out res", "What is 6 times 7?")
    assert result.answer == "The answer is 42." and ip.user_ns["res"] is result


def test_magic_bad_input(ip):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("agent", "--tools nope", "x")
    assert "Tools:" in str(info.value) and "calculator" in str(info.value)
    with pytest.raises(UsageError):
        ip.run_cell_magic("agent", "", "   ")
    with pytest.raises(UsageError):
        ip.run_cell_magic("agent", "--index missing_var --tools search", "x")
    with pytest.raises(UsageError):
        ip.run_cell_magic("agent", "--max-steps zero", "x")


def test_magic_help(ip, capsys):
    ip.run_line_magic("agent", "--help")
    assert "--approve" in capsys.readouterr().out


# -------------------------------------------------------------------------------------------------- the CLI
def test_cli_tools_and_errors(capsys):
    from labkit.agent.cli import main

    assert main(["tools"]) == 0
    out = capsys.readouterr().out
    assert "calculator" in out and "python" in out and "dangerous" in out
    assert main(["run", "x", "--tools", "nope"]) == 2
    assert "unknown tool" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ the eval
def test_eval_tasks_are_held_out_and_balanced():
    from labkit.agent.evaluate import eval_tasks
    from labkit.zoo.corpus import split_of

    tasks = eval_tasks(120)
    assert len(tasks) == 120 and len({t["question"] for t in tasks}) == 120
    assert sum(t["kind"] == "arithmetic" for t in tasks) == 60
    assert all(split_of(t["key"]) == "test" for t in tasks)


def test_eval_scores_an_oracle_and_a_guesser():
    from labkit.agent.evaluate import evaluate, eval_tasks, is_correct

    tasks = eval_tasks(10)
    by_q = {t["question"]: t for t in tasks}

    def oracle(dicts):
        last = dicts[-1]
        if last["role"] == "tool":
            return f"It is {last['content']}."
        task = by_q[last["content"]]
        if not any(d["role"] == "system" and "tools:" in d["content"] for d in dicts):
            return "I do not know."
        if task["kind"] == "arithmetic":
            return F.format_call("calculator", expression=task["expression"])
        return F.format_call("lookup", entity=task["entity"])

    res = evaluate(ScriptedChatModel(policy=oracle), tasks=tasks)
    assert res.accuracy("direct") == 0.0
    assert res.accuracy("tools", "arithmetic") == 1.0
    assert "with tools" in repr(res)
    assert is_correct("The answer is 29,842.", "29842") and not is_correct("298420", "29842")
    assert is_correct("She is a baker.", "baker") and not is_correct("bakery", "baker")


# ------------------------------------------------------------------------------------------ the real tiny-chat
@pytest.mark.slow
def test_tiny_chat_uses_the_calculator_and_copies_the_result():
    from labkit import models

    try:
        models.load("tiny-chat")
    except Exception as exc:  # pragma: no cover - weights not built on this machine
        pytest.skip(f"tiny-chat not available: {exc}")
    r = A.run("What is 347 times 86?", model=ZooChatModel(model_name="tiny-chat", max_new_tokens=40),
              tools="calculator,lookup", max_steps=3)
    assert r.tool_steps and r.tool_steps[0].name == "calculator"
    assert r.tool_steps[0].observation == "29842"
    assert r.answer and "29842" in r.answer


def test_magic_task_that_is_not_valid_unicode(ip):
    ip.user_ns["fake"] = scripted("The answer is 42.")
    result = ip.run_cell_magic("agent", "--model fake --tools calculator", "What is 6 \ud800 times 7?")
    assert result.answer == "The answer is 42." and "\ud800" not in result.task
    assert any(s.kind == "note" and "not valid Unicode" in s.text for s in result.steps)


def test_on_progress_sees_each_step():
    seen = []
    r = A.run("What is 347 times 86?", model=scripted('<|call|>calculator(expression="347*86")', "29842."),
              tools="calculator", on_progress=seen.append)
    assert [p.item for p in seen] == r.steps and all(p.kind == "step" and p.total == 6 for p in seen)
    assert seen[-1].done == r.n_model_calls
