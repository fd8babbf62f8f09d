"""The shipped knowledge base and QA set.

The knowledge base is a gazetteer of the zoo's synthetic world (``labkit.zoo.corpus.world(0)``): one Markdown
page per town (``labkit/rag/data/kb/<Town>.md``) with the town's facts and a paragraph per resident. The
paragraphs are written the way people write: the name once, then pronouns, with varied wording ("works as",
"is a ... by trade"). So a chunk cut in the middle of a paragraph loses whom it is about, which is what makes
chunking matter.

The QA set (``labkit/rag/data/qa.jsonl``) has single-hop questions (one fact) and multi-hop questions (two
facts that can sit in different documents, for graph RAG). Questions are phrased differently from the text
("What does X do for a living?" for "X ... works as a baker"). Each item is labelled with its **evidence**:
for each fact, the document, the character span of the sentence that states it and the entity it is about.
A chunk is *relevant* to a fact when it contains that whole sentence and names the entity: the chunk alone
answers it. Labels as spans work for any chunking; ``chunks`` also lists the relevant chunk ids under the
default chunking (recursive, 400 characters, overlap 60).

The files are generated once by ``python -m labkit.rag.kb`` (deterministic) and shipped, so they do not move
when the zoo's generator changes. Nothing here was tuned to make a retriever win: the templates were written
first and the measured numbers are whatever they are.
"""
from __future__ import annotations

import json
import random
import re
from functools import lru_cache
from pathlib import Path

from .ingest import SourceDoc

DATA_DIR = Path(__file__).resolve().parent / "data"
KB_DIR = DATA_DIR / "kb"
QA_FILE = DATA_DIR / "qa.jsonl"
GRAPH_FILE = DATA_DIR / "facts.json"

JOB_SENT = ["{name} lives in {town} and works as {a_job}.", "{name} is {a_job} by trade and makes a home in {town}.",
            "{name}, who lives in {town}, earns a living as {a_job}."]
PET_SENT = ["{Pro} keeps {a_animal} called {pet}.", "{Poss} {animal} is named {pet}.",
            "{Pro} shares the house with {a_animal} named {pet}."]
COLOR_SENT = ["{Poss} favourite colour is {color}.", "{Pro} likes {color} more than any other colour."]
BORN_SENT = ["{Pro} was born in {born}.", "{Pro} came into the world in {born}."]
FRIEND_SENT = ["{Pro} is a close friend of {friend}.", "{friend} is one of {poss} best friends."]

PERSON_Q = {
    "job": ["What does {name} do for a living?", "What is the occupation of {name}?", "Which trade does {name} practise?"],
    "town": ["Which town is {name} from?", "Where is the home of {name}?"],
    "pet": ["What is the name of {name}'s {animal}?", "What is {name}'s pet called?"],
    "animal": ["What kind of animal does {name} keep?"],
    "color": ["Which colour does {name} like best?", "What is {name}'s favourite colour?"],
    "born": ["In what year was {name} born?", "When was {name} born?"],
    "friend": ["Who is {name} friends with?"],
}
TOWN_Q = {
    "product": ["What is {town} known for?", "What is {town} famous for?"],
    "mayor": ["Who is the mayor of {town}?", "Who leads the town of {town}?"],
    "population": ["How many people live in {town}?", "What is the population of {town}?"],
    "feature": ["Where is {town} located?"],
}
MULTI_Q = {
    "mayor_job": "What does the mayor of {town} do for a living?",
    "mayor_color": "Which colour does the mayor of {town} like best?",
    "friend_town": "In which town does the friend of {name} live?",
    "friend_job": "What is the occupation of {name}'s friend?",
}


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _person_paragraph(p, r: random.Random) -> tuple[str, dict[str, tuple[int, int]]]:
    """The paragraph and, per attribute, the (start, end) of the sentence stating it (relative)."""
    f = {"name": p.name, "town": p.town, "a_job": _a(p.job), "a_animal": _a(p.animal), "animal": p.animal,
         "pet": p.pet, "color": p.color, "born": p.born, "friend": p.friend,
         "Pro": p.pronoun.capitalize(), "Poss": "Her" if p.pronoun == "she" else "His",
         "poss": "her" if p.pronoun == "she" else "his"}
    rest = [("pet", r.choice(PET_SENT)), ("color", r.choice(COLOR_SENT)), ("born", r.choice(BORN_SENT))]
    if p.friend:
        rest.append(("friend", r.choice(FRIEND_SENT)))
    r.shuffle(rest)
    parts = [("job", r.choice(JOB_SENT))] + rest
    text, spans = "", {}
    for attr, tmpl in parts:
        s = tmpl.format(**f)
        start = len(text) + (1 if text else 0)
        text = (text + " " + s) if text else s
        spans[attr] = (start, start + len(s))
    spans["town"] = spans["job"]
    spans["animal"] = spans["pet"]
    return text, spans


