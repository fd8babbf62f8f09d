"""``%%agent``: run a tool-using agent on the task in the cell and show its step-by-step trace.

Thin layer over ``labkit.agent.run`` (no torch/transformers/langchain import at module level).
"""
from __future__ import annotations

from ..errors import LabkitUsageError
from ..widgets import attach
from ._base import Magic, MagicParser, require_body

parser = MagicParser(
    "%%agent",
    description="Run a tool-using agent (a LangGraph ReAct loop) on the task in the cell; show every step.",
    epilog=(
        "Examples:\n"
        "  %%agent\n  What is 347 times 86?\n\n"
        "  %%agent --tools calculator,lookup,python --max-steps 4 --approve\n  Where does Mira Vell live?\n\n"
        "  %%agent --model openai:http://localhost:8080/v1 --tools search --index my_index\n  ...\n\n"
        "Models: tiny-chat (offline, default), openai:<base-url> (llama.cpp server, vLLM, Ollama), gguf:<path>.\n"
        "Tools: calculator, lookup, python (sandboxed), search (needs --index), and functions made with "
        "@labkit.tool.\nWith --approve, dangerous tools (python, and yours marked dangerous=True) wait for an "
        "Approve/Reject click."
    ),
)
parser.add_argument("--model", default="tiny-chat",
                    help="tiny-chat | openai:<base-url> | gguf:<path> | a variable holding a LangChain chat model")
parser.add_argument("--model-name", help="model id on an OpenAI-compatible server (default: the first it serves)")
parser.add_argument("--tools", default="calculator,lookup",
                    help="comma-separated tool names, or none (default calculator,lookup)")
parser.add_argument("--max-steps", type=int, default=6, help="most model calls before stopping (default 6)")
parser.add_argument("--approve", action="store_true", help="dangerous tool calls wait for a human's approval")
parser.add_argument("--index", metavar="NAME", help="variable holding the RAG index/retriever for the search tool")
parser.add_argument("--system", help="system prompt (default: the one the model was trained with)")
parser.add_argument("--max-new-tokens", type=int, default=64, help="tokens per model turn (zoo models, default 64)")
parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0: greedy)")


def _has_front_end(shell) -> bool:
    return getattr(shell, "kernel", None) is not None


def run(args, body, shell):
    from .. import agent

    task = require_body(body, "agent", "a task (a question or an instruction)")
    ns = getattr(shell, "user_ns", {}) or {}
    retriever = None
    if args.index:
        if args.index in ns:
            retriever = ns[args.index]
        else:
            from ..rag import session_index

            retriever = session_index(args.index)
        if retriever is None:
            raise LabkitUsageError(f"--index {args.index}: no variable and no %%rag index named {args.index!r} "
                                   f"in this session; build an index first (e.g. %%rag, or labkit.rag.Index())")
    if args.max_new_tokens < 1 or args.max_new_tokens > 1024:
        raise LabkitUsageError("--max-new-tokens must be between 1 and 1024")
    tools = agent.resolve(args.tools, retriever=retriever, namespace=ns)  # unknown names fail before any loading
    widget = None
    on_step = None
    approver = None
    if _has_front_end(shell):
        from ..widgets import display
        from ..widgets.trace import TraceWidget

        widget = TraceWidget.live(task.strip(), args.model, [t.name for t in tools])
        display(widget)
        on_step = widget.add_step
        if args.approve:
            approver = widget.ask_from_thread
    model = args.model
    if model.isidentifier() and model in ns:  # a chat model object held by a variable (e.g. a scripted stand-in)
        model = ns[model]
    if widget is not None and args.approve:
        return _run_in_background(widget, args, ns, dict(
            task=task, model=model, tools=tools, max_steps=args.max_steps, approve=True, approver=approver,
            system=args.system, retriever=retriever, namespace=ns, on_step=on_step, model_name=args.model_name,
            max_new_tokens=args.max_new_tokens, temperature=args.temperature))
    try:
        result = agent.run(task, model=model, tools=tools, max_steps=args.max_steps, approve=args.approve,
                           approver=approver, system=args.system, retriever=retriever, namespace=ns,
                           on_step=on_step, model_name=args.model_name, max_new_tokens=args.max_new_tokens,
                           temperature=args.temperature)
    except Exception as exc:
        if widget is not None:  # the live view says what happened too
            widget.running, widget.stopped = False, str(exc)
        raise
    if widget is not None:
        widget.finish(result)
        attach(result, widget, live=True)  # the live trace above is the result's view: not drawn twice
    return result


def _run_in_background(widget, args, ns, kwargs):
    """With --approve in a notebook, the agent runs in a thread so that the kernel stays free to receive the
    Approve/Reject clicks; the live trace fills in above, and --out receives the result when the run ends."""
    import threading

    from .. import agent

    def work():
        try:
            result = agent.run(**kwargs)
        except Exception as exc:
            widget.running, widget.stopped = False, str(exc)
            return
        widget.finish(result)
        attach(result, widget, live=True)
        widget.result = result
        if args.out:
            ns[args.out] = result

    thread = threading.Thread(target=work, name="labkit-agent", daemon=True)
    widget.thread = thread
    thread.start()
    return None


MAGICS = [Magic("agent", "cell", parser, run, flags={"retriever": "--index"})]
