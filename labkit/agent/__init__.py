"""Tool-using agents: a LangGraph ReAct loop over LangChain chat models and tools, with a step-by-step trace.

    >>> import labkit.agent as A
    >>> r = A.run("What is 347 times 86?", model="tiny-chat", tools="calculator,lookup")
    >>> r.answer, r.steps                  # the final answer and every model turn / tool call
    >>> @A.tool
    ... def word_count(text: str) -> int:
    ...     '''Count the words of a text.'''
    ...     return len(text.split())

``%%agent`` is a thin layer over :func:`run`. Models: ``tiny-chat`` (the zoo's chat model, tool calls in the zoo
format), ``openai:<base-url>`` (any OpenAI-compatible server), ``gguf:<path>`` (llama-cpp-python). Tools:
``calculator``, ``lookup``, ``python`` (sandboxed), ``search`` (a RAG index) and your own ``@tool`` functions.
Nothing heavy (torch, transformers, langchain) is imported until an agent runs.
"""
from __future__ import annotations

from .loop import Recorder, build_graph, console_approver, run  # noqa: F401
from .sandbox import SandboxLimits, SandboxResult, ToolError, calculate, run_python  # noqa: F401
from .tools import available, resolve, search_tool, tool  # noqa: F401
from .trace import AgentResult, Step  # noqa: F401

_LAZY = {"ZooChatModel", "ScriptedChatModel", "LlamaCppChatModel", "make_chat_model", "openai_chat_model"}


def __getattr__(name):
    if name in _LAZY:
        from . import chat_models

        return getattr(chat_models, name)
    if name in ("evaluate", "eval_tasks", "EvalResult"):
        from . import evaluate as ev

        return getattr(ev, {"evaluate": "evaluate", "eval_tasks": "eval_tasks", "EvalResult": "EvalResult"}[name])
    raise AttributeError(f"module 'labkit.agent' has no attribute {name!r}")
