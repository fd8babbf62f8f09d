"""The zoo corpus: a small synthetic world in plain English, generated from a seed, in unlimited amounts.

    >>> from labkit.zoo.corpus import world, Corpus
    >>> w = world()                       # people and towns of the default world (seed 0)
    >>> w.encyclopedia["Mira Vell"]       # entity -> list of fact sentences (the `lookup` tool's data)
    >>> c = Corpus(seed=0)
    >>> next(c.pretrain_docs("train"))    # stories, encyclopedia entries, arithmetic, QA, chats
    >>> c.chat_examples("test", 3)        # message lists: chat, context QA, tool-use traces

Every item has a key (its text, or what makes it unique: the context and question, the two factors of a
multiplication, the entity and attribute of a lookup); a hash of the key puts it in ``train`` (90 %), ``val``
(5 %) or ``test`` (5 %), so a held-out item is never trained on, whatever the seeds and sizes.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator

from . import formats as F

SPLITS = ("train", "val", "test")

FIRST_F = ["Mira", "Lia", "Nora", "Ada", "Ivy", "Tess", "Zoe", "Elsa", "Rosa", "Luna", "Maya", "Nina", "Ella",
           "Iris", "Vera", "Anna", "Cora", "Hana", "Kira", "Lena", "Sara", "Tara", "Una", "Wren", "Jade", "Fern",
           "Gwen", "Opal", "Ruby", "Dora", "Edda", "Faye", "Greta", "Hilde", "Juno", "Kaya", "Lotte", "Minna"]
FIRST_M = ["Tam", "Leo", "Finn", "Otto", "Ben", "Sam", "Max", "Ivo", "Jon", "Kai", "Luca", "Milo", "Noah",
           "Owen", "Paul", "Rafe", "Theo", "Ugo", "Vik", "Will", "Abel", "Bram", "Cole", "Dario", "Emil", "Felix",
           "Gus", "Hugo", "Ian", "Jasper", "Karl", "Lars", "Marco", "Nils", "Oskar", "Piet", "Rolf", "Sven"]
_ONSETS = ["B", "C", "D", "F", "G", "H", "K", "L", "M", "N", "P", "R", "S", "T", "V", "W", "Br", "Dr", "Gr", "Kr",
           "Pr", "St", "Th", "Tr", "Sh", "Bl", "Fl", "Gl"]
_RHYMES = ["ell", "arn", "ory", "ane", "ick", "oll", "ust", "en", "ay", "ow", "ine", "ard", "ock", "ale", "ing",
           "ee", "oth", "und", "ast", "ir"]
_TAILS = ["", "", "", "er", "son", "ley", "wick", "ton", "ford", "by", "ham", "ridge"]
JOBS = ["baker", "farmer", "teacher", "doctor", "painter", "fisher", "builder", "singer", "tailor", "miller",
        "potter", "sailor", "gardener", "writer", "cook", "nurse", "smith", "weaver", "hunter", "pilot",
        "carpenter", "dancer", "judge", "shepherd", "librarian", "merchant", "guard", "clockmaker"]
ANIMALS = ["dog", "cat", "horse", "goat", "parrot", "rabbit", "owl", "duck", "pig", "fox", "turtle", "mouse"]
PET_NAMES = ["Pip", "Sooty", "Bramble", "Biscuit", "Pepper", "Moss", "Bean", "Dot", "Rusty", "Tuft", "Button",
             "Clover", "Ziggy", "Nutmeg", "Puddle", "Socks", "Maple", "Pickle", "Acorn", "Toffee", "Fudge", "Bolt"]
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "white", "black", "brown", "pink", "gray", "gold"]
FEATURES = ["by the sea", "in the hills", "on a river", "in a forest", "on a lake", "in a valley",
            "near the mountains", "on an island", "in the desert", "on the plain"]
PRODUCTS = ["apples", "cheese", "bells", "boats", "wool", "honey", "glass", "bread", "clocks", "salt", "paper",
            "kites", "lanterns", "pears", "rope", "silk", "tea", "candles", "fish", "stone"]
OBJECTS = ["key", "map", "box", "hat", "lamp", "ball", "book", "cup", "kite", "shell", "coin", "ring", "bag",
           "feather", "stone", "letter", "bell", "basket", "drum", "boot"]
ADJS = ["small", "old", "shiny", "strange", "little", "big", "soft", "heavy", "tiny", "bright", "dusty", "new"]
PLACES = ["near the old bridge", "under a tree", "in the garden", "by the river", "at the market",
          "behind the barn", "on the beach", "in the attic", "at the edge of the forest", "on the hill"]
PLACE_NOUNS = ["market", "river", "forest", "beach", "hill", "bridge", "garden", "lake", "mill", "harbor"]
SEASONS = ["spring", "summer", "autumn", "winter"]
FEELINGS = ["happy", "sad", "tired", "curious", "brave", "proud", "worried", "excited", "calm", "surprised"]
OPPOSITES = {"hot": "cold", "big": "small", "up": "down", "fast": "slow", "happy": "sad", "light": "dark",
             "old": "new", "open": "closed", "early": "late", "full": "empty", "wet": "dry", "loud": "quiet",
             "high": "low", "hard": "soft", "near": "far", "day": "night", "in": "out", "rich": "poor"}
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def split_of(key: str) -> str:
    """train (90 %), val (5 %) or test (5 %), from a hash of an item's key."""
    h = int.from_bytes(hashlib.sha1(key.encode()).digest()[:4], "big") % 100
    return "train" if h < 90 else "val" if h < 95 else "test"


