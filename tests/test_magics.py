"""The magics through a real IPython shell."""
from __future__ import annotations

import subprocess
import sys

import pytest
from IPython.core.error import UsageError


def test_load_ext_registers_and_stays_light():
    code = ("import sys, time; from IPython.testing.globalipapp import start_ipython; ip = start_ipython();"
            "ip.run_line_magic('load_ext', 'labkit');"
            "assert 'tokenize' in ip.magics_manager.magics['cell'];"
            "assert 'labkit' in ip.magics_manager.magics['line'];"
            "heavy = [m for m in ('torch', 'transformers', 'langchain', 'faiss') if m in sys.modules];"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout


def test_tokenize_magic_returns_result_and_out(ip):
    res = ip.run_cell_magic("tokenize", "--out toks", "Hello, world!")
    assert res.n_tokens == 4
    assert ip.user_ns["toks"] is res


def test_tokenize_magic_named_and_compare(ip):
    res = ip.run_cell_magic("tokenize", "bytes", "abc")
    assert res.n_tokens == 3
    cmp = ip.run_cell_magic("tokenize", "--compare cl100k,chars", "abc def")
    assert [r.tokenizer for r in cmp.results] == ["cl100k", "chars"]


def test_tokenize_magic_train(ip):
    res = ip.run_cell_magic("tokenize", "--train bpe --vocab 280 --name magic-bpe", "low lower lowest " * 50)
    assert res.name == "magic-bpe" and res.merges
    again = ip.run_cell_magic("tokenize", "magic-bpe", "lowest")
    assert again.n_tokens < 6


def test_train_from_corpus_file(ip, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(("banana bandana " * 100).encode() + b"\xff")
    # with --corpus there is no cell text: the line form %tokenize works
    res = ip.run_line_magic("tokenize", f"--train unigram --vocab 40 --corpus {corpus} --name corp")
    assert res.name == "corp"
    with pytest.raises(UsageError, match="cannot read"):
        ip.run_line_magic("tokenize", f"--train bpe --corpus {tmp_path / 'missing.txt'}")


@pytest.mark.parametrize("line, body, needle", [
    ("nope", "text", "unknown tokenizer"),
    ("", "   \n ", "empty"),
    ("--compare", "x", "expected one argument"),
    ("--window 0", "x", "window"),
    ("--train bpe --vocab 3", "x", "--vocab"),
    ("--bogus", "x", "unrecognized arguments"),
    ("cl100k --compare a,b", "x", "not both"),
    ("--out 1bad", "x", "variable name"),
    ('"unbalanced', "x", "quotes"),
])
def test_bad_input_is_a_usage_error(ip, line, body, needle):
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("tokenize", line, body)
    assert needle in str(err.value)


def test_help_prints_usage(ip, capsys):
    assert ip.run_line_magic("tokenize", "--help") is None
    out = capsys.readouterr().out
    assert "usage: %%tokenize" in out and "--compare" in out and "examples" in out


def test_empty_cell_message_without_traceback(ip):
    with pytest.raises(UsageError):
        ip.run_line_magic("tokenize", "")


def test_run_cell_errors_do_not_kill_the_shell(ip):
    result = ip.run_cell("%%tokenize nope\nhello")
    assert not result.success  # a UsageError is shown, the shell lives on
    ok = ip.run_cell("%%tokenize\nhello")
    assert ok.success and ok.result.n_tokens == 1  # IPython's trailing newline is not tokenized


def test_labkit_line_magic_lists_magics_models_settings(ip):
    info = ip.run_line_magic("labkit", "")
    text = repr(info)
    assert "%%tokenize" in text and "tiny-chat" in text and "minilm" in text and "threads" in text


def test_cpu_limit_sets_threads_on_load_ext():
    code = ("import torch; from IPython.testing.globalipapp import start_ipython; ip = start_ipython();"
            "ip.run_line_magic('load_ext', 'labkit'); print('THREADS', torch.get_num_threads())")
    env = {"CPU_LIMIT": "1.0", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "THREADS 1" in out.stdout


def test_tokenize_magic_text_that_is_not_valid_unicode(ip):
    res = ip.run_cell_magic("tokenize", "", "bad \ud800 text")
    assert "\ud800" not in res.text and any("not valid Unicode" in n for n in res.notes)
    res = ip.run_cell_magic("tokenize", "--compare cl100k,bytes", "escaped \udcff byte")
    assert all(r.notes for r in res.results)
