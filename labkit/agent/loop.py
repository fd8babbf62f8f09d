"""The agent loop: a small ReAct graph in LangGraph, with a recorder that turns every step into the trace.

    task ──▶ [agent: the chat model, tools bound] ──tool call?──▶ [tools: run, approve, observe] ──┐
                  ▲                                 │ no                                         │
                  └─────────────────────────────────┼────────────────────────────────────────────┘
                                                    ▼
                                               final answer

``build_graph`` returns the compiled LangGraph graph (so labs can put it inside bigger graphs); ``run`` runs one
task through it and returns an :class:`~labkit.agent.trace.AgentResult`. The step limit (``max_steps`` model
calls) ends the run cleanly with the partial trace and a note; an exception in the model (a server gone away)
does the same, so a run never hangs and never loses what it did.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from ..errors import LabkitError, LabkitUsageError
from ..watch import OnProgress, Progress, Reporter
from .trace import AgentResult, Step

Approver = Callable[[str, dict], bool]


class Recorder:
    """Collects steps as the graph runs; ``on_step(step)`` is called for each (the live widget listens)."""

    def __init__(self, on_step: Callable[[Step], None] | None = None, agent: str = "", on_progress=None,
                 max_steps: int | None = None):
        self.steps: list[Step] = []
        self.on_step = on_step
        self.agent = agent
        self.report = Reporter(on_progress)  # the common shape (labkit.watch): kind "step", item the Step
        self.max_steps = max_steps

    def add(self, step: Step) -> Step:
        step.agent = step.agent or self.agent
        self.steps.append(step)
        if self.on_step is not None:
            try:
                self.on_step(step)
            except Exception:  # a display problem must never break the run
                pass
        self.report(Progress("step", done=sum(s.kind == "model" for s in self.steps), total=self.max_steps,
                             item=step, message=step.line()))
        return step


def console_approver(name: str, args: dict) -> bool:
    """Ask on the terminal (``input()``): the approval prompt without a front end."""
    shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
    try:
        reply = input(f"The agent wants to run {name}({shown}). Allow it? [y/N] ")
    except (EOFError, OSError):  # no stdin at all: say no
        return False
    return reply.strip().lower() in ("y", "yes")


def build_graph(model, tools: list, *, max_steps: int = 6, approve: bool = False, approver: Approver | None = None,
                recorder: Recorder | None = None, observation_filter: Callable[[str, dict, str], str] | None = None):
    """The compiled ReAct graph (LangGraph ``StateGraph`` over ``MessagesState``).

    ``approve``: tool calls whose tool is marked dangerous (every call with ``approve="all"``) wait for ``approver(name, args) -> bool`` (default: a
    console prompt). ``observation_filter(name, args, text) -> text`` rewrites what tools return (a defence
    against injected instructions in observations; see lab 21).
    """
    from langchain_core.messages import ToolMessage
    from langgraph.graph import END, START, MessagesState, StateGraph
    from pydantic import ValidationError

    from .tools import is_dangerous

    if not isinstance(max_steps, int) or not 1 <= max_steps <= 100:
        raise LabkitUsageError(f"`max_steps` must be a whole number from 1 to 100, got {max_steps!r}")
    rec = recorder or Recorder()
    by_name = {t.name: t for t in tools}
    bound = model.bind_tools(tools) if tools else model
    ask = approver or console_approver

    class State(MessagesState):
        model_calls: int

    def agent(state):
        t0 = time.perf_counter()
        msg = bound.invoke(state["messages"])
        seconds = time.perf_counter() - t0
        usage = getattr(msg, "usage_metadata", None) or {}
        meta = getattr(msg, "response_metadata", {}) or {}
        calls = [{"name": c["name"], "args": dict(c["args"])} for c in msg.tool_calls]
        calls += [{"name": c.get("name") or "?", "args": {"text": c.get("args")}, "invalid": True}
                  for c in getattr(msg, "invalid_tool_calls", []) or []]
        raw = {"reply": meta.get("raw", msg.content if isinstance(msg.content, str) else str(msg.content))}
        if "prompt" in meta:
            raw["prompt"] = meta["prompt"]
        rec.add(Step("model", text=msg.content if isinstance(msg.content, str) else str(msg.content), calls=calls,
                     tokens_in=int(usage.get("input_tokens", 0)), tokens_out=int(usage.get("output_tokens", 0)),
                     seconds=seconds, raw=raw))
        return {"messages": [msg], "model_calls": state.get("model_calls", 0) + 1}

    def act(state):
        last = state["messages"][-1]
        out = []
        for bad in getattr(last, "invalid_tool_calls", []) or []:
            text = f"Error: could not read the tool call ({bad.get('error')})."
            rec.add(Step("tool", name=bad.get("name") or "?", args={"text": bad.get("args")}, observation=text,
                         error=True))
            out.append(ToolMessage(text, tool_call_id=bad.get("id") or "invalid", status="error"))
        for call in last.tool_calls:
            name, args = call["name"], dict(call["args"])
            t0 = time.perf_counter()
            approved = None
            error = False
            raw = {}
            tool = by_name.get(name)
            if tool is None:
                text = f"Error: unknown tool {name}. Tools: {', '.join(by_name) or 'none'}."
                error = True
            elif approve == "all" or (approve and is_dangerous(tool)):
                approved = bool(ask(name, args))
            if tool is not None and approved is False:
                text = f"Rejected: a human reviewer did not allow {name}; the call was not run."
                error = True
            elif tool is not None:
                try:
                    text = str(tool.invoke(args))
                except LabkitError as exc:  # the tool refused its input: tell the model, it may recover
                    text, error = f"Error: {exc}", True
                except ValidationError:  # wrong argument names or types
                    want = ", ".join(tool.args) or "no arguments"
                    text = f"Error: {name} takes ({want}); got ({', '.join(args) or 'nothing'})."
                    error = True
                except Exception as exc:  # a user tool's bug or bad arguments: also an observation
                    text, error = f"Error: {type(exc).__name__}: {str(exc)[:300]}", True
                if text.startswith("Error:"):
                    error = True
                if observation_filter is not None:
                    original, text = text, observation_filter(name, args, text)
                    raw = {"unfiltered observation": original} if text != original else {}
            rec.add(Step("tool", name=name, args=args, observation=text, error=error, approved=approved,
                         seconds=time.perf_counter() - t0, raw=raw))
            out.append(ToolMessage(text, tool_call_id=call["id"], name=name, status="error" if error else "success"))
        return {"messages": out}

    def route(state):
        last = state["messages"][-1]
        wants_tools = bool(getattr(last, "tool_calls", None) or getattr(last, "invalid_tool_calls", None))
        if not wants_tools:
            return END
        return "tools"

    def after_tools(state):
        return END if state.get("model_calls", 0) >= max_steps else "agent"

    g = StateGraph(State)
    g.add_node("agent", agent)
    g.add_node("tools", act)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", route, ["tools", END])
    g.add_conditional_edges("tools", after_tools, ["agent", END])
    return g.compile()


def _final_answer(messages) -> str | None:
    from langchain_core.messages import AIMessage

    if not messages:
        return None
    last = messages[-1]
    if isinstance(last, AIMessage) and not last.tool_calls and not getattr(last, "invalid_tool_calls", None):
        content = last.content if isinstance(last.content, str) else str(last.content)
        return content.strip()
    return None


def run(task: str, model="tiny-chat", tools="calculator,lookup", *, max_steps: int = 6, approve: bool = False,
        approver: Approver | None = None, system: str | None = None, retriever=None, namespace: dict | None = None,
        on_step: Callable[[Step], None] | None = None, observation_filter=None, history: list | None = None,
        model_name: str | None = None, max_new_tokens: int = 64, temperature: float = 0.0,
        agent_name: str = "", python_limits=None, on_progress: OnProgress | None = None) -> AgentResult:
    """Run ``task`` with an agent; returns the :class:`AgentResult` (trace + answer).

    ``model``: ``tiny-chat``, ``openai:<base-url>``, ``gguf:<path>`` or a LangChain chat model. ``tools``: names
    (``"calculator,lookup,python,search"``), tool objects or functions; ``None``/``"none"`` for no tools.
    ``system``: a system prompt (default: the one the zoo model was trained with for these tools).
    ``on_step(step)`` sees each Step; ``on_progress`` the common progress callback (``labkit.watch.Progress``,
    kind ``"step"``: ``done`` model calls of ``total`` = max_steps, ``item`` the Step).
    """
    from langchain_core.messages import HumanMessage, SystemMessage
    from langgraph.errors import GraphRecursionError

    from .chat_models import make_chat_model
    from .tools import resolve

    if not isinstance(task, str) or not task.strip():
        raise LabkitUsageError("the agent needs a task: write it in the cell under %%agent (or pass task='...')")
    tool_list = resolve(tools, retriever=retriever, namespace=namespace, python_limits=python_limits)
    chat = make_chat_model(model, model_name=model_name, max_new_tokens=max_new_tokens, temperature=temperature)
    rec = Recorder(on_step, agent=agent_name, on_progress=on_progress, max_steps=max_steps)
    from ..text import valid_unicode

    task, bad_task = valid_unicode(task, "the task")
    if bad_task:
        rec.add(Step("note", text=bad_task))
    graph = build_graph(chat, tool_list, max_steps=max_steps, approve=approve, approver=approver, recorder=rec,
                        observation_filter=observation_filter)
    messages = ([SystemMessage(system)] if system else []) + list(history or []) + [HumanMessage(task.strip())]
    label = model if isinstance(model, str) else getattr(chat, "_llm_type", type(chat).__name__)
    t0 = time.perf_counter()
    stopped = None
    final_messages = messages
    try:
        state = graph.invoke({"messages": messages, "model_calls": 0},
                             config={"recursion_limit": 2 * max_steps + 4})
        final_messages = state["messages"]
    except GraphRecursionError:  # belt and braces: the routing stops first
        stopped = f"step limit reached ({max_steps} model calls) before a final answer"
    except LabkitUsageError:
        raise
    except Exception as exc:  # the model failed mid-run (server gone, out of memory): keep the partial trace
        stopped = f"the run stopped with an error: {type(exc).__name__}: {str(exc)[:300]}"
    answer = _final_answer(final_messages) if stopped is None else None
    if answer is None and stopped is None:
        stopped = f"step limit reached ({max_steps} model calls) before a final answer; the trace so far is above"
    if stopped:
        rec.add(Step("note", text=stopped, error=True))
    return AgentResult(task.strip(), str(label), [t.name for t in tool_list], rec.steps, answer, stopped,
                       time.perf_counter() - t0, max_steps, list(final_messages))
