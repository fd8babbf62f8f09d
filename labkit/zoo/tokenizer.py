"""The zoo tokenizer: byte-level BPE (4096 tokens) trained on the corpus with HF ``tokenizers``.

Digits are split one by one before BPE (as Llama and GPT-4-era tokenizers do for numbers), so ``347*86`` is
``3 4 7 * 8 6``: arithmetic and copying numbers stay regular for a tiny model. The special tokens and the chat
template of ``formats`` are saved with it, so ``tokenizer.apply_chat_template(messages)`` renders the zoo format.
"""
from __future__ import annotations

from pathlib import Path

from . import formats as F

VOCAB_SIZE = 4096


def train_tokenizer(texts, vocab_size: int = VOCAB_SIZE):
    """Train the BPE on an iterable of strings; returns a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=F.SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return wrap(tok)


def wrap(tok):
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=F.EOT, eos_token=F.EOT, unk_token=None, pad_token=F.PAD,
        additional_special_tokens=[t for t in F.SPECIAL_TOKENS if t not in (F.EOT, F.PAD)],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = F.CHAT_TEMPLATE
    fast.model_max_length = 512
    return fast


def save_tokenizer(tokenizer, folder: Path) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
