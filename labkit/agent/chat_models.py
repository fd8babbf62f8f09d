"""LangChain chat models for the agent: the zoo models, scripted stand-ins, OpenAI-compatible servers, GGUF files.

``make_chat_model(spec)`` turns a ``--model`` value into a LangChain ``BaseChatModel``:

- ``tiny-chat`` (or any zoo name / local folder of a causal LM): :class:`ZooChatModel`. It renders the messages
  with the zoo chat template (``labkit.zoo.formats.format_chat``), generates with transformers, and reads a reply
  that starts with ``<|call|>`` as a tool call (``parse_tool_call``): the format tiny-chat was trained on.
  A LangChain ``AIMessage`` with ``tool_calls`` comes out, so LangGraph drives it like any other chat model.
- ``openai:<base-url>``: LangChain's standard ``ChatOpenAI`` pointed at any OpenAI-compatible server (llama.cpp's
  ``llama-server``, vLLM, Ollama, LM Studio). The server is probed first, so a wrong URL fails in seconds with
  a clear message instead of hanging.
- ``gguf:<path>``: :class:`LlamaCppChatModel`, a GGUF file run in-process by llama-cpp-python
  (installed with labkit; it compiles once), using its OpenAI-style ``create_chat_completion`` with tools.

:class:`ScriptedChatModel` replies from a list of strings or a function of the messages (zoo format, so the same
parser runs): the tests use it, and the labs use it as a stand-in for a larger instruction-following model.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from ..errors import LabkitUsageError
from ..zoo import formats as F


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(content)


def to_zoo_messages(messages: Sequence[BaseMessage]) -> list[dict]:
    """LangChain messages -> the ``{"role", "content"}`` dicts that ``format_chat`` renders."""
    out = []
    for m in messages:
        if isinstance(m, SystemMessage):
            out.append({"role": "system", "content": _text(m.content)})
        elif isinstance(m, HumanMessage):
            out.append({"role": "user", "content": _text(m.content)})
        elif isinstance(m, AIMessage):
            if m.tool_calls:
                out.append({"role": "assistant", "tool_calls": [
                    {"function": {"name": c["name"], "arguments": c["args"]}} for c in m.tool_calls]})
            else:
                out.append({"role": "assistant", "content": _text(m.content)})
        elif isinstance(m, ToolMessage):
            out.append({"role": "tool", "content": _text(m.content)})
        else:
            raise LabkitUsageError(f"the zoo chat format has no role for a {type(m).__name__}")
    return out


def tools_system_prompt(tool_names: Sequence[str]) -> str:
    """The system prompt tiny-chat was trained with, listing the bound tools."""
    if not tool_names:
        return F.NO_TOOLS_SYSTEM
    if list(tool_names) == list(F.TOOLS):
        return F.TOOLS_SYSTEM
    return "You can use tools: " + ", ".join(tool_names) + "."


def reply_to_message(raw: str, *, tool_names: Sequence[str] | None = None) -> AIMessage:
    """A generated assistant turn in the zoo format -> an ``AIMessage`` (with ``tool_calls`` for a call).

    A reply that starts with ``<|call|>`` but is not a well-formed call becomes an ``invalid_tool_calls`` entry,
    so the agent loop can tell the model what went wrong (error recovery) instead of stopping.
    """
    content = F.reply_text(raw)
    meta = {"raw": raw}
    if content.startswith(F.CALL):
        parsed = F.parse_tool_call(content)
        call_id = "call_" + uuid.uuid4().hex[:8]
        if parsed is None:
            return AIMessage(content=content, response_metadata=meta, invalid_tool_calls=[{
                "type": "invalid_tool_call", "name": None, "args": content, "id": call_id,
                "error": 'not a well-formed call; write <|call|>name(arg="value")'}])
        name, args = parsed
        return AIMessage(content="", response_metadata=meta,
                         tool_calls=[{"type": "tool_call", "name": name, "args": args, "id": call_id}])
    return AIMessage(content=content, response_metadata=meta)


@dataclass
class _CallOptions:
    """What one call asks of the generator beyond the prompt."""

    prefix: str = ""                    # text the reply is forced to start with (tool_choice)
    stop: list[str] = field(default_factory=list)
    model: str | None = None            # a per-call model override (``invoke(..., model="tiny-base")``)
    no_calls: bool = False              # tool_choice="none": the reply may not be a tool call


def _cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop string (not included); whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _tool_choice_prefix(tool_choice, tools: list[dict]) -> str:
    """The start a reply is forced to have for ``tool_choice``: ``<|call|>`` for any tool, ``<|call|>name(``
    for a named one (or when exactly one tool is bound and a call is required)."""
    if tool_choice in (None, False, "auto", "none"):
        return ""
    names = [t["function"]["name"] for t in tools]
    if tool_choice in (True, "any", "required"):
        return F.CALL + (names[0] + "(" if len(names) == 1 else "")
    if isinstance(tool_choice, dict):  # {"type": "function", "function": {"name": ...}} or {"name": ...}
        tool_choice = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
    if isinstance(tool_choice, str) and tool_choice in names:
        return F.CALL + tool_choice + "("
    raise LabkitUsageError(f"tool_choice {tool_choice!r} names no bound tool; bound: {', '.join(names) or 'none'}")


class ZooFormatChatModel(BaseChatModel):
    """Base of the chat models that speak the zoo format: messages -> prompt text -> reply text -> AIMessage.

    ``stream()`` yields ``AIMessageChunk``s: text as it is generated; a tool call (a reply that starts with
    ``<|call|>``) as one chunk once it is complete; the last chunk (``chunk_position="last"``) carries the usage,
    ``model_name`` and the raw reply. ``stop`` strings end the reply (they are not included in it).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)
    system_prompt: str | None = Field(default="auto", description="'auto': the prompt the model was trained with")
    stop: list[str] | None = Field(default=None, description="strings that end the reply (not included)")

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        """Bind tools (any LangChain tool, function or schema). ``tool_choice``: ``"auto"`` (the model decides),
        ``"none"`` (no tools in the prompt, and ``<|call|>`` cannot be generated), ``"any"``/``"required"`` (the reply is forced to start with
        ``<|call|>``) or a tool's name (forced to start with ``<|call|>name(``)."""
        from langchain_core.utils.function_calling import convert_to_openai_tool

        formatted = [convert_to_openai_tool(t) for t in tools]
        _tool_choice_prefix(tool_choice, formatted)  # a bad name fails here, not at the first call
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    # ------------------------------------------------------------------------------------------- naming
    def _model_label(self, override: str | None = None) -> str:
        """The model's name as reported in ``response_metadata["model_name"]`` and LangSmith parameters."""
        return override or self._llm_type

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(ls_provider="labkit", ls_model_name=self._model_label(kwargs.get("model")),
                                 ls_model_type="chat")
        temperature = getattr(self, "temperature", None)
        if temperature is not None:
            params["ls_temperature"] = temperature
        max_tokens = getattr(self, "max_new_tokens", None)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        stops = stop or self.stop
        if stops:
            params["ls_stop"] = list(stops)
        return params

    # ------------------------------------------------------------------------------------------- prompt
    def prompt_messages(self, messages: Sequence[BaseMessage], tools: list | None) -> list[dict]:
        dicts = to_zoo_messages(messages)
        if self.system_prompt and not any(d["role"] == "system" for d in dicts):
            names = [t["function"]["name"] for t in tools or []]
            text = tools_system_prompt(names) if self.system_prompt == "auto" else self.system_prompt
            dicts.insert(0, {"role": "system", "content": text})
        return dicts

    def _prepare(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict):
        tools = kwargs.get("tools") or []
        choice = kwargs.get("tool_choice")
        prefix = _tool_choice_prefix(choice, tools) if tools else ""
        dicts = self.prompt_messages(messages, [] if choice == "none" else tools)
        prompt = F.format_chat(dicts, add_generation_prompt=True)
        opts = _CallOptions(prefix=prefix, stop=list(stop if stop is not None else self.stop or []),
                            model=kwargs.get("model"), no_calls=choice == "none")
        return prompt, dicts, tools, opts

    # ------------------------------------------------------------------------------------------- generation
    def _complete(self, prompt: str, dicts: list[dict]) -> tuple[str, dict]:
        """Return (generated text of the assistant turn, usage dict)."""
        raise NotImplementedError

    def _run(self, prompt: str, dicts: list[dict], opts: _CallOptions) -> tuple[str, dict]:
        """(raw assistant turn, usage) for one call; models that can honour ``opts`` override this."""
        return self._complete(prompt, dicts)

    def _run_stream(self, prompt: str, dicts: list[dict], opts: _CallOptions, usage: dict) -> Iterator[str]:
        """Pieces of the raw assistant turn as they are generated (this default: all of it at once)."""
        raw, u = self._run(prompt, dicts, opts)
        usage.update(u or {})
        yield raw

    def _finish(self, raw: str, prompt: str, tools: list, opts: _CallOptions, usage: dict,
                seconds: float) -> AIMessage:
        """The ``AIMessage`` for a whole raw reply (stop strings applied), with the standard metadata."""
        raw, stopped = _cut_at_stop(raw, opts.stop)
        msg = reply_to_message(raw, tool_names=[t["function"]["name"] for t in tools])
        limit = getattr(self, "max_new_tokens", None)
        cut_short = bool(limit and usage and usage.get("output", 0) >= limit)
        ended = stopped or F.END in raw or F.EOT in raw or not cut_short
        finish = "tool_calls" if msg.tool_calls else "stop" if ended else "length"
        msg.response_metadata.update({"prompt": prompt, "seconds": seconds, "model": self._llm_type,
                                      "model_name": self._model_label(opts.model), "model_provider": "labkit",
                                      "finish_reason": finish})
        if usage:
            msg.usage_metadata = {"input_tokens": usage.get("input", 0), "output_tokens": usage.get("output", 0),
                                  "total_tokens": usage.get("input", 0) + usage.get("output", 0)}
        return msg

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        prompt, dicts, tools, opts = self._prepare(messages, stop, kwargs)
        t0 = time.perf_counter()
        raw, usage = self._run(prompt, dicts, opts)
        msg = self._finish(raw, prompt, tools, opts, usage, time.perf_counter() - t0)
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        # (BaseChatModel.stream reports each chunk to the callbacks itself)
        prompt, dicts, tools, opts = self._prepare(messages, stop, kwargs)
        t0 = time.perf_counter()
        usage: dict = {}
        raw, sent, stopped = "", 0, False
        hold = max([len(s) - 1 for s in opts.stop if s] + [0])
        for piece in self._run_stream(prompt, dicts, opts, usage):
            raw += piece
            if stopped:
                continue  # the reply has ended; generation is stopping (its usage comes at the end)
            text, stopped = _cut_at_stop(raw, [*opts.stop, F.END, F.EOT])
            text = text.lstrip()
            if text.startswith(F.CALL) or F.CALL.startswith(text):
                continue  # a tool call (or maybe the start of one): sent whole at the end
            if not stopped and hold:  # keep back what may be the start of a stop string
                text = text[:max(0, len(text) - hold)]
            text = text.rstrip()  # and trailing spaces (the reply is stripped)
            if len(text) > sent:
                delta, sent = text[sent:], len(text)
                yield ChatGenerationChunk(message=AIMessageChunk(content=delta))
        msg = self._finish(raw, prompt, tools, opts, usage, time.perf_counter() - t0)
        rest = msg.content[sent:] if not (msg.tool_calls or msg.invalid_tool_calls) else msg.content
        yield ChatGenerationChunk(message=AIMessageChunk(
            content=rest, tool_calls=msg.tool_calls, invalid_tool_calls=msg.invalid_tool_calls,
            usage_metadata=msg.usage_metadata, response_metadata=msg.response_metadata, chunk_position="last"))