def generate(seed: int = 0, n_single: int = 240, n_multi: int = 60):
    """The knowledge base of ``world(seed)`` in memory (deterministic): ``(pages, items, world)`` with
    ``pages[doc_id] = text`` and the QA items (no ids, no chunk labels). Seed 0 is the shipped one; other
    seeds give other towns and people in the same style (the extractive reader trains on those)."""
    from ..zoo.corpus import world

    w = world(seed)
    r = random.Random(f"labkit-rag-kb-{seed}")
    pages: dict[str, str] = {}
    where: dict[str, dict] = {}  # entity -> {"doc", "spans": attr -> (start, end)}
    for town in sorted(w.towns.values(), key=lambda t: t.name):
        doc = f"kb/{town.name}.md"
        head = f"# {town.name}\n\n"
        intro = [("feature", f"{town.name} is a town {town.feature}."),
                 ("product", f"It is known for its {town.product}, and {town.population} people live there."),
                 ("mayor", f"The mayor of {town.name} is {town.mayor}.")]
        text = head
        spans = {}
        for attr, s in intro:
            if not text.endswith("\n"):
                text += " "
            spans[attr] = (len(text), len(text) + len(s))
            text += s
        spans["population"] = spans["product"]
        where[town.name] = {"doc": doc, "spans": spans, "start": len(head)}
        text += f"\n\n## People of {town.name}\n"
        residents = sorted((p for p in w.people.values() if p.town == town.name), key=lambda p: p.name)
        for p in residents:
            para, pspans = _person_paragraph(p, r)
            text += "\n"
            base = len(text)
            text += para + "\n"
            where[p.name] = {"doc": doc, "spans": {a: (base + s, base + e) for a, (s, e) in pspans.items()},
                             "start": base}
        pages[doc] = text

    def ev(entity, attr):
        info = where[entity]
        s, e = info["spans"][attr]
        return {"doc": info["doc"], "start": s, "end": e, "entity": entity}

    people = sorted(w.people.values(), key=lambda p: p.name)
    towns = sorted(w.towns.values(), key=lambda t: t.name)
    items = []
    seen = set()
    while len(items) < n_single:
        if r.random() < 0.8:
            p = r.choice(people)
            attr = r.choice([a for a in PERSON_Q if a != "friend" or p.friend])
            if (p.name, attr) in seen:
                continue
            q = r.choice(PERSON_Q[attr]).format(name=p.name, animal=p.animal)
            ans = str(getattr(p, {"color": "color"}.get(attr, attr)))
            items.append({"question": q, "answer": ans, "type": f"person.{attr}", "hops": 1,
                          "evidence": [ev(p.name, attr)]})
            seen.add((p.name, attr))
        else:
            t = r.choice(towns)
            attr = r.choice(list(TOWN_Q))
            if (t.name, attr) in seen:
                continue
            q = r.choice(TOWN_Q[attr]).format(town=t.name)
            ans = {"product": t.product, "mayor": t.mayor, "population": str(t.population),
                   "feature": t.feature}[attr]
            items.append({"question": q, "answer": ans, "type": f"town.{attr}", "hops": 1,
                          "evidence": [ev(t.name, attr)]})
            seen.add((t.name, attr))
    multi = []
    while len(multi) < n_multi:
        kind = r.choice(list(MULTI_Q))
        if kind.startswith("mayor"):
            t = r.choice(towns)
            m = w.people[t.mayor]
            key = (kind, t.name)
            q = MULTI_Q[kind].format(town=t.name)
            attr = "job" if kind == "mayor_job" else "color"
            ans = m.job if attr == "job" else m.color
            evidence = [ev(t.name, "mayor"), ev(m.name, attr)]
        else:
            p = r.choice(people)
            if not p.friend:
                continue
            f = w.people[p.friend]
            key = (kind, p.name)
            q = MULTI_Q[kind].format(name=p.name)
            attr = "town" if kind == "friend_town" else "job"
            ans = f.town if attr == "town" else f.job
            evidence = [ev(p.name, "friend"), ev(f.name, attr)]
        if key in seen:
            continue
        seen.add(key)
        multi.append({"question": q, "answer": ans, "type": f"multi.{kind}", "hops": 2, "evidence": evidence})
    items += multi
    return pages, items, w


def build(out: Path = DATA_DIR, seed: int = 0, n_single: int = 240, n_multi: int = 60) -> None:
    """Generate the knowledge base pages, the QA set and the fact table (deterministic) and write them."""
    pages, items, w = generate(seed, n_single, n_multi)
    kb = out / "kb"
    kb.mkdir(parents=True, exist_ok=True)
    for old in kb.glob("*.md"):
        old.unlink()
    for doc, text in pages.items():
        (out / doc).write_text(text, encoding="utf-8")
    people = sorted(w.people.values(), key=lambda p: p.name)
    # relevant chunk ids under the default chunking
    from .chunking import ChunkSettings, chunk_text

    settings = ChunkSettings.make("recursive")
    texts = {f"kb/{p.name}": p.read_text(encoding="utf-8") for p in sorted(kb.glob("*.md"))}
    chunks = {doc: chunk_text(doc, text, settings) for doc, text in texts.items()}
    with open(out / "qa.jsonl", "w", encoding="utf-8") as fh:
        for i, it in enumerate(items):
            it = {"id": f"q{i:03d}", **it}
            it["chunks"] = [[c.id for c in chunks[e["doc"]] if relevant(c, e)] for e in it["evidence"]]
            fh.write(json.dumps(it, ensure_ascii=False) + "\n")
    facts = []
    for p in people:
        facts += [(p.name, "lives_in", p.town), (p.name, "works_as", p.job), (p.name, "friend_of", p.friend)]
    (out / "facts.json").write_text(json.dumps({"note": "ground-truth triples of the world, for checking a "
                                                        "graph built from the text; not used for retrieval",
                                                "triples": facts}, indent=0))


