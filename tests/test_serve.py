"""labkit serve: an OpenAI-compatible server on 127.0.0.1 that the official client, LangChain and %%agent use;
llama-cpp-python's own server on a zoo GGUF; the rate limiter; nothing left running afterwards."""
from __future__ import annotations

import socket
import threading
import urllib.request

import pytest

from labkit import serve

TOOLS = [{"type": "function", "function": {
    "name": "calculator", "description": "evaluate arithmetic",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}]
QA = "Context: Ada keeps the key in the red box. Question: Where does Ada keep the key?"


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_token_bucket_holds_its_rate():
    now = [0.0]
    b = serve.TokenBucket(2, burst=3, clock=lambda: now[0])
    assert [b.take() for _ in range(4)] == [True, True, True, False]  # the burst, then empty
    now[0] += 0.5  # half a second at 2/s: one more
    assert b.take() and not b.take()
    now[0] += 10  # a long pause refills only up to the burst
    assert sum(b.take() for _ in range(10)) == 3
    with pytest.raises(Exception, match="rate"):
        serve.TokenBucket(0)


@pytest.fixture(scope="module")
def server():
    srv = serve.start("tiny-chat-v2")
    yield srv
    srv.stop()
    assert srv.process.poll() is not None and _port_closed(srv.port)
    assert not srv.log.exists()  # a stopped server leaves no log file behind


def test_openai_client_chat_stream_and_tools(server):
    from openai import OpenAI

    c = OpenAI(base_url=server.url, api_key="none", max_retries=0)
    assert [m.id for m in c.models.list().data] == ["tiny-chat-v2"]
    r = c.chat.completions.create(model="tiny-chat-v2", messages=[{"role": "user", "content": QA}], max_tokens=20)
    assert r.choices[0].message.content == "the red box" and r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 10 and r.usage.completion_tokens >= 3
    chunks = list(c.chat.completions.create(model="x", messages=[{"role": "user", "content": QA}], stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == "the red box"
    assert chunks[-1].choices[0].finish_reason == "stop"
    r = c.chat.completions.create(model="x", messages=[{"role": "user", "content": "What is 6021 times 3148?"}],
                                  tools=TOOLS)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and call.function.name == "calculator"
    assert call.function.arguments == '{"expression": "6021*3148"}'
    from openai import BadRequestError

    with pytest.raises(BadRequestError):
        c.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}], max_tokens=0)
    text = urllib.request.urlopen(server.root + "/metrics").read().decode()
    assert 'labkit_requests_total{endpoint="chat",status="200"} 3.0' in text
    assert "labkit_time_to_first_token_seconds_count 1.0" in text


def test_completions_stream_token_by_token(server):
    from openai import OpenAI

    c = OpenAI(base_url=server.url, api_key="none", max_retries=0)
    whole = c.completions.create(model="x", prompt="Once upon a time", max_tokens=10, temperature=0)
    chunks = list(c.completions.create(model="x", prompt="Once upon a time", max_tokens=10, temperature=0, stream=True))
    texts = [ch.choices[0].text for ch in chunks if ch.choices and ch.choices[0].text]
    assert "".join(texts) == whole.choices[0].text and len(texts) > 3
    assert chunks[-1].choices[0].finish_reason == "length" and chunks[-1].usage.completion_tokens == 10
    text = urllib.request.urlopen(server.root + "/metrics").read().decode()
    assert 'labkit_requests_total{endpoint="completions",status="200"} 2.0' in text


def test_langchain_and_the_agent_through_the_server(server):
    from langchain_openai import ChatOpenAI

    from labkit.agent.loop import run

    llm = ChatOpenAI(base_url=server.url, api_key="none", model="tiny-chat-v2", temperature=0, max_retries=0)
    assert llm.invoke(QA).content == "the red box"
    r = run("What is 6021 times 3148?", f"openai:{server.url}")
    assert "18954108" in r.answer


def test_rate_limit_answers_429_with_retry_after():
    with serve.start("tiny-draft", rate=0.1, burst=2) as srv:  # one request per 10 s after a burst of 2
        codes, lock = [], threading.Lock()

        def hit():
            try:
                req = urllib.request.Request(srv.url + "/completions", method="POST",
                                             data=b'{"prompt": "Once", "max_tokens": 1}',
                                             headers={"Content-Type": "application/json"})
                code = urllib.request.urlopen(req).status
            except urllib.error.HTTPError as e:
                code = e.code
                assert code != 429 or int(e.headers["Retry-After"]) >= 5
            with lock:
                codes.append(code)

        threads = [threading.Thread(target=hit) for _ in range(6)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert sorted(codes).count(200) == 2 and codes.count(429) == 4, codes
    assert _port_closed(srv.port)


def test_llama_cpp_server_on_a_zoo_gguf(tmp_path):
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server]")
    from openai import OpenAI

    from labkit.gguf import export_gguf

    path = export_gguf("tiny-chat-v2", tmp_path / "m.gguf", "q8_0").path
    with serve.start(f"gguf:{path}", llama_server=True) as srv:
        c = OpenAI(base_url=srv.url, api_key="none", max_retries=0)
        r = c.completions.create(model="m", prompt="Once upon a time", max_tokens=8, temperature=0)
        assert r.choices[0].text.strip() and r.usage.completion_tokens <= 8
        r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": QA}], max_tokens=12,
                                      temperature=0)
        assert "red box" in r.choices[0].message.content  # the GGUF's own chat template, applied by llama.cpp
    assert srv.process.poll() is not None and _port_closed(srv.port)