def _rng(*parts) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha1(":".join(map(str, parts)).encode()).digest()[:8], "big"))


def random_surname(r: random.Random) -> str:
    return r.choice(_ONSETS) + r.choice(_RHYMES) + r.choice(_TAILS)


def random_town(r: random.Random) -> str:
    return r.choice(_ONSETS) + r.choice(_RHYMES) + r.choice(["wick", "ford", "ton", "holm", "dale", "mouth",
                                                             "stead", "gate", "by", "mere", "fell", "haven"])


def random_person_name(r: random.Random) -> tuple[str, str]:
    """(full name, pronoun)"""
    if r.random() < 0.5:
        return r.choice(FIRST_F) + " " + random_surname(r), "she"
    return r.choice(FIRST_M) + " " + random_surname(r), "he"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


# ------------------------------------------------------------------------------------------------------ the world
@dataclass
class Person:
    name: str
    pronoun: str
    job: str
    town: str
    animal: str
    pet: str
    color: str
    born: int
    friend: str = ""

    @property
    def first(self) -> str:
        return self.name.split()[0]


@dataclass
class Town:
    name: str
    feature: str
    product: str
    mayor: str
    population: int


# attribute -> (fact sentence template, question templates, answer field)
PERSON_FACTS = {
    "job": ("{name} is {a_job}.", ["What is the job of {name}?", "What does {name} do?"], "job"),
    "town": ("{name} lives in {town}.", ["Where does {name} live?", "In which town does {name} live?"], "town"),
    "pet": ("{name} has {a_animal} named {pet}.", ["What is the name of {name}'s {animal}?"], "pet"),
    "animal": ("{name} has {a_animal} named {pet}.", ["What animal does {name} have?"], "animal"),
    "color": ("The favorite color of {name} is {color}.", ["What is the favorite color of {name}?"], "color"),
    "born": ("{name} was born in {born}.", ["When was {name} born?", "In what year was {name} born?"], "born"),
    "friend": ("{name} is a friend of {friend}.", ["Who is a friend of {name}?"], "friend"),
}
TOWN_FACTS = {
    "feature": ("{name} is a town {feature}.", ["Where is {name}?"], "feature"),
    "product": ("{name} is known for its {product}.", ["What is {name} known for?"], "product"),
    "mayor": ("The mayor of {name} is {mayor}.", ["Who is the mayor of {name}?"], "mayor"),
    "population": ("{name} has {population} people.", ["How many people live in {name}?"], "population"),
}


def _fields(ent) -> dict:
    d = dict(vars(ent))
    if isinstance(ent, Person):
        d["a_job"] = f"{article(ent.job)} {ent.job}"
        d["a_animal"] = f"{article(ent.animal)} {ent.animal}"
    return d


