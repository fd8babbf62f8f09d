"""A character-level tokenizer for the arithmetic model: one token per digit, sign and letter.

Why one token per digit: a tokenizer learned on text can cut numbers into chunks that differ from number to
number (GPT-2's BPE merged digits as its corpus happened to; GPT-4's cl100k groups up to three digits from the
left), so a model must learn what every chunk is worth before it can add. With one token per digit every number
is written with the same ten symbols. (Llama's tokenizer and the zoo's BPE also split numbers into single digits.)
"""
from __future__ import annotations

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SUM_CHARS = list("0123456789+=,.: ") + list("ACDenrsw")  # stage 1 of tiny-reasoner (sums only)
CHARS = SUM_CHARS + ["-", "*"]
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['content'] }}{% if m['role'] == 'assistant' %}" + EOS
                 + "{% endif %}{% endfor %}")


def build(calc: bool = True):
    """A ``PreTrainedTokenizerFast``: ``<pad>``=0, ``<eos>``=1, ``<unk>``=2, then one id per character
    (``calc=False``: without ``-`` and ``*``, the vocabulary of stage 1, which stage 2 extends)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate([PAD, EOS, UNK] + (CHARS if calc else SUM_CHARS))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                  padding_side="left")
    tok.chat_template = CHAT_TEMPLATE
    return tok
