"""Agent tools as LangChain tools: the built-ins and ``@tool`` for your own functions.

Every tool is a ``langchain_core.tools.StructuredTool`` (its JSON schema comes from the function's signature and
its Google-style docstring, via LangChain's ``parse_docstring``), so the same objects plug into any LangChain or
LangGraph agent. ``metadata["dangerous"]`` marks tools that need a human's approval under ``--approve``.

Built-in tools (``builtin_names()``):

- ``calculator(expression)``: AST-restricted arithmetic (``labkit.agent.sandbox.calculate``);
- ``lookup(entity)``: the zoo world's encyclopedia (``labkit.zoo.corpus.lookup``);
- ``python(code)``: runs code in the sandboxed subprocess (``labkit.agent.sandbox.run_python``); dangerous;
- ``search(query)``: top passages of a retriever: a ``labkit.rag`` index, anything with ``.search(query, k)``,
  or a LangChain retriever (``.invoke(query)``). ``rag`` is an alias.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from ..errors import LabkitUsageError
from .sandbox import SandboxLimits, ToolError, calculator_text, run_python

#: user tools made with @tool in this process, by name
REGISTRY: dict[str, Any] = {}
BUILTINS = ("calculator", "lookup", "python", "search")
ALIASES = {"rag": "search", "calc": "calculator", "encyclopedia": "lookup", "py": "python"}


def _structured(func: Callable, name: str | None = None, description: str | None = None,
                dangerous: bool = False):
    from langchain_core.tools import StructuredTool

    t = StructuredTool.from_function(func, name=name or func.__name__, description=description,
                                     parse_docstring=True, error_on_invalid_docstring=False)
    t.metadata = {**(t.metadata or {}), "dangerous": bool(dangerous), "labkit": True}
    return t


def tool(func: Callable | None = None, *, name: str | None = None, description: str | None = None,
         dangerous: bool = False):
    """Make a Python function an agent tool (a LangChain ``StructuredTool``) and register it by name.

        @labkit.agent.tool
        def word_count(text: str) -> int:
            '''Count the words of a text.

            Args:
                text: the text to count
            '''
            return len(text.split())

    The schema comes from the type hints and the docstring (summary + ``Args:``). ``dangerous=True``: the call
    waits for approval when the agent runs with ``approve=True``. Use it as ``@tool`` or ``@tool(dangerous=True)``.
    """
    def wrap(f: Callable):
        if not callable(f):
            raise LabkitUsageError(f"@tool needs a function, got {type(f).__name__}")
        if not (f.__doc__ or description):
            raise LabkitUsageError(f"tool {f.__name__!r} needs a docstring (it tells the model what the tool "
                                   f"does): add one line under the def")
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in inspect.signature(f).parameters.values()):
            raise LabkitUsageError(f"tool {f.__name__!r}: *args/**kwargs cannot be described to a model; "
                                   f"name each argument")
        t = _structured(f, name=name, description=description, dangerous=dangerous)
        if t.name not in BUILTINS:  # a look-alike of a built-in (lab 21's poisoned lookup) is used as an object only
            REGISTRY[t.name] = t
        return t

    return wrap(func) if func is not None else wrap


# ------------------------------------------------------------------------------------------------ the built-ins
def calculator_tool():
    def calculator(expression: str) -> str:
        """Evaluate arithmetic: numbers, + - * / // % ** and parentheses (e.g. 347*86).

        Args:
            expression: the arithmetic to evaluate, e.g. (12+3)*4
        """
        return calculator_text(expression)

    return _structured(calculator)


def lookup_tool(world=None):
    def lookup(entity: str) -> str:
        """Look up a person or a town in the encyclopedia of the zoo world.

        Args:
            entity: the full name of a person or a town, e.g. Mira Vell
        """
        from ..zoo.corpus import lookup as zoo_lookup

        if not str(entity).strip():
            raise ToolError("lookup needs the name of a person or a town")
        return zoo_lookup(entity, world)

    return _structured(lookup)


def python_tool(limits: SandboxLimits | None = None):
    lim = limits or SandboxLimits()

    def python(code: str) -> str:
        """Run Python code in a sandbox (no network, no files outside a temporary folder) and return what it prints.

        Args:
            code: a Python program; print() the result
        """
        return run_python(code, lim).observation()

    return _structured(python, dangerous=True)


def _retrieve(retriever, query: str, k: int) -> list[str]:
    if hasattr(retriever, "search"):
        hits = retriever.search(query, k=k)
    elif hasattr(retriever, "invoke"):
        hits = retriever.invoke(query)[:k]
    elif callable(retriever):
        hits = retriever(query, k)
    else:
        raise LabkitUsageError(f"search needs a retriever with .search(query, k) or .invoke(query), "
                               f"got {type(retriever).__name__}")
    if hasattr(hits, "hits"):  # a result object holding hits
        hits = hits.hits
    out = []
    for h in list(hits)[:k]:
        if isinstance(h, str):
            out.append(h)
        elif isinstance(h, tuple):
            out.append(str(h[0]))
        elif getattr(h, "chunk", None) is not None:  # a labkit.rag Hit
            out.append(str(getattr(h.chunk, "text", h.chunk)))
        else:
            text = getattr(h, "page_content", None) or getattr(h, "text", None) or getattr(h, "content", None)
            out.append(str(text if text is not None else h))
    return out


def search_tool(retriever, k: int = 3, name: str = "search", arg: str | None = None):
    """A ``search(query)`` tool over ``retriever`` (a RAG index, ``.search(query, k)``, or a LangChain retriever).

    ``name``/``arg``: what the model calls it. tiny-chat only learned ``lookup(entity=...)``, so
    ``search_tool(ix, name="lookup")`` (``arg`` then defaults to ``entity``) lets it use a RAG index.
    """
    from langchain_core.tools import StructuredTool
    from pydantic import Field, create_model

    if retriever is None:
        retriever = _session_index()
    if retriever is None:
        raise LabkitUsageError("the search tool needs an index: build one with %%rag (or labkit.rag) and pass it "
                               "as `retriever` (an index, or its name), or use the lookup tool")
    _retrieve(retriever, "test", 1)  # fail now, not in the middle of a run, if it is not a retriever
    arg = arg or ("entity" if name == "lookup" else "query")
    if not arg.isidentifier():
        raise LabkitUsageError(f"the argument name must be a Python identifier, not {arg!r}")

    def search(**kwargs) -> str:
        passages = _retrieve(retriever, str(kwargs.get(arg, "")), k)
        if not passages:
            return "No results."
        return "\n".join(f"[{i + 1}] {p.strip()}" for i, p in enumerate(passages))

    schema = create_model(f"{name}_args", **{arg: (str, Field(description="what to look for"))})
    t = StructuredTool.from_function(search, name=name, args_schema=schema,
                                     description="Search the document index and return the most relevant passages.")
    t.metadata = {"dangerous": False, "labkit": True}
    return t


def _session_index(name: str = "default"):
    """The session's ``%%rag`` index called ``name`` (``labkit.session``, kind "index"), or None."""
    from .. import session

    return session.get("index", name)