def fact(ent, attr: str) -> str:
    table = PERSON_FACTS if isinstance(ent, Person) else TOWN_FACTS
    return table[attr][0].format(**_fields(ent))


def facts_of(ent) -> list[str]:
    table = PERSON_FACTS if isinstance(ent, Person) else TOWN_FACTS
    out = []
    for attr, (tmpl, _, _) in table.items():
        s = tmpl.format(**_fields(ent))
        if s not in out and (attr != "friend" or ent.friend):
            out.append(s)
    return out


@dataclass
class World:
    seed: int
    people: dict[str, Person] = field(default_factory=dict)
    towns: dict[str, Town] = field(default_factory=dict)

    @property
    def encyclopedia(self) -> dict[str, list[str]]:
        """entity name -> its facts (sentences). People first, then towns."""
        return _encyclopedia(self)

    def entity(self, name: str):
        return self.people.get(name) or self.towns.get(name)

    def entry(self, name: str) -> str:
        """The encyclopedia entry as one paragraph (what the ``lookup`` tool returns)."""
        key = " ".join(str(name).split())
        facts = self.encyclopedia.get(key)
        if facts is None:
            low = {k.lower(): v for k, v in self.encyclopedia.items()}
            facts = low.get(key.lower())
        return " ".join(facts) if facts else f"No entry for {key}."

    def text(self) -> str:
        """The whole encyclopedia as text, one entry per paragraph (a knowledge base for RAG)."""
        return "\n\n".join(" ".join(f) for f in self.encyclopedia.values())

    def __hash__(self) -> int:
        return hash(("world", self.seed))


_ENC_CACHE: dict[int, dict[str, list[str]]] = {}


def _encyclopedia(w: World) -> dict[str, list[str]]:
    if id(w) not in _ENC_CACHE:
        enc = {p.name: facts_of(p) for p in w.people.values()}
        enc.update({t.name: facts_of(t) for t in w.towns.values()})
        _ENC_CACHE[id(w)] = enc
    return _ENC_CACHE[id(w)]


@lru_cache(maxsize=4)
def world(seed: int = 0, n_people: int = 300, n_towns: int = 30) -> World:
    """The synthetic world of ``seed``: people (job, town, pet, favorite color, birth year, friend) and towns."""
    r = _rng("world", seed)
    w = World(seed)
    while len(w.towns) < n_towns:
        name = random_town(r)
        if name not in w.towns:
            w.towns[name] = Town(name, r.choice(FEATURES), r.choice(PRODUCTS), "", r.randrange(200, 20000))
    towns = list(w.towns)
    while len(w.people) < n_people:
        name, pron = random_person_name(r)
        if name in w.people or name in w.towns:
            continue
        w.people[name] = Person(name, pron, r.choice(JOBS), r.choice(towns), r.choice(ANIMALS), r.choice(PET_NAMES),
                                r.choice(COLORS), r.randrange(1940, 2015))
    names = list(w.people)
    for p in w.people.values():
        p.friend = r.choice([n for n in r.sample(names, 3) if n != p.name])
    for t in w.towns.values():
        t.mayor = r.choice([p.name for p in w.people.values() if p.town == t.name] or names)
    return w


def random_person(r: random.Random, towns: list[str] | None = None) -> Person:
    """A fresh person (not in the world): context-QA items use these, so answers must be read, not remembered."""
    name, pron = random_person_name(r)
    friend, _ = random_person_name(r)
    town = r.choice(towns) if towns and r.random() < 0.3 else random_town(r)
    return Person(name, pron, r.choice(JOBS), town, r.choice(ANIMALS), r.choice(PET_NAMES), r.choice(COLORS),
                  r.randrange(1940, 2015), friend)


def random_town_entity(r: random.Random) -> Town:
    mayor, _ = random_person_name(r)
    return Town(random_town(r), r.choice(FEATURES), r.choice(PRODUCTS), mayor, r.randrange(200, 20000))


