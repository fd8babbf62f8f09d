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
  (``pip install 'labkit[gguf]'``), using its OpenAI-style ``create_chat_completion`` with tools.

:class:`ScriptedChatModel` replies from a list of strings or a function of the messages (zoo format, so the same
parser runs): the tests use it, and the labs use it as a stand-in for a larger instruction-following model.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any, Callable, Sequence

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from ..errors import LabkitError, LabkitUsageError
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


class ZooFormatChatModel(BaseChatModel):
    """Base of the chat models that speak the zoo format: messages -> prompt text -> reply text -> AIMessage."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    system_prompt: str | None = Field(default="auto", description="'auto': the prompt the model was trained with")

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def prompt_messages(self, messages: Sequence[BaseMessage], tools: list | None) -> list[dict]:
        dicts = to_zoo_messages(messages)
        if self.system_prompt and not any(d["role"] == "system" for d in dicts):
            names = [t["function"]["name"] for t in tools or []]
            text = tools_system_prompt(names) if self.system_prompt == "auto" else self.system_prompt
            dicts.insert(0, {"role": "system", "content": text})
        return dicts

    def _complete(self, prompt: str, dicts: list[dict]) -> tuple[str, dict]:
        """Return (generated text of the assistant turn, usage dict)."""
        raise NotImplementedError

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        tools = kwargs.get("tools") or []
        dicts = self.prompt_messages(messages, tools)
        prompt = F.format_chat(dicts, add_generation_prompt=True)
        t0 = time.perf_counter()
        raw, usage = self._complete(prompt, dicts)
        seconds = time.perf_counter() - t0
        msg = reply_to_message(raw, tool_names=[t["function"]["name"] for t in tools])
        msg.response_metadata.update({"prompt": prompt, "seconds": seconds, "model": self._llm_type})
        if usage:
            msg.usage_metadata = {"input_tokens": usage.get("input", 0), "output_tokens": usage.get("output", 0),
                                  "total_tokens": usage.get("input", 0) + usage.get("output", 0)}
        return ChatResult(generations=[ChatGeneration(message=msg)])


class ZooChatModel(ZooFormatChatModel):
    """A zoo causal LM (``tiny-chat``) as a LangChain chat model that makes tool calls in the zoo format.

    ``ZooChatModel(model_name="tiny-chat")`` loads through ``labkit.models.load``; ``ZooChatModel(loaded=lm)``
    takes anything with ``.model`` and ``.tokenizer`` (tests use a small random Llama).
    """

    model_name: str = "tiny-chat"
    max_new_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0
    _lm: Any = PrivateAttr(default=None)

    def __init__(self, loaded=None, **kwargs):
        super().__init__(**kwargs)
        self._lm = loaded

    @property
    def _llm_type(self) -> str:
        return f"labkit-zoo:{self.model_name}"

    @property
    def lm(self):
        if self._lm is None:
            from .. import models

            self._lm = models.load(self.model_name)
            if self._lm.kind != "causal-lm":
                raise LabkitUsageError(f"{self.model_name!r} is a {self._lm.kind}, not a causal language model; "
                                       f"use tiny-chat, openai:<url> or gguf:<path>")
        return self._lm

    def _complete(self, prompt: str, dicts: list[dict]) -> tuple[str, dict]:
        import torch

        from ..runtime import configure_torch

        configure_torch()
        lm = self.lm
        tok, model = lm.tokenizer, lm.model
        ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        limit = int(getattr(model.config, "max_position_embeddings", 512) or 512) - self.max_new_tokens
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
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), **gen_kwargs)
        new = out[0, ids.shape[1]:]
        raw = tok.decode(new, skip_special_tokens=False)
        return raw, {"input": int(ids.shape[1]), "output": int(new.shape[0])}


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
            "(then --model openai:http://localhost:8080/v1), `vllm serve <model>` or Ollama "
            "(openai:http://localhost:11434/v1); or use --model tiny-chat, which runs offline.")
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


def load_gguf(path: str):
    """A ``llama_cpp.Llama`` for a GGUF file (lazy import, clear errors)."""
    if not os.path.isfile(path):
        raise LabkitUsageError(f"no GGUF file at {path!r}; give gguf:<path to a .gguf file>")
    try:
        from llama_cpp import Llama
    except ImportError:
        raise LabkitUsageError("GGUF models need llama-cpp-python: `pip install 'labkit[gguf]'` "
                               "(it compiles llama.cpp, a few minutes)") from None
    try:
        return Llama(model_path=path, n_ctx=4096, verbose=False, chat_format="chatml-function-calling")
    except Exception as exc:  # a broken or unsupported file
        raise LabkitError(f"llama.cpp could not load {path}: {exc}") from None


def make_chat_model(spec, *, model_name: str | None = None, max_new_tokens: int = 64, temperature: float = 0.0,
                    timeout: float = 3.0):
    """A LangChain chat model from a ``--model`` value (see the module docstring) or a chat model object."""
    if isinstance(spec, BaseChatModel):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise LabkitUsageError("--model needs a name: tiny-chat, openai:<base-url> or gguf:<path>")
    spec = spec.strip()
    if spec.startswith("openai:"):
        return openai_chat_model(spec[len("openai:"):], model_name, timeout=timeout, temperature=temperature)
    if spec.startswith("gguf:") or spec.endswith(".gguf"):
        path = spec[5:] if spec.startswith("gguf:") else spec
        model = LlamaCppChatModel(path=path, temperature=temperature)
        model.llm  # load now: a missing file or package fails here, before the run starts
        return model
    if spec in ("tiny-base", "minilm", "cl100k", "tiny"):
        raise LabkitUsageError(f"{spec!r} cannot chat or call tools; use tiny-chat, openai:<base-url> or gguf:<path>")
    return ZooChatModel(model_name=spec, max_new_tokens=max_new_tokens, temperature=temperature)
