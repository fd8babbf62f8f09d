"""Data preparation for lab 06: a messy corpus with known labels, and the stages that clean it.

    >>> from labkit import dataprep as D
    >>> corpus = D.make_corpus(seed=0)           # ~1,000 documents, each with the labels the generator knows
    >>> corpus.docs[3].labels, corpus.count("near_dup")
    >>> D.normalise("<p>Caf\\u00e9&nbsp;ﬁne</p>")  # HTML stripped, NFKC, whitespace collapsed

The corpus is generated from a seed, offline: clean English documents are stories of the zoo's world (the kit's
own TinyStories-like text), and the generator adds what a web crawl brings: exact and near duplicates, HTML,
odd Unicode, boilerplate lines (cookie banners, menus, footers), other languages (faker's locale word lists),
personal data (emails, phones, Luhn-valid card numbers, IBANs, IP addresses) with look-alikes that are not
personal data, low-quality pages (keyword spam, repeated characters, tables, word salad, very short pages),
toxic-looking comments (a small made-up insult lexicon, some of whose words also occur harmlessly), and leaked
benchmark items (questions of the corpus's own evaluation set, with their answers).

Every stage is a plain function; ``stage_report`` scores what a stage dropped against the labels. The pieces the
learner writes in the lab (a quality rule set, the MinHash signature, the n-gram overlap) have kit versions here
(``quality_rules``, ``minhash_signature``, ``ngram_overlap``) and checks against independent references
(``agrees_with_datasketch`` against ``datasketch.MinHash``; labels of corpora generated with other seeds).
Heavy libraries (datasketch, presidio, sklearn, wordfreq, faker, bs4) are imported inside the functions.
"""
from __future__ import annotations

import functools
import hashlib
import random
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from .errors import LabkitUsageError

#: labels of documents a pipeline should drop
DROP_LABELS = ("exact_dup", "near_dup", "non_english", "low_quality", "toxic", "leak")
#: labels of documents a pipeline should keep, fixed
FIX_LABELS = ("html", "unicode", "boilerplate", "pii")
LABELS = DROP_LABELS + FIX_LABELS
LANGS = ("en", "de", "fr", "es", "it", "nl", "pl")
_LOCALES = {"de": "de_DE", "fr": "fr_FR", "es": "es_ES", "it": "it_IT", "nl": "nl_NL", "pl": "pl_PL"}

# ------------------------------------------------------------------------------------------------ the corpus
COOKIE = [
    "We use cookies to improve your experience. By continuing to browse you accept our cookie policy.",
    "This website uses cookies. Accept all | Reject all | Manage preferences",
    "Cookie settings: we and our partners store information on your device.",
    "By clicking Accept, you agree to the storing of cookies on your device.",
]
NAV = [
    "Home | About | Blog | Contact",
    "Home > Stories > Latest",
    "Menu  Search  Sign in  Subscribe",
    "Share this: Facebook Twitter Email Print",
    "Skip to main content",
    "Previous post | Next post",
]
FOOTER = ["© {year} {company}. All rights reserved.", "Terms of use · Privacy policy · {company}",
          "Copyright {year} {company} - Powered by WordPress"]
#: a small, made-up lexicon of insults (C4 used a list of several hundred "bad words" the same way)
INSULTS = ["nincompoop", "halfwit", "dimwit", "buffoon", "numbskull", "clown", "donkey", "muppet"]
#: lexicon words that also occur harmlessly (a filter on words alone drops these stories too)
BENIGN = ["A clown juggled three oranges at the fair, and everyone clapped.",
          "The old donkey carried the bags up the hill without a complaint.",
          "On Sunday they watched a muppet show and laughed until dinner."]
SPAM_WORDS = ["cheap", "best", "buy", "online", "discount", "free", "deal", "watches", "shoes", "casino", "bonus",
              "sale", "offer", "now", "click"]
ANIMALS = ["duck", "goat", "dog", "cat", "horse", "parrot", "rabbit", "turtle"]


@dataclass
class Doc:
    """One document of the generated crawl: its raw text and what the generator knows about it."""

    id: int
    text: str
    labels: frozenset
    lang: str = "en"
    origin: int | None = None           # for duplicates: the id of the document they copy
    pii: tuple = ()                      # (kind, value) pairs the generator put in
    boilerplate: tuple = ()              # the boilerplate lines the generator added
    kind: str = "story"                  # what the generator made (story, spam, word_salad, ...)

    def __repr__(self):
        labels = ",".join(sorted(self.labels)) or "clean"
        return f"Doc({self.id}, {self.kind}, [{labels}], {self.text[:60]!r}...)"


@dataclass
class Corpus:
    docs: list[Doc]
    eval_set: list[tuple[str, str]]      # (question, answer): the benchmark the model will be tested on
    seed: int

    def count(self, label: str | None = None) -> int:
        if label is None:
            return len(self.docs)
        if label == "clean":
            return sum(not d.labels for d in self.docs)
        return sum(label in d.labels for d in self.docs)

    def by_id(self) -> dict[int, Doc]:
        return {d.id: d for d in self.docs}

    def summary(self) -> dict[str, int]:
        return {"documents": len(self.docs), "clean": self.count("clean"), **{lab: self.count(lab) for lab in LABELS}}

    def __repr__(self):
        return f"Corpus(seed={self.seed}, " + ", ".join(f"{k}={v}" for k, v in self.summary().items()) + ")"


def _stories(seed: int, split: str, n: int) -> list[str]:
    from .zoo.corpus import Corpus as World
    from .zoo.formats import EOT

    it = World(seed).pretrain_docs(split, mix={"story": 1})
    return [next(it).replace(EOT, "").strip() for _ in range(n)]


def clean_stories(n: int = 200, split: str = "test", seed: int = 0) -> list[str]:
    """Clean held-out text (stories of the zoo's world) the corpus never contains: for evaluating a model."""
    if split not in ("train", "val", "test"):
        raise LabkitUsageError(f"split must be 'train', 'val' or 'test', not {split!r}")
    return _stories(seed, split, n)