class ZooChatModel(ZooFormatChatModel):
    """A zoo causal LM (``tiny-chat``) as a LangChain chat model that makes tool calls in the zoo format.

    ``ZooChatModel(model_name="tiny-chat")`` (or ``model=``) loads through ``labkit.models.load`` (cached per
    process); ``ZooChatModel(loaded=lm)`` takes anything with ``.model`` and ``.tokenizer`` (tests use a small
    random Llama). LangChain's standard parameters: ``max_tokens`` (= ``max_new_tokens``), ``temperature``,
    ``stop``, ``timeout`` (seconds of generation, transformers' ``max_time``); ``invoke(..., model=name)`` runs
    another zoo model or local folder for that call.
    """

    model_name: str = Field(default="tiny-chat", alias="model")
    max_new_tokens: int = Field(default=64, alias="max_tokens")
    temperature: float = 0.0
    seed: int = 0
    timeout: float | None = Field(default=None, description="stop generating after this many seconds")
    _lm: Any = PrivateAttr(default=None)

    def __init__(self, loaded=None, **kwargs):
        super().__init__(**kwargs)
        self._lm = loaded

    @property
    def _llm_type(self) -> str:
        return f"labkit-zoo:{self.model_name}"

    def _model_label(self, override: str | None = None) -> str:
        return override or self.model_name

    @staticmethod
    def _load(name: str):
        from .. import models

        return models.resolve(name, kinds=("causal-lm",), use="an agent's chat model")

    @property
    def lm(self):
        if self._lm is None:
            self._lm = self._load(self.model_name)
        return self._lm

    def _lm_for(self, override: str | None):
        return self.lm if not override or override == self.model_name else self._load(override)

    def _gen_setup(self, prompt: str, opts: _CallOptions):
        import torch

        from ..runtime import configure_torch

        configure_torch()
        lm = self._lm_for(opts.model)
        tok, model = lm.tokenizer, lm.model
        ids = tok(prompt + opts.prefix, add_special_tokens=False, return_tensors="pt")["input_ids"]
        from .. import models

        limit = models.context_length(model, tok, default=512) - self.max_new_tokens
        if ids.shape[1] > limit:  # keep the start (BOS + system) and the most recent turns
            ids = torch.cat([ids[:, :1], ids[:, -(limit - 1):]], dim=1)
        end_ids = [i for i in (tok.convert_tokens_to_ids(F.END), tok.convert_tokens_to_ids(F.EOT))
                   if isinstance(i, int) and i >= 0]
        gen_kwargs = dict(max_new_tokens=self.max_new_tokens, eos_token_id=end_ids or None,
                          pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else end_ids[0])
        if self.temperature > 0:
            torch.manual_seed(self.seed)
            gen_kwargs.update(do_sample=True, temperature=self.temperature)
        else:
            gen_kwargs.update(do_sample=False)
        if self.timeout:
            gen_kwargs["max_time"] = float(self.timeout)
        call_id = tok.convert_tokens_to_ids(F.CALL)
        if opts.no_calls and isinstance(call_id, int) and call_id >= 0:
            gen_kwargs["suppress_tokens"] = [call_id]  # tool_choice="none": <|call|> cannot be generated
        if opts.stop:
            gen_kwargs["stopping_criteria"] = _stop_criteria(tok, ids.shape[1], opts.stop)
        return tok, model, ids, gen_kwargs

    def _complete(self, prompt: str, dicts: list[dict]) -> tuple[str, dict]:
        return self._run(prompt, dicts, _CallOptions(stop=list(self.stop or [])))

    def _run(self, prompt: str, dicts: list[dict], opts: _CallOptions) -> tuple[str, dict]:
        import torch

        tok, model, ids, gen_kwargs = self._gen_setup(prompt, opts)
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), **gen_kwargs)
        new = out[0, ids.shape[1]:]
        raw = opts.prefix + tok.decode(new, skip_special_tokens=False)
        return raw, {"input": int(ids.shape[1]), "output": int(new.shape[0])}

    def _run_stream(self, prompt: str, dicts: list[dict], opts: _CallOptions, usage: dict) -> Iterator[str]:
        """Generate in a worker thread; hand out the decoded text as tokens arrive (whole characters only)."""
        import queue
        import threading

        import torch
        from transformers.generation.streamers import BaseStreamer

        tok, model, ids, gen_kwargs = self._gen_setup(prompt, opts)
        q: queue.Queue = queue.Queue()
        done = object()

        class _Streamer(BaseStreamer):
            prompt_seen = False

            def put(self, value):
                if not self.prompt_seen:  # generate() first puts the prompt
                    self.prompt_seen = True
                    return
                q.put([int(x) for x in value.reshape(-1).tolist()])

            def end(self):
                pass

        def work():
            try:
                with torch.no_grad():
                    model.generate(ids, attention_mask=torch.ones_like(ids), streamer=_Streamer(), **gen_kwargs)
                q.put(done)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                q.put(exc)

        worker = threading.Thread(target=work, name="labkit-zoo-stream", daemon=True)
        worker.start()
        new: list[int] = []
        sent = ""
        if opts.prefix:
            sent = opts.prefix
            yield opts.prefix
        try:
            while True:
                item = q.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                new.extend(item)
                text = opts.prefix + tok.decode(new, skip_special_tokens=False)
                if text.endswith("\ufffd") or not text.startswith(sent):
                    continue  # half a UTF-8 character: wait for the next token
                if len(text) > len(sent):
                    yield text[len(sent):]
                    sent = text
            text = opts.prefix + tok.decode(new, skip_special_tokens=False)
            if text.startswith(sent) and len(text) > len(sent):
                yield text[len(sent):]
        finally:
            worker.join()
        usage.update({"input": int(ids.shape[1]), "output": len(new)})


