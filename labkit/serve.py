"""Serve a model behind an OpenAI-compatible HTTP API on 127.0.0.1: the official ``openai`` client, LangChain's
``ChatOpenAI`` and ``%%agent --model openai:<url>`` talk to it as to any hosted model.

    labkit serve tiny-chat --port 8000                 # this module's server (FastAPI + uvicorn), foreground
    labkit serve gguf:tiny-chat-q8_0.gguf --port 8001   # a zoo export: the same server, llama.cpp underneath
    labkit serve gguf:other.gguf --llama-server          # llama-cpp-python's own server (its chat templates)

    with labkit.serve.start("tiny-chat") as srv:        # a subprocess, stopped (with its port) at the end
        OpenAI(base_url=srv.url, api_key="none").chat.completions.create(...)
    srv = labkit.serve.start("tiny-chat", wait=False)   # returns at once; srv.wait() when it is needed

    load_test(srv.url, clients=8)                       # what 8 concurrent streaming clients saw (TTFT, tokens/s)
    fire(srv.url, 12)                                   # 12 requests at once: (when sent, HTTP status) each
    bucket_decisions(times, rate, burst)                # which arrivals the server's TokenBucket lets through

Endpoints: ``GET /v1/models``; ``POST /v1/chat/completions`` (messages, ``max_tokens``, ``temperature``,
``stream``, ``tools`` in the OpenAI format: the zoo models call them in their own ``<|call|>`` format, which the
server turns into ``tool_calls``); ``POST /v1/completions`` (a raw prompt, ``stream`` too); ``GET /metrics`` (Prometheus: requests,
latency, time to first token, tokens); ``GET /health``. A token-bucket rate limiter (``--rate`` requests per second,
``--burst``) answers 429 with ``Retry-After`` when the bucket is empty.

Hand-written on purpose, and small: the request/response mapping is what lab 17 shows. The model side is the
kit's own chat models (``labkit.agent.chat_models``: LangChain chat models over transformers or llama.cpp), so
the server streams, stops and calls tools exactly as ``%%agent`` does in-process. Generation is serialised (one
model, one lock): concurrent clients queue, which is what lab 17 measures.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LabkitError, LabkitUsageError

HOST = "127.0.0.1"


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; ``take()`` is True when a request may pass."""

    def __init__(self, rate: float, burst: int | None = None, clock=time.monotonic):
        if rate <= 0:
            raise LabkitUsageError("rate: give a number of requests per second above 0")
        self.rate, self.capacity, self.clock = float(rate), float(burst or max(1, int(rate))), clock
        self.tokens, self.last = self.capacity, clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False

    def wait_s(self) -> float:
        with self._lock:
            return max(0.0, (1 - self.tokens) / self.rate)


