"""A tiny randomly initialised Llama with the zoo tokenizer: for tests, benchmarks and labs that start from scratch.

The zoo tokenizer is used when it is built (``labkit/zoo/weights/tokenizer``); otherwise the same recipe
(``labkit.zoo.tokenizer.train_tokenizer``) is run once on a slice of the zoo corpus (about a second) and cached
under ``$LABKIT_HOME/toy-tokenizer``.
"""
from __future__ import annotations

from pathlib import Path

from .runs import home


def tokenizer():
    from transformers import PreTrainedTokenizerFast

    from .. import models

    try:
        return models.load_tokenizer("tiny")
    except Exception:  # noqa: BLE001 - the zoo is not built yet
        pass
    folder = home() / "toy-tokenizer"
    if (folder / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(folder))
    from ..zoo.corpus import Corpus
    from ..zoo.tokenizer import save_tokenizer, train_tokenizer

    c = Corpus(0)
    docs = c.pretrain_docs("train")
    tok = train_tokenizer([c.world.text()] + [next(docs) for _ in range(3000)])
    tmp = folder.with_name(folder.name + ".partial")
    save_tokenizer(tok, tmp)
    if not folder.exists():
        tmp.rename(folder)
    return PreTrainedTokenizerFast.from_pretrained(str(folder))


def model(size: str = "micro", seed: int = 0, tok=None, **overrides):
    """(model, tokenizer): a fresh LlamaForCausalLM of a zoo size (``micro``, ``tiny``) or custom overrides."""
    from ..zoo.train import model_config, new_model

    tok = tok or tokenizer()
    return new_model(model_config(size, tok, **overrides), seed=seed), tok


def model_folder(folder, size: str = "micro", seed: int = 0) -> Path:
    """Save a toy model + tokenizer into ``folder`` (a transformers folder ``labkit.models.load`` reads)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        m, tok = model(size, seed)
        m.save_pretrained(str(folder))
        tok.save_pretrained(str(folder))
    return folder


def zoo_or_toy(name: str | list = "tiny-chat", size: str = "tiny", seed: int = 0):
    """``(model, tokenizer, name)``: the first zoo model of ``name`` (a name or a list of names, best first)
    whose weights are built, else a random toy model of the same architecture (name ``None``, with a printed
    note) so that a lab still runs end to end."""
    from .. import models

    names = [name] if isinstance(name, str) else list(name)
    for n in names:
        try:
            lm = models.load(n)
        except Exception:  # noqa: BLE001 - not built on this machine
            continue
        if n != names[0]:
            print(f"note: {names[0]} is not built here; using {n} instead (build the zoo: `labkit zoo build`).")
        return lm.model, lm.tokenizer, n
    print(f"note: {', '.join(names)} not available; using a randomly initialised model of the same architecture, "
          f"so the numbers below will not mean much. Build the zoo with `labkit zoo build`.")
    m, tok = model(size, seed)
    return m, tok, None
