"""LangChain's own standard tests (``langchain-tests``) for the components labkit offers as LangChain ones:
``ZooChatModel`` (chat model unit + integration suites), ``LabkitVectorStore`` and ``LabkitRetriever``.

Every LangChain integration runs these suites. They run here offline on the zoo's ``tiny-chat`` (and
``tiny-base`` for the per-call model override) and the kit's MiniLM embedder; each model is loaded once per
process (``labkit.models`` caches it), so the whole file takes well under two minutes on two CPU threads.

Capabilities the tiny model genuinely lacks are switched off through the suites' own properties below, each
with its reason; no standard test is overridden or skipped by hand (the suites' ``test_no_overrides`` checks).
"""
from __future__ import annotations

import inspect

import pytest
from langchain_tests.integration_tests import (ChatModelIntegrationTests, RetrieversIntegrationTests,
                                               VectorStoreIntegrationTests)
from langchain_tests.unit_tests import ChatModelUnitTests

from labkit.agent.chat_models import ZooChatModel
from labkit.rag import Index
from labkit.rag.interop import LabkitRetriever, LabkitVectorStore


def _run_coroutines_with_asyncio(cls):
    """pytest-asyncio runs in strict mode in this repository (the rest of the suite has no coroutine tests and
    is left untouched), so the suites' ``async def`` tests, and only those, get the ``asyncio`` mark here."""
    for name in dir(cls):
        fn = getattr(cls, name)
        if name.startswith("test_") and inspect.iscoroutinefunction(fn):
            if not any(m.name == "asyncio" for m in getattr(fn, "pytestmark", [])):
                pytest.mark.asyncio(fn)  # marks the function object itself, so the suite sees no override
    return cls


# ----------------------------------------------------------------------------------------------- chat model
class _ZooChatModelSettings:
    @property
    def chat_model_class(self) -> type[ZooChatModel]:
        return ZooChatModel

    @property
    def chat_model_params(self) -> dict:
        return {"model": "tiny-chat", "temperature": 0.0}

    @property
    def has_structured_output(self) -> bool:
        # tiny-chat (2.4M parameters) was trained on plain replies and zoo-format tool calls only: it has no
        # JSON mode and cannot write JSON that fits an arbitrary schema, and ZooChatModel does not pretend to.
        return False


@_run_coroutines_with_asyncio
class TestZooChatModelUnit(_ZooChatModelSettings, ChatModelUnitTests):
    # has_tool_calling stays True here: bind_tools accepts every LangChain tool form (functions, BaseTools,
    # pydantic models, JSON schemas) and tool_choice ("auto", "none", "any"/"required", a tool's name).
    pass


@_run_coroutines_with_asyncio
class TestZooChatModelIntegration(_ZooChatModelSettings, ChatModelIntegrationTests):
    @property
    def has_tool_calling(self) -> bool:
        # tiny-chat calls tools in its trained `<|call|>name(arg="value")` format, and only the two tools it was
        # trained on (calculator, lookup), with string arguments. It does not read OpenAI JSON tool schemas, so
        # it cannot call the suites' tools (`magic_function(input: int)`, `my_adder_tool(a, b)`, a greeting
        # generator) with the right typed arguments. labkit's own tests cover its calls (tests/test_agent.py).
        return False

    @property
    def model_override_value(self) -> str:
        # invoke(..., model=...) runs another zoo model for that call; tiny-base is the other causal LM
        return "tiny-base"

    # enable_vcr_tests stays False (test_stream_time skips): VCR records and replays HTTP exchanges, and
    # ZooChatModel runs in-process with no HTTP at all, so there is nothing to record. Streaming is covered
    # by test_stream / test_astream / test_stream_events_v3.


# ----------------------------------------------------------------------------------------------- vector store
@_run_coroutines_with_asyncio
class TestLabkitVectorStore(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self) -> LabkitVectorStore:
        return Index("recursive").as_vectorstore()  # a fresh, empty index; MiniLM is loaded once per process


# ----------------------------------------------------------------------------------------------- retriever
_DOCS = [
    ("lanterns", "Lanterns are made in Keehaven, where the glassblowers work by the harbor."),
    ("salt", "Salt comes from Wustmouth, on the eastern coast."),
    ("honey", "Barnhaven is known for its honey and its mayor, Ian Lirer."),
    ("harbor", "The harbor master of Keehaven is Tam Oss."),
    ("bells", "The bells of Brellwick ring at noon every day."),
    ("bridge", "A stone bridge joins the two halves of Nustgate."),
    ("candles", "Blelldale is known for its candles."),
]
_index: Index | None = None


def _shared_index() -> Index:
    global _index
    if _index is None:
        _index = Index("recursive", size=200, overlap=0)
        _index.add(_DOCS)
    return _index


@_run_coroutines_with_asyncio
class TestLabkitRetriever(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[LabkitRetriever]:
        return LabkitRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"index": _shared_index(), "mode": "hybrid"}

    @property
    def retriever_query_example(self) -> str:
        return "Where are lanterns made?"