def bucket_decisions(times, rate: float, burst: int | None = None) -> list[bool]:
    """Which of the requests arriving at ``times`` (seconds, in order) a :class:`TokenBucket` lets through: the
    server's own limiter, driven by a clock that reads the arrival times."""
    now = [times[0] if len(times) else 0.0]
    bucket = TokenBucket(rate, burst, clock=lambda: now[0])
    out = []
    for t in times:
        now[0] = t
        out.append(bucket.take())
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------------ the app
def build_app(model: str = "tiny-chat", *, rate: float | None = None, burst: int | None = None,
              max_tokens: int = 64):
    """The FastAPI application serving ``model`` (a zoo name, a run, or a zoo model's GGUF export)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from langchain_core.messages import AIMessageChunk, convert_to_messages
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

    from .agent.chat_models import make_chat_model

    import prometheus_client

    prometheus_client.disable_created_metrics()  # no *_created series: only what a dashboard reads
    from starlette.concurrency import run_in_threadpool

    chat = make_chat_model(model, max_new_tokens=max_tokens)
    getattr(chat, "lm", None)  # load the weights now, not on the first request
    lock = threading.Lock()
    bucket = TokenBucket(rate, burst) if rate else None
    reg = CollectorRegistry()
    m_requests = Counter("labkit_requests_total", "HTTP requests by endpoint and status", ["endpoint", "status"],
                         registry=reg)
    m_latency = Histogram("labkit_request_seconds", "request latency (the whole reply)", ["endpoint"], registry=reg,
                          buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
    m_ttft = Histogram("labkit_time_to_first_token_seconds", "time to the first streamed token", registry=reg,
                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
    m_tokens = Counter("labkit_tokens_total", "tokens read and generated", ["kind"], registry=reg)
    app = FastAPI(title=f"labkit serve {model}")

    def err(status: int, message: str, endpoint: str, kind="invalid_request_error", headers=None):
        m_requests.labels(endpoint, str(status)).inc()
        return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status, headers=headers)

    def limited(endpoint: str):
        if bucket is not None and not bucket.take():
            wait = bucket.wait_s()
            return err(429, f"rate limit: at most {bucket.rate:g} requests/s (burst {bucket.capacity:g}); retry in "
                       f"{wait:.2f} s", endpoint, "rate_limit_exceeded", {"Retry-After": f"{max(1, round(wait))}"})
        return None

    def configured(body: dict):
        t = body.get("temperature", 0.0)
        n = next((body[k] for k in ("max_tokens", "max_completion_tokens") if body.get(k) is not None), max_tokens)
        if not isinstance(n, int) or not 1 <= n <= 512:
            raise LabkitUsageError("max_tokens: an integer from 1 to 512")
        if not isinstance(t, (int, float)) or not 0 <= t <= 2:
            raise LabkitUsageError("temperature: a number from 0 to 2")
        c = chat.model_copy(update={"temperature": float(t), "max_new_tokens": n})
        tools = body.get("tools") or []
        if tools:
            choice = body.get("tool_choice")
            if isinstance(choice, dict):
                choice = choice.get("function", {}).get("name")
            c = c.bind_tools(tools, tool_choice=choice)
        stop = body.get("stop")
        return c, ([stop] if isinstance(stop, str) else stop)

    def openai_message(msg) -> dict:
        out = {"role": "assistant", "content": msg.content or None if msg.tool_calls else msg.content}
        if msg.tool_calls:
            out["tool_calls"] = [{"id": c.get("id") or "call_" + uuid.uuid4().hex[:8], "type": "function",
                                  "function": {"name": c["name"], "arguments": json.dumps(c["args"])}}
                                 for c in msg.tool_calls]
        return out

    def usage(msg) -> dict:
        u = getattr(msg, "usage_metadata", None) or {}
        m_tokens.labels("prompt").inc(u.get("input_tokens", 0))
        m_tokens.labels("completion").inc(u.get("output_tokens", 0))
        return {"prompt_tokens": u.get("input_tokens", 0), "completion_tokens": u.get("output_tokens", 0),
                "total_tokens": u.get("total_tokens", 0)}

    @app.get("/health")
    def health():
        return {"status": "ok", "model": model}

    @app.get("/v1/models")
    def list_models():
        m_requests.labels("models", "200").inc()
        return {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "labkit"}]}

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(reg), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        t0 = time.perf_counter()
        ep = "chat"
        if (r := limited(ep)) is not None:
            return r
        try:
            body = await request.json()
            messages = convert_to_messages(body["messages"])
            c, stop = configured(body)
        except (KeyError, TypeError, ValueError, LabkitUsageError) as exc:
            return err(400, f"bad request: {exc}", ep)
        rid, created = "chatcmpl-" + uuid.uuid4().hex[:12], int(time.time())
        head = {"id": rid, "created": created, "model": model}
        if not body.get("stream"):
            def invoke():
                with lock:
                    return c.invoke(messages, stop=stop)

            try:  # in a worker thread: the event loop keeps accepting (and rate-limiting) other requests
                msg = await run_in_threadpool(invoke)
            except LabkitError as exc:
                return err(400, str(exc), ep)
            finish = "tool_calls" if msg.tool_calls else msg.response_metadata.get("finish_reason", "stop")
            m_requests.labels(ep, "200").inc()
            m_latency.labels(ep).observe(time.perf_counter() - t0)
            return {**head, "object": "chat.completion", "usage": usage(msg),
                    "choices": [{"index": 0, "message": openai_message(msg), "finish_reason": finish}]}

        def events():
            first = True
            with lock:
                full = None
                for chunk in c.stream(messages, stop=stop):
                    full = chunk if full is None else full + chunk
                    if chunk.content:
                        if first:
                            m_ttft.observe(time.perf_counter() - t0)
                            first = False
                        delta = {"role": "assistant", "content": chunk.content}
                        yield "data: " + json.dumps({**head, "object": "chat.completion.chunk", "choices": [
                            {"index": 0, "delta": delta, "finish_reason": None}]}) + "\n\n"
            msg = full if full is not None else AIMessageChunk(content="")
            delta = {}
            if msg.tool_calls:
                delta = {"role": "assistant", "tool_calls": [
                    {**t, "index": i} for i, t in enumerate(openai_message(msg)["tool_calls"])]}
            finish = "tool_calls" if msg.tool_calls else msg.response_metadata.get("finish_reason", "stop")
            yield "data: " + json.dumps({**head, "object": "chat.completion.chunk", "usage": usage(msg), "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"
            yield "data: [DONE]\n\n"
            m_requests.labels(ep, "200").inc()
            m_latency.labels(ep).observe(time.perf_counter() - t0)

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(request: Request):
        from .generate import generate

        t0 = time.perf_counter()
        ep = "completions"
        if (r := limited(ep)) is not None:
            return r
        try:
            body = await request.json()
            prompt = body["prompt"]
            if isinstance(prompt, list):
                prompt = prompt[0]
            n = int(body.get("max_tokens") or 16)
            if not 1 <= n <= 512:
                raise ValueError("max_tokens: an integer from 1 to 512")
            kw = dict(max_new_tokens=n, temperature=float(body.get("temperature", 0.0)), top_p=body.get("top_p"),
                      seed=body.get("seed", 0))
        except (KeyError, TypeError, ValueError) as exc:
            return err(400, f"bad request: {exc}", ep)
        rid, created = "cmpl-" + uuid.uuid4().hex[:12], int(time.time())
        head = {"id": rid, "object": "text_completion", "created": created, "model": model}

        def finished(out) -> tuple[str, dict]:
            m_tokens.labels("prompt").inc(out.n_prompt_tokens)
            m_tokens.labels("completion").inc(out.n_new_tokens)
            m_requests.labels(ep, "200").inc()
            m_latency.labels(ep).observe(time.perf_counter() - t0)
            return ("stop" if out.stop == "eos" else "length",
                    {"prompt_tokens": out.n_prompt_tokens, "completion_tokens": out.n_new_tokens,
                     "total_tokens": out.n_prompt_tokens + out.n_new_tokens})

        if body.get("stream"):
            import queue

            chunks: queue.Queue = queue.Queue()

            def produce():  # generation in a worker thread; its text goes out as it arrives
                try:
                    with lock:
                        chunks.put(("done", generate(prompt, model, **kw, on_text=lambda t: chunks.put(("text", t)))))
                except Exception as exc:  # noqa: BLE001 - reported to the client in the stream
                    chunks.put(("error", exc))

            def events():
                threading.Thread(target=produce, daemon=True).start()
                first = True
                while True:
                    kind, value = chunks.get()
                    if kind == "text":
                        if first:
                            m_ttft.observe(time.perf_counter() - t0)
                            first = False
                        yield "data: " + json.dumps({**head, "choices": [
                            {"index": 0, "text": value, "finish_reason": None}]}) + "\n\n"
                    elif kind == "error":
                        m_requests.labels(ep, "500").inc()
                        yield "data: " + json.dumps({"error": {"message": str(value), "type": "server_error"}}) + "\n\n"
                        break
                    else:
                        finish, use = finished(value)
                        yield "data: " + json.dumps({**head, "usage": use, "choices": [
                            {"index": 0, "text": "", "finish_reason": finish}]}) + "\n\n"
                        break
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        def run():
            with lock:
                return generate(prompt, model, **kw)

        try:
            out = await run_in_threadpool(run)
        except LabkitError as exc:
            return err(400, str(exc), ep)
        finish, use = finished(out)
        return {**head, "choices": [{"index": 0, "text": out.text, "finish_reason": finish}], "usage": use}

    return app


# -------------------------------------------------------------------------------------------- as a subprocess
@dataclass
class Server:
    """A server started by :func:`start`; ``url`` is the OpenAI base URL (``.../v1``). ``stop()`` ends it."""

    model: str
    port: int
    process: subprocess.Popen
    log: Path
    kind: str = "labkit"
    started_s: float = 0.0
    _stopped: bool = field(default=False, repr=False)
    _t0: float = field(default=0.0, repr=False)
    _timeout: float = field(default=90.0, repr=False)

    def wait(self, timeout: float | None = None) -> "Server":
        """Block until the server answers ``/v1/models`` (``started_s``: seconds from its start); raise if its
        process exited first or nothing answers within ``timeout`` seconds of the start."""
        import urllib.request

        if self.started_s:
            return self
        limit = self._timeout if timeout is None else timeout
        while time.perf_counter() - self._t0 < limit:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-1500:]
                raise LabkitError(f"the server for {self.model!r} exited (code {self.process.returncode}) before it "
                                  f"answered:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as r:
                    if r.status == 200:
                        self.started_s = time.perf_counter() - self._t0
                        return self
            except OSError:
                time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
        self.stop()  # (which removes the log: its tail goes into the message)
        raise LabkitError(f"the server for {self.model!r} did not answer within {limit:.0f} s; its last output:\n"
                          f"{tail}")

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def root(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        try:  # the log is for a server that fails to start (start() shows its tail); a stopped one leaves none
            self.log.unlink(missing_ok=True)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __del__(self):  # a forgotten server does not outlive its notebook kernel
        try:
            self.stop(2)
        except Exception:  # noqa: BLE001
            pass


def server_command(model: str, port: int, *, llama_server: bool = False, rate: float | None = None,
                   burst: int | None = None, max_tokens: int = 64) -> list[str]:
    if llama_server:
        path = model[5:] if model.startswith("gguf:") else model
        if not Path(path).is_file():
            raise LabkitUsageError(f"`llama_server` needs a GGUF file; no file at {path!r}")
        from .models import _gguf_context

        n_ctx = _gguf_context(Path(path))
        return [sys.executable, "-m", "llama_cpp.server", "--model", path, "--host", HOST, "--port", str(port),
                "--n_ctx", str(n_ctx), "--n_threads", "1", "--n_threads_batch", "1"]
    cmd = [sys.executable, "-m", "labkit.serve", model, "--port", str(port), "--max-tokens", str(max_tokens)]
    if rate:
        cmd += ["--rate", str(rate)] + (["--burst", str(burst)] if burst else [])
    return cmd


def start(model: str = "tiny-chat", port: int | None = None, *, llama_server: bool = False,
          rate: float | None = None, burst: int | None = None, max_tokens: int = 64,
          timeout: float = 90.0, wait: bool = True) -> Server:
    """Start a server for ``model`` in a subprocess on 127.0.0.1 and wait until it answers ``/v1/models``.

    ``wait=False`` returns at once: the server loads in its own process while the caller does something else;
    ``server.wait()`` then blocks until it answers (and raises if it exited)."""
    port = port or _free_port()
    cmd = server_command(model, port, llama_server=llama_server, rate=rate, burst=burst, max_tokens=max_tokens)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"labkit-serve-{port}.log"
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    srv = Server(model, port, proc, log, "llama.cpp" if llama_server else "labkit", _t0=t0, _timeout=timeout)
    return srv.wait() if wait else srv


# ------------------------------------------------------------------------------------------ measuring it
@dataclass
class Timing:
    """One streamed request as its client saw it (seconds from the start of the load test)."""

    client: int
    start: float
    first: float | None  # when the first token arrived
    end: float
    tokens: int  # streamed chunks with text (one per token on these servers)
    text: str = ""

    @property
    def ttft(self) -> float:
        return (self.first if self.first is not None else self.end) - self.start

    @property
    def tokens_per_s(self) -> float:
        """Decode speed once tokens flow: tokens after the first, over the time after the first."""
        gen = self.end - (self.first if self.first is not None else self.end)
        return (self.tokens - 1) / gen if self.tokens > 1 and gen > 0 else 0.0


def load_test(url: str, clients: int, requests: int = 1, *, prompt: str = "Tell me a story.", max_tokens: int = 32,
              model: str = "default", chat: bool = True) -> list[Timing]:
    """``clients`` threads, each sending ``requests`` streamed requests one after another to the OpenAI-compatible
    server at ``url`` (loopback only), all starting together: what each client saw, per request."""
    import urllib.parse

    from openai import OpenAI

    if not 1 <= clients <= 32:
        raise LabkitUsageError("clients: from 1 to 32 (a load test on one machine, not a benchmark farm)")
    if urllib.parse.urlparse(url).hostname not in ("127.0.0.1", "localhost"):
        raise LabkitUsageError(f"url: the load test only talks to this machine (127.0.0.1), not {url!r}")
    timings: list[Timing] = []
    lock, go = threading.Lock(), threading.Barrier(clients)

    def one(i: int):
        client = OpenAI(base_url=url, api_key="none", max_retries=0, timeout=120)
        go.wait()
        for _ in range(requests):
            start, first, n, text = time.perf_counter(), None, 0, []
            if chat:
                stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                        max_tokens=max_tokens, temperature=0, stream=True)
                pieces = (c.choices[0].delta.content if c.choices else None for c in stream)
            else:
                stream = client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0,
                                                   stream=True)
                pieces = (c.choices[0].text if c.choices else None for c in stream)
            for piece in pieces:
                if piece:
                    first = first or time.perf_counter()
                    n += 1
                    text.append(piece)
            with lock:
                timings.append(Timing(i, start, first, time.perf_counter(), n, "".join(text)))

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    base = min(t.start for t in timings)
    return sorted([Timing(t.client, t.start - base, None if t.first is None else t.first - base, t.end - base,
                          t.tokens, t.text) for t in timings], key=lambda t: t.start)


def fire(url: str, n: int, *, endpoint: str = "/completions", body: dict | None = None) -> list[tuple[float, int]]:
    """``n`` requests sent at once (one thread each) to ``url + endpoint``: ``(seconds after the first was sent,
    HTTP status)`` for each, in the order they were sent."""
    import urllib.error
    import urllib.request

    data = json.dumps(body or {"prompt": "Once", "max_tokens": 1}).encode()
    out: list[tuple[float, int]] = [(0.0, 0)] * n
    go = threading.Barrier(n)

    def hit(i: int):
        req = urllib.request.Request(url + endpoint, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        go.wait()
        sent = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                code = r.status
        except urllib.error.HTTPError as e:
            code = e.code
        out[i] = (sent, code)

    threads = [threading.Thread(target=hit, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    base = min(s for s, _ in out)
    return sorted(((s - base, c) for s, c in out), key=lambda x: x[0])


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="labkit serve", description="an OpenAI-compatible server on 127.0.0.1")
    p.add_argument("model", nargs="?", default="tiny-chat", help="a zoo name, a run, or gguf:<path>")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--rate", type=float, help="requests per second allowed (token bucket); none: unlimited")
    p.add_argument("--burst", type=int, help="requests the bucket saves up (default: the rate)")
    p.add_argument("--max-tokens", type=int, default=64, help="default max_tokens of a reply")
    p.add_argument("--llama-server", action="store_true",
                   help="run llama-cpp-python's own server on the GGUF instead (its chat templates and grammars)")
    args = p.parse_args(argv)
    if args.llama_server:
        try:
            cmd = server_command(args.model, args.port, llama_server=True)
        except LabkitError as exc:
            print(f"labkit serve: {exc}", file=sys.stderr)
            return 2
        print(f"llama.cpp's server on http://{HOST}:{args.port}/v1", flush=True)
        return subprocess.call(cmd)
    import uvicorn

    try:
        app = build_app(args.model, rate=args.rate, burst=args.burst, max_tokens=args.max_tokens)
    except LabkitError as exc:
        print(f"labkit serve: {exc}", file=sys.stderr)
        return 2
    print(f"serving {args.model} on http://{HOST}:{args.port}/v1 (OpenAI-compatible; /metrics for Prometheus)",
          flush=True)
    uvicorn.run(app, host=HOST, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