def _stop_criteria(tok, n_prompt: int, stops: Sequence[str]):
    """A transformers stopping criterion: stop once the generated text contains one of ``stops``."""
    from transformers.generation import StoppingCriteria, StoppingCriteriaList

    longest = max(len(s) for s in stops)

    class _StopStrings(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            import torch

            done = [any(s and s in tok.decode(row[n_prompt:][-(longest + 8):], skip_special_tokens=False)
                        for s in stops) for row in input_ids]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_StopStrings()])


class ScriptedChatModel(ZooFormatChatModel):
    """Replies from a script: a list of zoo-format strings (one per call, the last repeats) or a function
    ``policy(messages: list[dict]) -> str``. Tool calls are written as ``<|call|>name(arg="value")``."""

    replies: list[str] = Field(default_factory=list)
    policy: Callable | None = None
    name_: str = "scripted"
    _turn: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return self.name_

    def _complete(self, prompt: str, dicts: list[dict]) -> tuple[str, dict]:
        if self.policy is not None:
            raw = self.policy(dicts)
        elif self.replies:
            raw = self.replies[min(self._turn, len(self.replies) - 1)]
        else:
            raw = "I have nothing to say."
        self._turn += 1
        raw = raw if raw.startswith(F.CALL) or raw.startswith(" ") else " " + raw
        return raw, {"input": len(prompt.split()), "output": len(raw.split())}