def _fakers(seed: int):
    from faker import Faker

    fakes = {}
    for i, loc in enumerate(["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL"]):
        f = Faker(loc)
        f.seed_instance(seed * 100 + i)
        fakes[loc] = f
    return fakes


def _eval_set(fake, rng: random.Random, n: int) -> list[tuple[str, str]]:
    items, seen = [], set()
    while len(items) < n:
        name, kind = fake.name(), rng.randrange(3)
        if name in seen:
            continue
        seen.add(name)
        if kind == 0:
            q, a = f"What is the name of {name}'s {rng.choice(ANIMALS)}?", fake.first_name()
        elif kind == 1:
            q, a = f"In which city was {name} born according to the museum record?", fake.city()
        else:
            q, a = f"Which company did {name} found after leaving school in {fake.year()}?", fake.company()
        items.append((q, a))
    return items


def _pii(fake_us, fake_gb, fake_de, rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    kind = rng.choice(["EMAIL", "PHONE", "CARD", "IBAN", "IP", "EMAIL+PHONE"])
    found = []
    parts = []
    if "EMAIL" in kind:
        e = fake_us.email()
        found.append(("EMAIL", e))
        parts.append(rng.choice([f"Write to me at {e} if you know more.", f"Questions? Email {e} any time."]))
    if "PHONE" in kind:
        p = rng.choice([f"+44 20 7946 {rng.randrange(1000, 9999)}", f"({rng.randrange(201, 989)}) "
                        f"{rng.randrange(200, 999)}-{rng.randrange(1000, 9999)}",
                        f"+49 30 {rng.randrange(1000000, 9999999)}"])
        found.append(("PHONE", p))
        parts.append(rng.choice([f"Call me on {p} after six.", f"My number is {p}."]))
    if kind == "CARD":
        c = fake_us.credit_card_number(card_type=rng.choice(["visa16", "mastercard"]))
        c = " ".join(c[i:i + 4] for i in range(0, len(c), 4))
        found.append(("CARD", c))
        parts.append(f"I paid with my card {c} and never got the tickets.")
    if kind == "IBAN":
        i = (fake_de if rng.random() < 0.5 else fake_gb).iban()
        found.append(("IBAN", i))
        parts.append(f"Please send the money to IBAN {i} by Friday.")
    if kind == "IP":
        ip = fake_us.ipv4_public()
        found.append(("IP", ip))
        parts.append(f"The server at {ip} kept refusing my login.")
    return " ".join(parts), found


def _decoy(rng: random.Random) -> str:
    """Numbers that look like personal data and are not (a validator tells them apart)."""
    digits = [rng.randrange(10) for _ in range(15)]
    s = sum((d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 == 0 else d for i, d in enumerate(reversed(digits)))
    last = (s + 1) % 10  # deliberately NOT the Luhn check digit ((10 - s % 10) % 10)
    if (s + last) % 10 == 0:
        last = (last + 1) % 10
    num = "".join(map(str, digits + [last]))
    return rng.choice([f"Order reference {' '.join(num[i:i + 4] for i in range(0, 16, 4))} was shipped on time.",
                       f"Tracking code {num} shows the parcel in the depot."])


def _unicode_mess(text: str, rng: random.Random) -> str:
    out = []
    for w in text.split(" "):
        r = rng.random()
        if r < 0.08:
            w = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in w)  # fullwidth forms
        elif r < 0.14:
            w = w + "\u200b"  # zero-width space
        out.append(w)
    sep = rng.choice(["\u00a0", "  ", "\u2009"])
    return sep.join(out).replace("fi", "\ufb01")


def _html(text: str, rng: random.Random, title: str) -> str:
    body = text.replace("&", "&amp;").replace('"', "&quot;")
    return (f"<html><head><title>{title}</title><script>var t = 1;</script></head><body>"
            f"<div class=\"post\">\n<p>{body}</p></div></body></html>")


def _near_copy(text: str, rng: random.Random, fake) -> str:
    words = text.split(" ")
    n_edit = max(1, int(len(words) * rng.uniform(0.03, 0.08)))
    for _ in range(n_edit):
        i = rng.randrange(len(words))
        op = rng.random()
        if op < 0.5:
            words[i] = rng.choice(["really", "very", "quite", "then", "the", "a", "old", "small"])
        elif op < 0.8 and len(words) > 5:
            del words[i]
        else:
            words.insert(i, rng.choice(["suddenly", "happily", "slowly", "also"]))
    out = " ".join(words)
    if rng.random() < 0.5:
        out += " " + rng.choice(["Posted by " + fake.first_name() + ".", "(updated)", "Thanks for reading!"])
    return out


def _low_quality(rng: random.Random, fake, vocab: list[str]) -> tuple[str, str]:
    kind = rng.choice(["spam", "chars", "short", "table", "caps", "word_salad", "word_salad"])
    if kind == "spam":
        kw = rng.sample(SPAM_WORDS, 4)
        text = " ".join(rng.choice(kw) for _ in range(rng.randrange(40, 70)))
    elif kind == "chars":
        text = " ".join(rng.choice(["wow", "sooo", "omg", "yes", "lol", "best"]) + "!" * rng.randrange(3, 12)
                        for _ in range(rng.randrange(15, 30)))
    elif kind == "short":
        text = rng.choice(["Click here.", "Read more", "Page not found.", "Loading...", "404 error",
                           "Subscribe now to continue reading.", "Log in to see this page."])
    elif kind == "table":
        text = "\n".join(" | ".join(str(rng.randrange(0, 9999)) for _ in range(6)) for _ in range(8))
    elif kind == "caps":
        text = " ".join(w.upper() for w in fake.sentence(nb_words=12).split()) + " " + \
            " ".join(rng.choice(SPAM_WORDS).upper() + "!!!" for _ in range(20))
    else:  # word salad: real English words, as frequent as in real text, in no order (spun SEO text)
        words, weights = vocab
        text = ". ".join(" ".join(rng.choices(words, weights, k=rng.randrange(8, 14))).capitalize()
                         for _ in range(rng.randrange(4, 7))) + "."
    return kind, text


def _edit_question(q: str, rng: random.Random) -> str:
    """A leaked question lightly reworded (one word changed in the middle), as copies on the web often are."""
    w = q.split()
    i = rng.randrange(len(w) // 3, 2 * len(w) // 3)
    w[i] = {"the": "this", "of": "for", "in": "at", "was": "is", "did": "does"}.get(w[i], "that")
    return " ".join(w)


def _toxic(rng: random.Random, fake) -> str:
    a, b = rng.sample(INSULTS[:5], 2)
    name = fake.first_name()
    return rng.choice([
        f"Honestly {name}, you are a complete {a}. Only a {b} would post a review like that, and everyone on this "
        f"forum can see it. Go away and stop wasting our time, you {a}.",
        f"What a {a} this author is. I read the whole thing and it was written by a {b} for other {b}s. Nobody "
        f"should listen to a {a} like {name}.",
        f"Reply to {name}: you {a}, you absolute {b}. Learn to read before you comment again, {a}. Every "
        f"single post you write on this board is wrong, and we are all tired of it.",
    ])


def make_corpus(seed: int = 0, n_clean: int = 520, n_exact: int = 60, n_near: int = 70, n_foreign: int = 70,
                n_low: int = 90, n_toxic: int = 30, n_leak: int = 30, n_eval: int = 40) -> Corpus:
    """A crawl-like corpus whose every document carries the labels the generator knows (deterministic per seed).

    Clean documents are stories of the zoo's world; some arrive as HTML (``html``), with odd Unicode
    (``unicode``), with boilerplate lines (``boilerplate``), or with personal data (``pii``); these should be
    *fixed* and kept. Exact copies (``exact_dup``; some differ only in markup or spacing), edited copies
    (``near_dup``), other languages (``non_english``), low-quality pages (``low_quality``), insults
    (``toxic``) and pages quoting the evaluation set (``leak``) should be *dropped*. Of each group of copies, the
    first in corpus order counts as the original."""
    import wordfreq

    if n_clean < 50:
        raise LabkitUsageError(f"n_clean must be at least 50, not {n_clean}")
    rng = random.Random(seed)
    fakes = _fakers(seed)
    fus, fgb, fde = fakes["en_US"], fakes["en_GB"], fakes["de_DE"]
    freq = wordfreq.get_frequency_dict("en")
    from .zoo.reading import classroom_word  # the same filter as the zoo's reading passages

    words = [w for w in wordfreq.top_n_list("en", 3000) if w.isalpha() and classroom_word(w)]
    vocab = (words, [freq[w] for w in words])
    eval_set = _eval_set(fus, rng, n_eval)
    items: list[dict] = []

    stories = _stories(seed, "train", n_clean + n_leak)
    benign_at = set(rng.sample(range(n_clean), 10))
    near_miss_at = set(rng.sample(range(n_clean), 20)) - benign_at
    for i, s in enumerate(stories[:n_clean]):
        labels, pii, boiler = set(), [], []
        text = s
        if i in benign_at:
            text = text + " " + rng.choice(BENIGN)
        elif i in near_miss_at:  # shares the benchmark's phrasing, not its questions
            text = text + " " + rng.choice([f'"What is the name of your {rng.choice(ANIMALS)}?" asked a child.',
                                            "In which city was the old bridge built? Nobody knew.",
                                            "According to the museum record, the clock was a gift."])
        r = rng.random()
        if r < 0.12:
            extra, pii = _pii(fus, fgb, fde, rng)
            text = text + " " + extra
            labels.add("pii")
        elif r < 0.16:
            text = text + " " + _decoy(rng)
        if rng.random() < 0.10:
            text = _unicode_mess(text, rng)
            labels.add("unicode")
        if rng.random() < 0.22:
            head = rng.sample(NAV, rng.randrange(1, 3))
            tail = [rng.choice(COOKIE)] if rng.random() < 0.7 else []
            if rng.random() < 0.5:
                tail.append(rng.choice(FOOTER).format(year=rng.randrange(2015, 2026), company=fus.company()))
            boiler = [" ".join(ln.split()) for ln in head + tail]   # as they read once normalised
            text = "\n".join(head + [text] + tail)
            labels.add("boilerplate")
        if rng.random() < 0.15:
            text = _html(text, rng, fus.catch_phrase())
            labels.add("html")
        items.append(dict(text=text, labels=labels, pii=tuple(pii), boilerplate=tuple(boiler), kind="story",
                          plain=s, group=i))
    # copies of clean stories: exact (same text, maybe other markup or spacing) and near (small edits)
    for _ in range(n_exact):
        src = rng.randrange(n_clean)
        orig = items[src]
        text = orig["text"]
        how = rng.random()
        if how < 0.3 and "html" not in orig["labels"]:
            text = _html(text, rng, fus.catch_phrase())
        elif how < 0.6:
            text = "  " + text.replace(" ", "  ", 3) + "\n\n"
        labels = set(orig["labels"]) | ({"html"} if text.startswith("<html>") else set())
        items.append(dict(text=text, labels=labels, pii=orig["pii"], boilerplate=orig["boilerplate"],
                          kind="exact copy", plain=orig["plain"], group=src))
    for _ in range(n_near):
        src = rng.randrange(n_clean)
        orig = items[src]
        text = _near_copy(orig["plain"], rng, fus)
        pii = ()
        items.append(dict(text=text, labels=set(), pii=pii, boilerplate=(), kind="near copy",
                          plain=text, group=src))
    langs = list(_LOCALES)
    for k in range(n_foreign):
        lang = langs[k % len(langs)]
        f = fakes[_LOCALES[lang]]
        text = " ".join(f.sentence(nb_words=rng.randrange(8, 14)) for _ in range(rng.randrange(4, 7)))
        items.append(dict(text=text, labels={"non_english"}, lang=lang, kind=f"{lang} text"))
    for _ in range(n_low):
        kind, text = _low_quality(rng, fus, vocab)
        items.append(dict(text=text, labels={"low_quality"}, kind=kind))
    # pages that are nothing but boilerplate: low quality once the boilerplate is gone
    for _ in range(10):
        lines = rng.sample(NAV, 2) + [rng.choice(COOKIE)]
        items.append(dict(text="\n".join(lines), labels={"low_quality", "boilerplate"},
                          boilerplate=tuple(" ".join(ln.split()) for ln in lines),
                          kind="boilerplate only"))
    for _ in range(n_toxic):
        items.append(dict(text=_toxic(rng, fus), labels={"toxic"}, kind="insults"))
    for s in stories[n_clean:]:
        qa = rng.sample(eval_set, rng.randrange(1, 4))
        fmt = rng.choice(["Question: {q} Answer: {a}", "Q: {q}\nA: {a}", "{q} The answer is {a}."])
        quiz = "\n".join(fmt.format(q=_edit_question(q, rng) if rng.random() < 0.4 else q, a=a) for q, a in qa)
        text = rng.choice([f"{s}\n{quiz}", f"Quiz answers leaked from the test!\n{quiz}\n{s}"])
        items.append(dict(text=text, labels={"leak"}, kind="leaked quiz"))

    rng.shuffle(items)
    # the first of each group of copies (in corpus order) is the original; a later member is an exact duplicate
    # when its normalised text equals an earlier member's, else a near duplicate
    first: dict[int, int] = {}
    keys: dict[int, set] = {}
    docs = []
    for i, it in enumerate(items):
        labels = set(it["labels"]) - {"exact_dup", "near_dup"}
        group, origin = it.get("group"), None
        if group is not None:
            key = _exact_key(normalise(it["text"]))
            if group in first:
                origin = first[group]
                labels.add("exact_dup" if key in keys[group] else "near_dup")
                keys[group].add(key)
            else:
                first[group], keys[group] = i, {key}
        docs.append(Doc(i, it["text"], frozenset(labels), it.get("lang", "en"), origin, tuple(it.get("pii", ())),
                        tuple(it.get("boilerplate", ())), it["kind"]))
    return Corpus(docs, eval_set, seed)


# ------------------------------------------------------------------------------------------------ scoring
@dataclass
class StageReport:
    """What one stage did, scored against the generator's labels."""

    stage: str
    target: str                      # the label this stage is meant to catch
    entered: int
    dropped: int
    kept: int
    true_pos: int                    # dropped (or flagged) documents that carry the target label
    target_in: int                   # documents with the target label that entered the stage
    collateral: int                  # dropped documents with no reason to go (clean, or only to be fixed): good text lost
    other: int = 0                   # dropped documents without the target label that should go for another reason
    seconds: float = 0.0

    @property
    def precision(self) -> float:
        return self.true_pos / self.dropped if self.dropped else float("nan")

    @property
    def recall(self) -> float:
        return self.true_pos / self.target_in if self.target_in else float("nan")

    def row(self) -> dict:
        return {"stage": self.stage, "target": self.target, "in": self.entered, "dropped": self.dropped,
                "kept": self.kept, "precision": round(self.precision, 3), "recall": round(self.recall, 3),
                "other junk": self.other, "good lost": self.collateral}


def stage_report(stage: str, target: str, entered: Sequence[Doc], dropped_ids: Iterable[int],
                 seconds: float = 0.0) -> StageReport:
    """Score a stage that dropped (or flagged) ``dropped_ids`` out of ``entered`` against label ``target``."""
    dropped_ids = set(dropped_ids)
    ids = {d.id for d in entered}
    if not dropped_ids <= ids:
        raise LabkitUsageError(f"{stage}: {len(dropped_ids - ids)} dropped id(s) did not enter the stage")
    tp = sum(1 for d in entered if d.id in dropped_ids and target in d.labels)
    return StageReport(stage, target, len(ids), len(dropped_ids), len(ids) - len(dropped_ids), tp,
                       sum(1 for d in entered if target in d.labels),
                       sum(1 for d in entered if d.id in dropped_ids and not d.labels & set(DROP_LABELS)),
                       sum(1 for d in entered if d.id in dropped_ids and target not in d.labels
                           and d.labels & set(DROP_LABELS)), seconds)


def precision_recall(flagged: Iterable[int], docs: Sequence[Doc], target: str) -> tuple[float, float]:
    flagged = set(flagged)
    pos = {d.id for d in docs if target in d.labels}
    tp = len(flagged & pos)
    return (tp / len(flagged) if flagged else float("nan"), tp / len(pos) if pos else float("nan"))


# ------------------------------------------------------------------------------------------------ cleaning
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
_TAG = re.compile(r"<\s*(html|body|div|p|br|span|h\d|script|a)\b", re.I)


def normalise(text: str) -> str:
    """HTML to text (BeautifulSoup, scripts and styles removed), Unicode NFKC, zero-width characters removed,
    spaces collapsed within each line, empty lines dropped."""
    if _TAG.search(text) or "&amp;" in text or "&quot;" in text:
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(text, "html.parser")
        for t in soup(["script", "style", "head"]):
            t.decompose()
        text = soup.get_text("\n")
    text = unicodedata.normalize("NFKC", text)
    text = _ZERO_WIDTH.sub("", text)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(line for line in lines if line)


def _exact_key(text: str) -> str:
    return hashlib.sha1(" ".join(text.lower().split()).encode()).hexdigest()


def exact_dedup(texts: dict[int, str]) -> tuple[list[int], list[int]]:
    """Keep the first document of each exact text (a hash of the lower-cased, space-collapsed text): (kept, dropped)."""
    seen, kept, dropped = set(), [], []
    for i, t in texts.items():
        k = _exact_key(t)
        (dropped if k in seen else kept).append(i)
        seen.add(k)
    return kept, dropped


_BOILER_RULES = re.compile(r"cookie|javascript|all rights reserved|privacy policy|terms of use|powered by|"
                           r"skip to main content|sign in|subscribe|share this", re.I)


def boilerplate_lines(texts: dict[int, str], min_docs: int = 5) -> set[str]:
    """Lines that are boilerplate: repeated in ``min_docs`` or more documents (the repeated-line rule of
    C4/RefinedWeb-style filters), or matching C4-like line rules (cookies, javascript, copyright, menus)."""
    counts = Counter()
    for t in texts.values():
        counts.update(set(t.splitlines()))
    lines = {ln for ln, c in counts.items() if c >= min_docs}
    for t in texts.values():
        for ln in t.splitlines():
            if _BOILER_RULES.search(ln) and len(ln.split()) < 25:
                lines.add(ln)
            elif "|" in ln and len(ln.split()) < 12 and not re.search(r"\d", ln) and not ln.endswith((".", "!", "?")):
                lines.add(ln)  # a menu: short, separated by bars, no sentence
    return lines


def strip_lines(text: str, lines: set[str]) -> str:
    return "\n".join(ln for ln in text.splitlines() if ln not in lines)


# ------------------------------------------------------------------------------------------------ quality
STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with", "a", "was", "in", "he", "she", "it")


def quality_signals(text: str) -> dict[str, float]:
    """Gopher-style document statistics (Rae et al., 2021), adapted to short documents."""
    words = text.split()
    n = len(words) or 1
    alpha = [w for w in words if any(c.isalpha() for c in w)]
    lower = [w.strip(".,!?\"'").lower() for w in words]
    bigrams = Counter(zip(lower, lower[1:]))
    top_bigram_chars = (max(bigrams.values()) * 2 * sum(len(w) for w in lower) / n / max(1, sum(len(w) for w in lower))
                        if bigrams else 0.0)
    return {
        "words": len(words),
        "mean_word_length": sum(len(w) for w in alpha) / max(1, len(alpha)),
        "alpha_fraction": len(alpha) / n,
        "stop_words": sum(w in STOP_WORDS for w in lower),
        "symbol_ratio": (text.count("#") + text.count("...") + text.count("!")) / n,
        "upper_fraction": sum(c.isupper() for c in text) / max(1, sum(c.isalpha() for c in text)),
        "top_bigram_fraction": top_bigram_chars,
        "unique_word_fraction": len(set(lower)) / n,
    }


def quality_rules(text: str) -> bool:
    """The kit's Gopher-like rule set: True when the document looks like real prose (keep it)."""
    s = quality_signals(text)
    return (s["words"] >= 20 and 3 <= s["mean_word_length"] <= 10 and s["alpha_fraction"] >= 0.8
            and s["stop_words"] >= 2 and s["symbol_ratio"] < 0.1 and s["upper_fraction"] < 0.3
            and s["top_bigram_fraction"] < 0.2 and s["unique_word_fraction"] > 0.3)


def train_quality_classifier(docs: Sequence[Doc], texts: dict[int, str] | None = None, seed: int = 0):
    """A logistic regression on hashed word and character n-grams (sklearn), trained on documents labelled
    low quality (1) or not (0): the learned alternative to rules (as GPT-3's and FineWeb-Edu's filters are
    classifiers). Returns a function text -> probability of low quality."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_union

    vec = make_union(HashingVectorizer(n_features=2 ** 16, ngram_range=(1, 2), alternate_sign=False, norm="l2"),
                     HashingVectorizer(n_features=2 ** 16, analyzer="char_wb", ngram_range=(2, 4),
                                       alternate_sign=False, norm="l2"))
    xs = [(texts or {}).get(d.id, normalise(d.text)) for d in docs]
    ys = [int("low_quality" in d.labels) for d in docs]
    clf = LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced", random_state=seed)
    clf.fit(vec.transform(xs), ys)

    def prob(texts_: Sequence[str] | str):
        one = isinstance(texts_, str)
        p = clf.predict_proba(vec.transform([texts_] if one else list(texts_)))[:, 1]
        return float(p[0]) if one else p.tolist()

    return prob


@functools.lru_cache(maxsize=4)
def _prepared(seed: int):
    c = make_corpus(seed)
    docs = [d for d in c.docs if not d.labels & {"exact_dup", "near_dup", "non_english"}]
    texts = {d.id: normalise(d.text) for d in docs}
    lines = boilerplate_lines(texts)
    return docs, {i: strip_lines(t, lines) for i, t in texts.items()}


def score_quality_rules(keep: Callable[[str], bool], seed: int = 7, language_id: Callable | None = None
                        ) -> dict[str, float]:
    """How a rule set ``keep(text) -> bool`` does on a corpus generated with another ``seed``: on its documents that
    are not duplicates, normalised, boilerplate removed, and English (by the generator's labels, or, with
    ``language_id``, by that classifier, as in the lab's pipeline). Returns the share of low-quality pages it drops
    (word salad apart, which rules on surface statistics cannot see), of word salad, and of clean documents it loses."""
    docs, texts = _prepared(seed)
    if language_id is not None:
        docs = [d for d, (lang, _) in zip(docs, language_id([texts[d.id] for d in docs])) if lang == "en"]
    drop = {d.id for d in docs if not keep(texts[d.id])}
    low = [d for d in docs if "low_quality" in d.labels and d.kind != "word_salad"]
    salad = [d for d in docs if d.kind == "word_salad"]
    clean = [d for d in docs if not d.labels & set(DROP_LABELS)]
    return {"low_quality_dropped": sum(d.id in drop for d in low) / len(low),
            "word_salad_dropped": sum(d.id in drop for d in salad) / max(1, len(salad)),
            "clean_dropped": sum(d.id in drop for d in clean) / len(clean)}


def toxic_words(text: str, lexicon: Sequence[str] = INSULTS) -> list[str]:
    """Lexicon words in ``text`` (whole words, any case, plural s allowed): how C4's "bad words" filter works."""
    pat = re.compile(r"\b(" + "|".join(map(re.escape, lexicon)) + r")s?\b", re.I)
    return [m.group(1).lower() for m in pat.finditer(text)]


# ------------------------------------------------------------------------------------------------ language id
def _lang_samples(lang: str, n: int, rng: random.Random) -> list[str]:
    import wordfreq

    freq = wordfreq.get_frequency_dict(lang)
    words = wordfreq.top_n_list(lang, 3000)
    weights = [freq.get(w, 0.0) for w in words]
    out = []
    for _ in range(n):
        ws = rng.choices(words, weights, k=rng.randrange(8, 20))
        out.append(" ".join(ws).capitalize() + ".")
    return out


def train_language_id(langs: Sequence[str] = LANGS, per_lang: int = 300, seed: int = 0):
    """A character 1-3-gram naive Bayes classifier (sklearn ``MultinomialNB``) trained on text sampled from
    ``wordfreq``'s word frequencies (word salad in each language, no real sentences): fastText's lid.176 idea at
    toy scale. Returns a function texts -> list of (language, probability)."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.naive_bayes import MultinomialNB

    rng = random.Random(seed)
    xs, ys = [], []
    for lang in langs:
        s = _lang_samples(lang, per_lang, rng)
        xs += s
        ys += [lang] * len(s)
    vec = HashingVectorizer(n_features=2 ** 18, analyzer="char_wb", ngram_range=(1, 3), alternate_sign=False,
                            norm=None, lowercase=True)
    nb = MultinomialNB(alpha=0.1).fit(vec.transform(xs), ys)

    def identify(texts: Sequence[str] | str):
        one = isinstance(texts, str)
        p = nb.predict_proba(vec.transform([texts] if one else list(texts)))
        out = [(str(nb.classes_[row.argmax()]), float(row.max())) for row in p]
        return out[0] if one else out

    return identify


# ------------------------------------------------------------------------------------------------ minhash
PRIME = (1 << 61) - 1
MAX_HASH = (1 << 32) - 1


def shingles(text: str, k: int = 3) -> set[str]:
    """The set of word k-grams of the lower-cased text (punctuation removed)."""
    words = re.findall(r"[\w']+", text.lower())
    if len(words) < k:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + k]) for i in range(len(words) - k + 1)}


def shingle_hash(shingle: str) -> int:
    """A shingle's 32-bit hash (datasketch's default, ``sha1_hash32``)."""
    return int.from_bytes(hashlib.sha1(shingle.encode("utf-8")).digest()[:4], "little")


class Permutations:
    """``num_perm`` random hash functions h -> ((a*h + b) mod p) mod 2^32, drawn from ``seed`` exactly as datasketch
    draws its legacy permutations. ``perms(h)`` applies all of them to one 32-bit hash: an array of num_perm values."""

    def __init__(self, num_perm: int = 128, seed: int = 1):
        import numpy as np

        if num_perm < 1:
            raise LabkitUsageError(f"num_perm must be at least 1, not {num_perm}")
        gen = np.random.RandomState(seed)
        ab = np.array([(gen.randint(1, PRIME, dtype=np.uint64), gen.randint(0, PRIME, dtype=np.uint64))
                       for _ in range(num_perm)], dtype=np.uint64).T
        self.a, self.b, self.num_perm, self.seed = ab[0], ab[1], num_perm, seed

    def __call__(self, h: int):
        import numpy as np

        # numpy uint64 arithmetic wraps at 2^64 (as datasketch's does): the same values, bit for bit
        return np.bitwise_and((self.a * np.uint64(h) + self.b) % np.uint64(PRIME), np.uint64(MAX_HASH))

    def __repr__(self):
        return f"Permutations(num_perm={self.num_perm}, seed={self.seed})"


def minhash_signature(shingle_set: Iterable[str], perms: Permutations):
    """The kit's MinHash signature: for each of the hash functions, the smallest value over the shingles."""
    import numpy as np

    sig = np.full(perms.num_perm, MAX_HASH, dtype=np.uint64)
    for s in shingle_set:
        sig = np.minimum(sig, perms(shingle_hash(s)))
    return sig


def estimate_jaccard(sig_a, sig_b) -> float:
    import numpy as np

    return float(np.mean(np.asarray(sig_a) == np.asarray(sig_b)))


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def datasketch_minhash(shingle_set: Iterable[str], num_perm: int = 128, seed: int = 1):
    """The reference: ``datasketch.MinHash`` (legacy permutation scheme) updated with the same shingles."""
    from datasketch import MinHash

    m = MinHash(num_perm=num_perm, seed=seed, scheme="legacy")
    m.update_batch([s.encode("utf-8") for s in shingle_set])
    return m


def _random_shingle_sets(rng: random.Random, n_pairs: int):
    vocab = [f"w{i}" for i in range(60)]
    out = []
    for _ in range(n_pairs):
        base = {" ".join(rng.sample(vocab, 3)) for _ in range(rng.randrange(5, 40))}
        other = {s for s in base if rng.random() < rng.uniform(0.3, 1.0)} | \
                {" ".join(rng.sample(vocab, 3)) for _ in range(rng.randrange(0, 15))}
        out.append((base, other or {"x y z"}))
    return out


def agrees_with_datasketch(signature_fn: Callable, jaccard_fn: Callable | None = None, n_pairs: int = 12,
                           num_perm: int = 64, seed: int = 7, rng_seed: int = 11) -> bool:
    """Does ``signature_fn(shingles, perms)`` give datasketch's ``MinHash.hashvalues`` bit for bit, and
    ``jaccard_fn(sig_a, sig_b)`` datasketch's ``MinHash.jaccard``, on random shingle sets (and an empty one)?"""
    import numpy as np

    rng = random.Random(rng_seed)
    perms = Permutations(num_perm, seed)
    try:
        for a, b in _random_shingle_sets(rng, n_pairs):
            ma, mb = datasketch_minhash(a, num_perm, seed), datasketch_minhash(b, num_perm, seed)
            sa, sb = signature_fn(a, perms), signature_fn(b, perms)
            if not (np.array_equal(np.asarray(sa, dtype=np.uint64), ma.hashvalues)
                    and np.array_equal(np.asarray(sb, dtype=np.uint64), mb.hashvalues)):
                return False
            if jaccard_fn is not None and abs(float(jaccard_fn(sa, sb)) - ma.jaccard(mb)) > 1e-9:
                return False
        empty = signature_fn(set(), perms)
        return bool(np.array_equal(np.asarray(empty, dtype=np.uint64), datasketch_minhash(set(), num_perm, seed).hashvalues))
    except Exception:
        return False


@dataclass
class DedupResult:
    kept: list[int]
    dropped: list[int]
    matches: dict[int, tuple[int, float]]   # dropped id -> (the kept document it repeats, estimated Jaccard)
    candidates: int                         # pairs LSH proposed (before the signatures were compared)
    bands: int
    rows: int


def lsh_near_dedup(signatures: dict, threshold: float = 0.5, num_perm: int = 128, seed: int = 1,
                   similarity: Callable | None = None) -> DedupResult:
    """Near-duplicate removal with ``datasketch.MinHashLSH``: documents in corpus order, each queried against the
    index of those kept so far. LSH only proposes candidates (any band in common); a candidate counts when the
    signatures' estimated Jaccard (``similarity``, default ``estimate_jaccard``) reaches ``threshold``: then the
    document is dropped, else inserted."""
    import numpy as np
    from datasketch import MinHash, MinHashLSH

    similarity = similarity or estimate_jaccard
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept, dropped, matches, candidates = [], [], {}, 0
    for i, sig in signatures.items():
        m = MinHash(num_perm=num_perm, seed=seed, hashvalues=np.asarray(sig, dtype=np.uint64), scheme="legacy")
        hits = lsh.query(m)
        candidates += len(hits)
        best = max(((similarity(sig, signatures[h]), h) for h in hits), default=(0.0, None))
        if best[1] is not None and best[0] >= threshold:
            dropped.append(i)
            matches[i] = (best[1], float(best[0]))
        else:
            lsh.insert(i, m)
            kept.append(i)
    return DedupResult(kept, dropped, matches, candidates, lsh.b, lsh.r)


def lsh_probability(s: float, bands: int, rows: int) -> float:
    """The chance that two documents of Jaccard similarity ``s`` share at least one band: 1 - (1 - s^r)^b."""
    return 1 - (1 - s ** rows) ** bands


# ------------------------------------------------------------------------------------------------ PII
def _import_presidio():
    """Import presidio-analyzer's recognizers without its NER engines' torch and transformers.

    presidio imports its transformers NER engine eagerly, each inside ``try: ... except ImportError``; the pattern
    recognizers need neither library. Hiding the two (when not imported yet) for the length of the import makes it
    about 4x faster and ~340 MB smaller. The price: presidio's own transformers engine (and thinc's torch support)
    stay off in this process; labkit uses neither. torch and transformers import normally afterwards."""
    import sys

    if "presidio_analyzer.predefined_recognizers" in sys.modules:
        return sys.modules["presidio_analyzer.predefined_recognizers"]
    hidden = [m for m in ("transformers", "torch") if m not in sys.modules]
    for m in hidden:
        sys.modules[m] = None  # an import of it raises ImportError
    try:
        import presidio_analyzer.predefined_recognizers as recognizers
    finally:
        for m in hidden:
            if sys.modules.get(m, 0) is None:
                del sys.modules[m]
    return recognizers


def _email_recognizer():
    import tldextract

    EmailRecognizer = _import_presidio().EmailRecognizer

    offline = tldextract.TLDExtract(suffix_list_urls=())  # the bundled suffix list: no download

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str):
            return offline(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()


PRESIDIO_KINDS = {"EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CARD", "IBAN_CODE": "IBAN",
                  "IP_ADDRESS": "IP"}


def presidio_recognizers() -> list:
    """presidio's pattern recognizers, called directly (no spaCy model): email (with an offline domain check),
    phone (the phonenumbers library), credit card (Luhn), IBAN (mod 97), IP address."""
    R = _import_presidio()
    return [_email_recognizer(), R.PhoneRecognizer(supported_regions=("US", "GB", "DE")), R.CreditCardRecognizer(),
            R.IbanRecognizer(), R.IpRecognizer()]


@dataclass
class Span:
    kind: str
    start: int
    end: int
    text: str
    source: str


def find_pii(text: str, recognizers: list | None = None, min_score: float = 0.4, validators: bool = True) -> list[Span]:
    """Personal data in ``text``: presidio's recognizers (score >= ``min_score``) and labkit's own validated
    patterns (``labkit.security.find_pii``: Luhn, IBAN mod 97, IPv4 ranges), overlapping spans merged."""
    from . import security

    spans = []
    for rec in recognizers or []:
        for r in rec.analyze(text, entities=rec.supported_entities, nlp_artifacts=None):
            if r.score >= min_score and r.entity_type in PRESIDIO_KINDS:
                spans.append(Span(PRESIDIO_KINDS[r.entity_type], r.start, r.end, text[r.start:r.end], "presidio"))
    if validators:
        for m in security.find_pii(text, ["EMAIL", "IBAN", "CARD", "IP", "PHONE"]):
            spans.append(Span(m.kind, m.start, m.end, m.text, "labkit"))
    spans.sort(key=lambda s: (s.start, -(s.end - s.start)))
    merged: list[Span] = []
    for s in spans:
        if merged and s.start < merged[-1].end:
            if s.end > merged[-1].end:
                merged[-1] = Span(merged[-1].kind, merged[-1].start, s.end, text[merged[-1].start:s.end], "both")
            elif merged[-1].source != s.source:
                merged[-1].source = "both"
            continue
        merged.append(s)
    return merged


def mask_pii(text: str, spans: Sequence[Span]) -> str:
    """Replace each span by ``<KIND>`` with presidio-anonymizer's ``AnonymizerEngine``."""
    if not spans:
        return text
    _import_presidio()
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

    results = [RecognizerResult(s.kind, s.start, s.end, 1.0) for s in spans]
    ops = {s.kind: OperatorConfig("replace", {"new_value": f"<{s.kind}>"}) for s in spans}
    return AnonymizerEngine().anonymize(text, results, operators=ops).text


# ------------------------------------------------------------------------------------------------ contamination
def ngram_overlap(doc: str, question: str, n: int = 8) -> float:
    """The kit's contamination measure: the share of the question's word n-grams that occur in the document
    (lower-cased words and numbers only). A question shorter than n words counts as one n-gram: itself."""
    def grams(text):
        w = re.findall(r"[\w']+", text.lower())
        return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)} if len(w) >= n else ({tuple(w)} if w else set())

    q = grams(question)
    if not q:
        return 0.0
    d_words = re.findall(r"[\w']+", doc.lower())
    d = {tuple(d_words[i:i + len(next(iter(q)))]) for i in range(len(d_words))}
    return len(q & d) / len(q)