# ----------------------------------------------------------------------------------------------------- generators
class Corpus:
    """Generators over the world of ``world_seed``; ``seed`` picks the stream (same seed, same items)."""

    def __init__(self, seed: int = 0, world_seed: int = 0):
        self.seed = seed
        self.world = world(world_seed)
        self._people = list(self.world.people.values())
        self._towns = list(self.world.towns.values())

    # -- stories ---------------------------------------------------------------------------------------------
    def story(self, r: random.Random, p: Person | None = None) -> str:
        p = p or r.choice(self._people)
        friend = self.world.people.get(p.friend) or r.choice(self._people)
        P, pro, Pro = p.first, p.pronoun, p.pronoun.capitalize()
        poss = "her" if pro == "she" else "his"
        obj, adj, place = r.choice(OBJECTS), r.choice(ADJS), r.choice(PLACES)
        s = []
        s.append(r.choice([
            f"Once upon a time, there was {article(p.job)} {p.job} named {P}.",
            f"{P} was {article(p.job)} {p.job} who lived in {p.town}.",
            f"One {r.choice(SEASONS)} morning, {P} woke up early.",
            f"In the town of {p.town}, there lived {article(p.job)} {p.job} called {P}.",
            f"{P} had {article(p.animal)} {p.animal} named {p.pet}.",
        ]))
        events = [
            f"{Pro} found {article(adj)} {adj} {obj} {place}.",
            f"{Pro} wanted to go to the {r.choice(PLACE_NOUNS)}, but the road was long.",
            f"{poss.capitalize()} {p.animal}, {p.pet}, ran away {place}.",
            f"It started to rain, so {P} stayed inside and read a book.",
            f"{Pro} made a {r.choice(COLORS)} {obj} for {poss} friend {friend.first}.",
            f"{P} felt {r.choice(FEELINGS)} because {pro} had lost {poss} {obj}.",
            f"{Pro} walked to {r.choice(self._towns).name} to sell {r.choice(PRODUCTS)}.",
        ]
        r.shuffle(events)
        s += events[: r.randint(1, 3)]
        lines = [f"Can you help me find my {obj}?", "What a lovely day it is!", f"Let us go to the {r.choice(PLACE_NOUNS)}.",
                 "I am not afraid.", f"Look at this {obj}!", "Where did everyone go?", "I have an idea.",
                 f"I am so {r.choice(FEELINGS)} today."]
        line = r.choice(lines)
        s.append(f'"{line[:-1] + "," if line.endswith(".") else line}" said {P}.')
        s.append(r.choice([
            f"{friend.first} came to help.",
            f'"Do not worry," said {friend.first}. "I will help you."',
            f"{friend.first} smiled and took {P}'s hand.",
            f"Then {friend.first} the {friend.job} arrived.",
        ]))
        s.append(r.choice([
            f"Together they looked {r.choice(PLACES)} and found it.",
            "Together they shared some bread and tea.",
            f"Together they walked home to {p.town}.",
            "They laughed and sang all the way home.",
        ]))
        s.append(r.choice([
            f"In the end, {P} was very {r.choice(['happy', 'glad', 'proud', 'calm'])}.",
            "From that day on, they were the best of friends.",
            f"{P} never forgot that day.",
            "And that was the end of a good day.",
        ]))
        return " ".join(s)

    # -- QA items --------------------------------------------------------------------------------------------
    def _cqa(self, r: random.Random) -> dict:
        towns = [t.name for t in self._towns]
        if r.random() < 0.75:
            ents = [random_person(r, towns) for _ in range(2)]
            table = PERSON_FACTS
        else:
            ents = [random_town_entity(r) for _ in range(2)]
            table = TOWN_FACTS
        attr = r.choice(list(table))
        target = ents[0]
        facts = [fact(target, attr)]
        others = [a for a in table if table[a][0] != table[attr][0]]
        for a in r.sample(others, r.randint(0, 2)):
            facts.append(fact(target, a))
        if r.random() < 0.6:  # a distractor: the same relation for someone else
            facts.append(fact(ents[1], attr))
        if r.random() < 0.3:
            facts.append(fact(ents[1], r.choice(list(table))))
        facts = list(dict.fromkeys(facts))
        r.shuffle(facts)
        question = r.choice(table[attr][1]).format(**_fields(target))
        answer = str(getattr(target, table[attr][2]))
        return {"context": " ".join(facts), "question": question, "answer": answer}

    def context_qa(self, split: str, n: int, stream: str = "cqa") -> list[dict]:
        """Context -> question -> answer items (the answer is a span of the context)."""
        return self._take(split, n, stream, self._cqa, lambda it: f"cqa:{it['context']}|{it['question']}")

    def _mul(self, r: random.Random) -> dict:
        a = r.randrange(10, 1000)
        b = r.randrange(10, 1000) if r.random() < 0.7 else r.randrange(10, 100)
        if r.random() < 0.5:
            a, b = b, a
        q = r.choice(["What is {a} times {b}?", "What is {a} * {b}?", "Compute {a} * {b}.",
                      "What is {a} multiplied by {b}?", "Multiply {a} by {b}.", "How much is {a} times {b}?"])
        return {"a": a, "b": b, "op": "*", "question": q.format(a=a, b=b), "answer": str(a * b),
                "expression": f"{a}*{b}"}

    def multiplication(self, split: str, n: int, stream: str = "mul") -> list[dict]:
        """Multi-digit multiplication questions (2-3 digit factors); held out by the pair of factors."""
        return self._take(split, n, stream, self._mul, lambda it: f"mul:{min(it['a'], it['b'])}*{max(it['a'], it['b'])}")

    def _addsub(self, r: random.Random) -> dict:
        a, b = r.randrange(100, 10000), r.randrange(10, 1000)
        if r.random() < 0.5:
            q = r.choice(["What is {a} plus {b}?", "What is {a} + {b}?", "Add {a} and {b}."])
            return {"a": a, "b": b, "op": "+", "question": q.format(a=a, b=b), "answer": str(a + b), "expression": f"{a}+{b}"}
        q = r.choice(["What is {a} minus {b}?", "What is {a} - {b}?", "Subtract {b} from {a}."])
        return {"a": a, "b": b, "op": "-", "question": q.format(a=a, b=b), "answer": str(a - b), "expression": f"{a}-{b}"}

    def _lookup(self, r: random.Random) -> dict:
        if r.random() < 0.8:
            ent = r.choice(self._people)
            table = PERSON_FACTS
        else:
            ent = r.choice(self._towns)
            table = TOWN_FACTS
        attr = r.choice(list(table))
        question = r.choice(table[attr][1]).format(**_fields(ent))
        return {"entity": ent.name, "attr": attr, "question": question,
                "answer": str(getattr(ent, table[attr][2])), "fact": fact(ent, attr)}

    def lookups(self, split: str, n: int, stream: str = "lookup") -> list[dict]:
        """Questions about the world's entities, to answer with the ``lookup`` tool."""
        return self._take(split, n, stream, self._lookup, lambda it: f"lookup:{it['entity']}|{it['attr']}")

    def _take(self, split, n, stream, make, key) -> list[dict]:
        """``n`` items of ``split`` with distinct keys. When a small key space runs out (lookups: the world has
        about 2,200 entity/attribute pairs), val/test return fewer items and train starts repeating."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}")
        r = _rng(self.seed, stream, split)
        out: list[dict] = []
        seen: set = set()
        misses = 0
        while len(out) < n:
            it = make(r)
            k = key(it)
            if split_of(k) != split or k in seen:
                misses += 1
                if misses > 5000:
                    if split != "train":
                        break
                    seen.clear()
                continue
            misses = 0
            seen.add(k)
            out.append(it)
        return out

    # -- chats -----------------------------------------------------------------------------------------------
    def chat_cqa(self, it: dict) -> list[dict]:
        return F.context_qa_messages(it["context"], it["question"]) + [{"role": "assistant", "content": it["answer"]}]

    def chat_calc(self, it: dict, r: random.Random, tools: bool = True) -> list[dict]:
        msgs = []
        if not tools:
            return [{"role": "system", "content": F.NO_TOOLS_SYSTEM}, {"role": "user", "content": it["question"]},
                    {"role": "assistant", "content": f"The answer is {it['answer']}."}]
        if r.random() < 0.5:
            msgs.append({"role": "system", "content": F.TOOLS_SYSTEM})
        msgs += [{"role": "user", "content": it["question"]},
                 {"role": "assistant", "content": F.format_call("calculator", expression=it["expression"])},
                 {"role": "tool", "content": F.calculator(it["expression"])},
                 {"role": "assistant", "content": f"The answer is {it['answer']}."}]
        return msgs

    def chat_lookup(self, it: dict, r: random.Random) -> list[dict]:
        msgs = [{"role": "system", "content": F.TOOLS_SYSTEM}] if r.random() < 0.5 else []
        return msgs + [{"role": "user", "content": it["question"]},
                       {"role": "assistant", "content": F.format_call("lookup", entity=it["entity"])},
                       {"role": "tool", "content": self.world.entry(it["entity"])},
                       {"role": "assistant", "content": it["fact"]}]

    def chat_instruction(self, r: random.Random) -> list[dict]:
        p = r.choice(self._people)
        k = r.randrange(12)
        if k == 0:
            u, a = r.choice(["Write a short story about {n}.", "Tell me a story about {n}.", "Can you write a story about {n}?"]).format(n=p.first), self.story(r, p)
        elif k == 1:
            u, a = r.choice(["Tell me a story.", "Write a short story.", "Please tell me a bedtime story."]), self.story(r)
        elif k == 2:
            w = r.choice(list(OPPOSITES))
            u, a = f"What is the opposite of {w}?", f"The opposite of {w} is {OPPOSITES[w]}."
        elif k == 3:
            phrase = r.choice([self.story(r).split(". ")[0] + ".", f"The {r.choice(ADJS)} {r.choice(OBJECTS)} is {r.choice(COLORS)}."])
            u, a = f"Repeat after me: {phrase}", phrase
        elif k == 4:
            w = r.choice(OBJECTS + ANIMALS + COLORS)
            u, a = f"Spell the word {w}.", "-".join(w)
        elif k == 5:
            x, y = r.sample(range(1, 100), 2)
            u, a = f"Which number is bigger, {x} or {y}?", f"{max(x, y)} is bigger."
        elif k == 6:
            u = r.choice(["Hello!", "Hi!", "Hello, who are you?", "Good morning!", "Hi there."])
            a = r.choice(["Hello! How can I help you today?", "Hi! I am a tiny language model. How can I help?"])
        elif k == 7:
            s = r.randrange(1, 15)
            e = s + r.randrange(2, 7)
            u, a = f"Count from {s} to {e}.", ", ".join(str(i) for i in range(s, e + 1)) + "."
        elif k == 8:
            x, y = r.randrange(1, 10), r.randrange(1, 10)
            op = r.choice(["plus", "times"])
            u, a = f"What is {x} {op} {y}?", f"The answer is {x + y if op == 'plus' else x * y}."
        elif k == 9:
            cat = r.choice([("colors", COLORS), ("animals", ANIMALS), ("jobs", JOBS), ("objects", OBJECTS)])
            items = r.sample(cat[1], 3)
            u, a = f"Name three {cat[0]}.", f"{items[0].capitalize()}, {items[1]} and {items[2]}."
        elif k == 10:
            t = r.choice(self._towns)
            u = f"Tell me about {t.name}."
            a = " ".join(facts_of(t))
        else:
            u = f"Tell me about {p.name}."
            a = " ".join(facts_of(p))
        return [{"role": "user", "content": u}, {"role": "assistant", "content": a}]

    #: mix of chat examples (kind -> weight) for fine-tuning tiny-chat
    CHAT_MIX = {"cqa": 0.38, "calc": 0.22, "addsub": 0.05, "calc_notool": 0.05, "lookup": 0.15, "instruction": 0.15}

    def chat_examples(self, split: str, n: int, mix: dict | None = None, stream: str = "chat") -> list[list[dict]]:
        """``n`` message lists drawn from the chat mix (context QA, calculator and lookup traces, instructions)."""
        mix = mix or self.CHAT_MIX
        r = _rng(self.seed, stream, split, "mix")
        kinds = r.choices(list(mix), weights=list(mix.values()), k=n)
        counts = {k: kinds.count(k) for k in mix}
        pools = {
            "cqa": iter(self.context_qa(split, counts.get("cqa", 0), stream + "-cqa")),
            "calc": iter(self.multiplication(split, counts.get("calc", 0), stream + "-mul")),
            "calc_notool": iter(self.multiplication(split, counts.get("calc_notool", 0), stream + "-mulnt")),
            "addsub": iter(self._take(split, counts.get("addsub", 0), stream + "-as", self._addsub,
                                      lambda it: f"as:{it['a']}{it['op']}{it['b']}")),
            "lookup": iter(self.lookups(split, counts.get("lookup", 0), stream + "-lookup")),
        }
        out = []
        for kind in kinds:
            if kind == "cqa":
                out.append(self.chat_cqa(next(pools["cqa"])))
            elif kind in ("calc", "addsub"):
                out.append(self.chat_calc(next(pools[kind]), r))
            elif kind == "calc_notool":
                out.append(self.chat_calc(next(pools[kind]), r, tools=False))
            elif kind == "lookup":
                out.append(self.chat_lookup(next(pools["lookup"]), r))
            else:
                while True:
                    msgs = self.chat_instruction(r)
                    if split_of("chat:" + msgs[0]["content"] + msgs[1]["content"]) == split or msgs[0]["content"].startswith(("Hello", "Hi", "Good")):
                        break
                out.append(msgs)
        return out

    # -- pretraining documents -------------------------------------------------------------------------------
    PRETRAIN_MIX = {"story": 0.36, "encyclopedia": 0.16, "arithmetic": 0.08, "qa_text": 0.10, "chat": 0.30}

    def pretrain_docs(self, split: str = "train", mix: dict | None = None) -> Iterator[str]:
        """An endless stream of plain-text documents (chats rendered with ``formats.format_chat``)."""
        mix = mix or self.PRETRAIN_MIX
        r = _rng(self.seed, "pretrain", split)
        kinds, weights = list(mix), list(mix.values())
        chat_batch: list = []
        cqa_batch: list = []
        batch_no = 0
        while True:
            kind = r.choices(kinds, weights)[0]
            if kind == "story":
                doc = self.story(r)
            elif kind == "encyclopedia":
                ent = r.choice(self._people + self._towns)
                doc = " ".join(facts_of(ent))
            elif kind == "arithmetic":
                lines = []
                for _ in range(r.randint(3, 8)):
                    x, y = r.randrange(0, 13), r.randrange(0, 13)
                    op = r.choice("+-*")
                    if op == "+" and r.random() < 0.5:
                        x, y = r.randrange(10, 100), r.randrange(10, 100)
                    val = x + y if op == "+" else x - y if op == "-" else x * y
                    lines.append(f"{x} {op} {y} = {val}")
                doc = "\n".join(lines)
            elif kind == "qa_text":
                if not cqa_batch:
                    batch_no += 1
                    cqa_batch = self.context_qa(split, 64, f"pt-cqa-{batch_no}")
                it = cqa_batch.pop()
                doc = f"Context: {it['context']}\nQuestion: {it['question']}\nAnswer: {it['answer']}"
            else:
                if not chat_batch:
                    batch_no += 1
                    chat_batch = self.chat_examples(split, 64, stream=f"pt-chat-{batch_no}")
                yield F.format_chat(chat_batch.pop(), add_generation_prompt=False)
                continue
            if split_of("doc:" + doc) == split or kind in ("encyclopedia", "arithmetic"):
                yield F.EOT + doc + "\n"

    def tokenizer_text(self, n_docs: int = 20000) -> Iterator[str]:
        """Training text for the tokenizer (the pretraining stream plus the whole encyclopedia)."""
        yield self.world.text()
        docs = self.pretrain_docs("train")
        for _ in range(n_docs):
            yield next(docs)


# ------------------------------------------------------------------------------------------- the world's tools
_world_of_seed = world  # the function, under a name that lookup's ``world`` parameter does not hide


def lookup(entity: str, world=None) -> str:
    """The encyclopedia entry of ``entity`` in the synthetic world (default: ``world()``, seed 0)."""
    return (world if world is not None else _world_of_seed()).entry(entity)


def run_tool(name: str, args: dict, world=None) -> str:
    """Run one parsed tool call and return the observation text."""
    if name == "calculator":
        return F.calculator(args.get("expression", ""))
    if name == "lookup":
        return lookup(args.get("entity", ""), world)
    return f"Error: unknown tool {name}. Tools: {', '.join(F.TOOLS)}."