# ----------------------------------------------------------------------------------------------- OpenAI / GGUF
def _probe_openai(base_url: str, api_key: str, timeout: float) -> list[str]:
    """GET <base>/models: the served model ids. Raises a clear LabkitUsageError when nothing answers."""
    import urllib.error
    import urllib.request

    url = base_url.rstrip("/") + "/models"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"})
    hint = ("Start an OpenAI-compatible server first, e.g. `llama-server -m model.gguf --port 8080` "
            "(then `model` openai:http://localhost:8080/v1), `vllm serve <model>` or Ollama "
            "(openai:http://localhost:11434/v1); or use `model` tiny-chat, which runs offline.")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = json.loads(resp.read().decode("utf-8", "replace") or "{}")
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise LabkitUsageError(f"the server at {base_url} refused the API key (HTTP {exc.code}); set "
                                   f"OPENAI_API_KEY") from None
        if exc.code == 404:
            raise LabkitUsageError(f"something answers at {base_url} but it has no /models endpoint (HTTP 404): "
                                   f"is the base URL right? OpenAI-compatible servers usually end in /v1. "
                                   f"{hint}") from None
        raise LabkitUsageError(f"the server at {base_url} answered HTTP {exc.code} to GET /models. {hint}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LabkitUsageError(f"cannot reach an OpenAI-compatible server at {base_url} ({reason}). {hint}") from None
    return [m.get("id") for m in data.get("data", []) if isinstance(m, dict) and m.get("id")]


def openai_chat_model(base_url: str, model_name: str | None = None, *, api_key: str | None = None,
                      timeout: float = 3.0, temperature: float = 0.0):
    """LangChain's ``ChatOpenAI`` for an OpenAI-compatible server at ``base_url`` (probed first, ``timeout`` s)."""
    if not base_url.startswith(("http://", "https://")):
        raise LabkitUsageError(f"openai:<base-url> needs an http(s) URL such as openai:http://localhost:8080/v1, "
                               f"not {base_url!r}")
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        raise LabkitUsageError("OpenAI-compatible servers need langchain-openai: `pip install langchain-openai`") from None
    key = api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"
    served = _probe_openai(base_url, key, timeout)
    name = model_name or (served[0] if served else "default")
    return ChatOpenAI(base_url=base_url, api_key=key, model=name, temperature=temperature, timeout=60,
                      max_retries=0)


class LlamaCppChatModel(BaseChatModel):
    """A GGUF model run in-process by llama-cpp-python, through its OpenAI-style ``create_chat_completion``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    path: str
    max_tokens: int = 256
    temperature: float = 0.0
    _llm: Any = PrivateAttr(default=None)

    def __init__(self, llm=None, **kwargs):
        super().__init__(**kwargs)
        self._llm = llm

    @property
    def _llm_type(self) -> str:
        return "llama-cpp"

    @property
    def llm(self):
        if self._llm is None:
            self._llm = load_gguf(self.path)
        return self._llm

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        from langchain_core.messages import convert_to_openai_messages

        t0 = time.perf_counter()
        resp = self.llm.create_chat_completion(messages=convert_to_openai_messages(messages),
                                               tools=kwargs.get("tools") or None,
                                               max_tokens=self.max_tokens, temperature=self.temperature)
        choice = resp["choices"][0]["message"]
        calls = []
        for c in choice.get("tool_calls") or []:
            fn = c.get("function", {})
            args = fn.get("arguments") or "{}"
            try:
                args = json.loads(args) if isinstance(args, str) else dict(args)
            except ValueError:
                args = {"input": args}
            calls.append({"type": "tool_call", "name": fn.get("name"), "args": args,
                          "id": c.get("id") or "call_" + uuid.uuid4().hex[:8]})
        usage = resp.get("usage") or {}
        msg = AIMessage(content=choice.get("content") or "", tool_calls=calls,
                        response_metadata={"seconds": time.perf_counter() - t0, "model": self.path},
                        usage_metadata={"input_tokens": usage.get("prompt_tokens", 0),
                                        "output_tokens": usage.get("completion_tokens", 0),
                                        "total_tokens": usage.get("total_tokens", 0)})
        return ChatResult(generations=[ChatGeneration(message=msg)])


class ZooGGUFChatModel(ZooFormatChatModel):
    """A zoo model exported to GGUF (``labkit export gguf``) run by llama.cpp, speaking the zoo's own chat and
    tool-call format (``<|call|>name(...)``) exactly as :class:`ZooChatModel` does over transformers: the same
    prompt, greedy or sampled, ending at ``<|end|>``. llama-cpp-python's OpenAI-style tool handlers expect other
    formats (chatml), which the zoo models were never trained on."""

    path: str
    max_new_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0
    _llm: Any = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "llama-cpp-zoo"

    def _model_label(self, override: str | None = None) -> str:
        return override or f"gguf:{self.path}"

    @property
    def llm(self):
        if self._llm is None:
            from .. import models

            self._llm = models.resolve(f"gguf:{self.path}", kinds=("gguf",), use="a llama.cpp chat model").model
        return self._llm

    def _complete(self, prompt: str, dicts: list[dict]) -> tuple[str, dict]:
        return self._run(prompt, dicts, _CallOptions(stop=list(self.stop or [])))

    def _run(self, prompt: str, dicts: list[dict], opts: _CallOptions) -> tuple[str, dict]:
        llm = self.llm
        ids = llm.tokenize((prompt + opts.prefix).encode("utf-8"), add_bos=False, special=True)
        limit = int(llm.n_ctx()) - self.max_new_tokens
        if len(ids) > limit:  # keep the start (system) and the most recent turns, as ZooChatModel does
            ids = ids[:1] + ids[-(limit - 1):]
        def one(text):
            t = llm.tokenize(text.encode(), add_bos=False, special=True)
            return int(t[0]) if len(t) == 1 else None
        ends = {i for i in (one(F.END), one(F.EOT), int(llm.token_eos())) if i is not None}
        call_id = one(F.CALL)
        logit_bias = {call_id: float("-inf")} if opts.no_calls and call_id is not None else None
        if self.temperature > 0:
            llm.set_seed(int(self.seed))
        out: list[int] = []
        raw = b""
        for tid in llm.generate(ids, temp=float(self.temperature), top_k=1 if self.temperature == 0 else 0,
                                top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True,
                                logits_processor=_bias_processor(logit_bias)):
            if int(tid) in ends:
                break
            out.append(int(tid))
            raw += llm.detokenize([int(tid)], special=True)
            text = raw.decode("utf-8", errors="ignore")
            if len(out) >= self.max_new_tokens or (opts.stop and _cut_at_stop(text, opts.stop)[1]):
                break
        return opts.prefix + raw.decode("utf-8", errors="replace"), {"input": len(ids), "output": len(out)}


def _bias_processor(bias: dict | None):
    """A llama-cpp-python logits processor that forbids tokens (``tool_choice='none'``: no ``<|call|>``)."""
    if not bias:
        return None
    from llama_cpp import LogitsProcessorList

    def forbid(input_ids, scores):
        for i, b in bias.items():
            scores[i] += b
        return scores

    return LogitsProcessorList([forbid])


def _is_zoo_gguf(path: str) -> bool:
    """Was this GGUF exported from a zoo model (its chat template is the zoo's)?"""
    try:
        import gguf

        r = gguf.GGUFReader(str(path))
        field = r.fields.get("tokenizer.chat_template")
        return field is not None and F.CALL in bytes(field.parts[-1]).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001
        return False


def load_gguf(path: str):
    """A ``llama_cpp.Llama`` for a GGUF file, with the function-calling chat format (through the model door,
    ``labkit.models``: one loader, its clear errors, and its cache)."""
    from .. import models

    return models.resolve(f"gguf:{path}", kinds=("gguf",), use="a llama.cpp chat model",
                          n_ctx=4096, chat_format="chatml-function-calling").model


def make_chat_model(spec, *, model_name: str | None = None, max_new_tokens: int = 64, temperature: float = 0.0,
                    timeout: float = 3.0):
    """A LangChain chat model from a ``--model`` value (see the module docstring) or a chat model object."""
    if isinstance(spec, BaseChatModel):
        return spec
    from .. import models

    if not isinstance(spec, str) or not spec.strip():
        raise LabkitUsageError("model: give a name: tiny-chat, openai:<base-url> or gguf:<path>")
    spec = spec.strip()
    what = models.spec_kind(spec)  # the model door says what the name is, before anything loads
    if what == "openai":
        return openai_chat_model(models.resolve(spec).load_kwargs["base_url"], model_name, timeout=timeout,
                                 temperature=temperature)
    if what == "gguf":
        path = spec[5:] if spec.startswith("gguf:") else spec
        if _is_zoo_gguf(path):  # a zoo export: the zoo's own chat and tool format, run by llama.cpp
            model = ZooGGUFChatModel(path=path, temperature=temperature, max_new_tokens=max_new_tokens)
            model.llm
            return model
        model = LlamaCppChatModel(path=path, temperature=temperature)
        model.llm  # load now: a missing file or package fails here, before the run starts
        return model
    if what == "zoo" and models.zoo_kind(spec) != "causal-lm":
        raise LabkitUsageError(f"{spec!r} cannot chat or call tools; use tiny-chat, openai:<base-url> or gguf:<path>")
    return ZooChatModel(model_name=spec, max_new_tokens=max_new_tokens, temperature=temperature)
