"""A small graph RAG: entities and relations read from the knowledge base text into a networkx graph, used to
expand multi-hop questions ("What does the mayor of Barnhaven do?") into the bridge entity's own query.

    >>> from labkit.rag import graph
    >>> g = graph.build_graph()                         # MultiDiGraph: Person/Town nodes, relation-labelled edges
    >>> graph.graph_search(index, g, "What does the mayor of Barnhaven do for a living?")

Steps (what Microsoft's GraphRAG or LlamaIndex's KnowledgeGraphIndex do at scale, with an LLM extracting the
triples): 1. link the question's entities to graph nodes; 2. follow the edges whose relation the question
names (mayor, friend, lives); 3. search once for the question and once per bridge entity found; 4. fuse the
rankings (RRF).
"""
from __future__ import annotations

import re

from .index import Hit, Index, Retrieval

RELATION_WORDS = {"has_mayor": ("mayor", "leads"), "friend_of": ("friend",), "lives_in": ("live", "town", "home"),
                  "works_as": ("job", "occupation", "trade", "living", "do")}


def build_graph(docs=None):
    """Triples read from the knowledge base text (``kb.world_triples``) as a networkx MultiDiGraph."""
    import networkx as nx

    from .kb import world_triples

    g = nx.MultiDiGraph()
    for s, rel, o in world_triples(docs):
        g.add_edge(s, o, relation=rel)
    return g


def link_entities(g, question: str) -> list[str]:
    """Graph nodes named in the question (longest names first, no overlaps)."""
    found, taken = [], []
    for node in sorted(g.nodes, key=len, reverse=True):
        for m in re.finditer(re.escape(node), question):
            if not any(a < m.end() and m.start() < b for a, b in taken):
                found.append(node)
                taken.append((m.start(), m.end()))
    return found


def bridges(g, question: str) -> list[tuple[str, str, str]]:
    """(entity, relation, neighbour) hops whose relation the question mentions, excluding the final attribute."""
    q = question.lower()
    out = []
    for ent in link_entities(g, question):
        for _, nb, data in g.out_edges(ent, data=True):
            rel = data["relation"]
            if rel in ("has_mayor", "friend_of") and any(w in q for w in RELATION_WORDS[rel]):
                out.append((ent, rel, nb))
    return out


def graph_search(index: Index, g, question: str, k: int = 5, mode: str = "hybrid") -> Retrieval:
    """Retrieve for the question and for each bridge entity, fused by RRF."""
    base = index.search(question, k=max(k, 10), mode=mode)
    hops = bridges(g, question)
    lists = [base.hits]
    queries = [question]
    for ent, rel, nb in hops:
        sub = question.replace(ent, nb)  # "... the mayor of Ian Lirer ..." still names the bridge entity
        queries.append(sub)
        lists.append(index.search(sub, k=max(k, 10), mode=mode).hits)
    fused: list[Hit] = Index.fuse(lists, max(k, 10)) if len(lists) > 1 else base.hits
    notes = [f"graph hop: {e} --{r}--> {n}" for e, r, n in hops] or ["no graph hop found: plain retrieval"]
    return Retrieval(question, "graph", k, False, {"graph": fused, mode: base.hits}, notes, base.seconds)


def compare_multihop(index: Index, g, qa: list[dict] | None = None, k: int = 5, mode: str = "hybrid") -> dict:
    """Share of multi-hop questions with *all* their evidence in the top k: plain retrieval vs graph RAG."""
    from .evaluate import relevant_sets, score_ranking
    from .kb import qa_set

    qa = qa if qa is not None else qa_set(hops=2)
    from .index import encoder

    subs = [it["question"].replace(e, n) for it in qa for e, _, n in bridges(g, it["question"])]
    encoder().queries([it["question"] for it in qa] + subs)  # one batched pass for every query
    plain = graph_ = 0.0
    for it in qa:
        facts = relevant_sets(index, it)
        r = graph_search(index, g, it["question"], k=k, mode=mode)
        plain += score_ranking([h.id for h in r.by_retriever[mode]], facts, k)["all"]
        graph_ += score_ranking([h.id for h in r.by_retriever["graph"]], facts, k)["all"]
    n = max(1, len(qa))
    return {"questions": len(qa), "plain": plain / n, "graph": graph_ / n, "k": k}