def agrees_with_overlap(fn: Callable, n_cases: int = 40, seed: int = 5) -> bool:
    """Does ``fn(doc, question, n)`` agree with ``ngram_overlap`` on random word sequences (that share some
    stretches) and on a few edge cases (case, punctuation, a question shorter than n)?"""
    rng = random.Random(seed)
    vocab = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
    cases = [("The cat sat on the mat.", "the CAT sat, on the mat", 3), ("a b c", "x y z", 2),
             ("one two three four", "two three", 5), ("one two three four", "five six", 5)]
    for _ in range(n_cases):
        q = [rng.choice(vocab) for _ in range(rng.randrange(3, 12))]
        d = [rng.choice(vocab) for _ in range(rng.randrange(0, 20))]
        if rng.random() < 0.6 and len(q) > 3:
            a = rng.randrange(len(q) - 2)
            d[rng.randrange(len(d) + 1) if d else 0:0] = q[a:a + rng.randrange(2, len(q) - a + 1)]
        cases.append((" ".join(d), " ".join(q), rng.randrange(2, 6)))
    try:
        return all(abs(float(fn(d, q, n)) - ngram_overlap(d, q, n)) < 1e-9 for d, q, n in cases)
    except Exception:
        return False


def contaminated(texts: dict[int, str], eval_set: Sequence[tuple[str, str]], overlap: Callable = ngram_overlap,
                 n: int = 8, threshold: float = 0.5) -> dict[int, float]:
    """Documents whose overlap with any evaluation question reaches ``threshold``: {id: the highest overlap}."""
    out = {}
    for i, t in texts.items():
        best = max(overlap(t, q, n) for q, _ in eval_set)
        if best >= threshold:
            out[i] = best
    return out