def builtin_names() -> list[str]:
    return list(BUILTINS)


def available(namespace: dict | None = None) -> list[str]:
    """Tool names usable now: the built-ins, @tool-registered tools, and tools held by variables in ``namespace``."""
    names = list(BUILTINS) + [n for n in REGISTRY if n not in BUILTINS]
    for value in (namespace or {}).values():
        n = getattr(value, "name", None)
        if _is_tool(value) and n not in names:
            names.append(n)
    return names


def _is_tool(value) -> bool:
    try:
        from langchain_core.tools import BaseTool
    except ImportError:  # pragma: no cover
        return False
    return isinstance(value, BaseTool)


def resolve(spec, *, retriever=None, namespace: dict | None = None, world=None,
            python_limits: SandboxLimits | None = None) -> list:
    """Tool objects from names (``"calculator,lookup"``, a list of names and/or tool objects, or plain functions).

    Unknown names raise a LabkitUsageError that lists the tools that exist.
    """
    if spec is None or spec == "" or spec == "none":
        return []
    items = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    tools, seen = [], set()
    for item in items:
        if _is_tool(item):
            t = item
        elif callable(item) and not isinstance(item, str):
            t = tool(item)
        elif isinstance(item, str):
            key = ALIASES.get(item.lower(), item)
            if key == "calculator":
                t = calculator_tool()
            elif key == "lookup":
                t = lookup_tool(world)
            elif key == "python":
                t = python_tool(python_limits)
            elif key == "search":
                t = search_tool(retriever)
            elif key in REGISTRY:
                t = REGISTRY[key]
            elif namespace and _is_tool(namespace.get(key)):
                t = namespace[key]
            else:
                raise LabkitUsageError(f"unknown tool {item!r}. Tools: {', '.join(available(namespace))}. "
                                       f"Make your own with @labkit.tool on a function.")
        else:
            raise LabkitUsageError(f"a tool must be a name, a function or a LangChain tool, not {type(item).__name__}")
        if t.name in seen:
            continue
        seen.add(t.name)
        tools.append(t)
    return tools


def is_dangerous(t) -> bool:
    return bool((getattr(t, "metadata", None) or {}).get("dangerous"))