def relevant(chunk, evidence: dict, text_of=None) -> bool:
    """A chunk answers a fact when it holds the whole sentence that states it and names its entity."""
    if chunk.doc_id != evidence["doc"]:
        return False
    if not (chunk.start <= evidence["start"] and chunk.end >= evidence["end"]):
        return False
    return evidence["entity"] in chunk.text


@lru_cache(maxsize=1)
def _kb_docs() -> tuple:
    if not KB_DIR.is_dir():
        raise FileNotFoundError(f"the knowledge base is missing from {KB_DIR}; reinstall labkit")
    return tuple(SourceDoc(f"kb/{p.name}", p.read_text(encoding="utf-8"), f"kb/{p.name}")
                 for p in sorted(KB_DIR.glob("*.md")))


def knowledge_base() -> list[SourceDoc]:
    """The shipped knowledge base: one SourceDoc per town page, ids ``kb/<Town>.md``."""
    return list(_kb_docs())


def qa_split(item_id: str) -> str:
    """``dev`` or ``test``: a fixed split of the QA set by a hash of the item id (about half each). Tune
    anything (fusion weights, chunk sizes) on ``dev``; report on ``test``."""
    import hashlib

    return "dev" if int(hashlib.sha1(item_id.encode()).hexdigest(), 16) % 2 == 0 else "test"


def qa_set(hops: int | None = None, split: str | None = None) -> list[dict]:
    """The shipped QA items (``hops=1`` single-hop only, ``hops=2`` multi-hop only; ``split='dev'|'test'``)."""
    if split not in (None, "dev", "test"):
        from ..errors import LabkitUsageError

        raise LabkitUsageError(f"split must be 'dev', 'test' or None (all), not {split!r}")
    with open(QA_FILE, encoding="utf-8") as fh:
        items = [json.loads(line) for line in fh if line.strip()]
    return [it for it in items if (hops is None or it["hops"] == hops)
            and (split is None or qa_split(it["id"]) == split)]


#: the fusion weights of the shipped knowledge base's index, chosen by ``tune_fusion`` on the dev split of the
#: QA set (recursive chunking, k=5); ``tests/test_rag.py`` re-runs the tuning and checks it gives these.
KB_FUSION = dict(dense=0.05, bm25=0.95, rrf_k=20, rerank=0.7)


def knowledge_base_index(chunking: str = "recursive", size: int | None = None, overlap: int | None = None,
                         name: str = "kb"):
    """An Index over the shipped knowledge base, with the fusion weights tuned on the QA dev split."""
    from .index import Fusion, Index

    ix = Index(chunking, size, overlap, name=name)
    ix.add(knowledge_base())
    ix.fusion = Fusion(**KB_FUSION)
    return ix


def world_triples(text_docs=None) -> list[tuple[str, str, str]]:
    """Relations read from the knowledge base *text* with patterns (the templated prose makes regular
    expressions an honest information-extraction step here; at scale an LLM or an NER+RE model does it)."""
    pats = [
        (re.compile(r"^([A-Z][a-z]+ [A-Z][a-z]+)(?: lives in| is [a-z ]+ by trade and makes a home in|, who lives in) "
                    r"([A-Z][a-z]+)"), "lives_in"),
        (re.compile(r"^([A-Z][a-z]+ [A-Z][a-z]+).*?(?:works as|earns a living as|is) an? ([a-z]+)"), "works_as"),
        (re.compile(r"The mayor of ([A-Z][a-z]+) is ([A-Z][a-z]+ [A-Z][a-z]+)\."), "has_mayor"),
    ]
    friend1 = re.compile(r"(?:He|She) is a close friend of ([A-Z][a-z]+ [A-Z][a-z]+)\.")
    friend2 = re.compile(r"([A-Z][a-z]+ [A-Z][a-z]+) is one of (?:his|her) best friends\.")
    triples = []
    for d in text_docs or knowledge_base():
        for para in d.text.split("\n"):
            para = para.strip()
            if not para or para.startswith("#"):
                continue
            subject = None
            for rx, rel in pats:
                m = rx.search(para)
                if m:
                    triples.append((m.group(1), rel, m.group(2)))
                    if rel != "has_mayor":
                        subject = m.group(1)
            if subject:
                for rx in (friend1, friend2):
                    m = rx.search(para)
                    if m:
                        triples.append((subject, "friend_of", m.group(1)))
    return list(dict.fromkeys(triples))


if __name__ == "__main__":
    build()
    print(f"wrote {len(list(KB_DIR.glob('*.md')))} pages and {len(qa_set())} questions to {DATA_DIR}")