def shared_vocabulary(texts: Iterable[str], min_count: int = 2) -> set[str]:
    """Words seen ``min_count`` times or more in ``texts`` (``labkit.classic.ngram.words``): one vocabulary for
    every model of a comparison."""
    from .classic import ngram as G

    c = Counter(w for t in texts for w in G.words(t))
    return {w for w, k in c.items() if k >= min_count}


# ------------------------------------------------------------------------------------------------ the payoff
@dataclass
class LMComparison:
    """A trigram Kneser-Ney model trained on each corpus, scored on clean held-out text and on the benchmark."""

    name: str
    documents: int
    tokens: int
    vocab: int
    heldout_ppl: float                  # clean stories the corpus never contained
    benchmark_ppl: float                # the evaluation set's questions with their answers
    seconds: float

    def row(self) -> dict:
        return {"trained on": self.name, "documents": self.documents, "tokens": self.tokens, "vocabulary": self.vocab,
                "held-out perplexity": round(self.heldout_ppl, 2), "benchmark perplexity": round(self.benchmark_ppl, 2)}


def train_and_score(name: str, texts: Sequence[str], heldout: Sequence[str], eval_set: Sequence[tuple[str, str]],
                    vocab: set | None = None, order: int = 3, discount: float = 0.75) -> LMComparison:
    """Train ``labkit.classic.ngram``'s counts on ``texts`` and score interpolated Kneser-Ney perplexity on
    ``heldout`` and on the benchmark items ("question answer"). Perplexities are comparable only over the same
    vocabulary: pass ``vocab`` (every other word becomes ``<UNK>``, in training and in scoring) to compare models
    trained on different corpora; without it, words seen once become ``<UNK>``."""
    import time

    from .classic import ngram as G

    def tok(t):
        w = G.words(t)
        return [x if x in vocab else G.UNK for x in w] if vocab is not None else w

    t0 = time.perf_counter()
    seqs = [tok(t) for t in texts if t.strip()]
    counts = G.NgramCounts(seqs, order, cutoff=1 if vocab is not None else 2)

    def ppl(docs):
        grams = G.eval_ngrams([tok(t) for t in docs], counts)
        return G.perplexity_of(lambda w, h: G.kneser_ney_prob(counts, w, h, discount), grams)

    return LMComparison(name, len(seqs), sum(map(len, seqs)), counts.V, ppl(heldout),
                        ppl([f"{q} {a}" for q, a in eval_set]), time.perf_counter() - t0)
