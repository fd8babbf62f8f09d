"""Zoo v2 recipe: one tokenizer and two models trained on the old world *and* the reading corpus (``reading.py``).

    python -m labkit.zoo.build_v2 --out DIR [--stage tokenizer|base|chat|all] [--quick]

What changed from v1 (``build.py``), and why (see ``../shared/notes`` in the repo history and the model cards):
- the tokenizer is trained on the old world, the reading corpus and every Latin letter (``LETTER_INVENTORY``):
  names from unseen locales are no longer made of byte tokens the model never saw;
- the model is deeper and wider (6 layers of 256 instead of 4 of 192);
- pre-training and fine-tuning mix the old world (the labs use it) with passages whose answers can only be read,
  never remembered, tool traces with 1-7 digit operands, unknown-entity lookups and two-turn chats;
- every stage checkpoints (``train(checkpoint=...)``) and resumes: a run can be done in parts.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import time
from pathlib import Path

from . import formats as F
from .build import _log_to, _write_json
from .corpus import Corpus
from .reading import LETTER_INVENTORY, Reading

RECIPES = {
    "full": dict(size=dict(hidden_size=256, intermediate_size=640, num_hidden_layers=6, num_attention_heads=8,
                           num_key_value_heads=4, max_position_embeddings=512),
                 vocab=6144, seq_len=256, batch_size=16, pre_lr=2e-3, pre_minutes=30.0, pre_steps=100_000,
                 sft_lr=1e-3, sft_minutes=60.0, sft_steps=100_000, tokenizer_docs=15000),
    # a micro model for tests: trains in a minute or two
    "quick": dict(size=dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, max_position_embeddings=256),
                  vocab=1024, seq_len=128, batch_size=16, pre_lr=5e-3, pre_minutes=None, pre_steps=60,
                  sft_lr=3e-3, sft_minutes=None, sft_steps=200, tokenizer_docs=1500),
}
#: the draft model for speculative decoding (lab 14): same tokenizer as tiny-chat-v2, 2 layers of half the width
DRAFT_SIZE = dict(hidden_size=128, intermediate_size=320, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=512)
#: pre-training documents: old world (stories, encyclopedia, QA, chats) / reading passages / reading chats
PRE_MIX = {"world": 0.40, "reading_docs": 0.35, "reading_chats": 0.25}
#: fine-tuning chats: old world's chat mix / the reading chat mix (Reading.CHAT_MIX)
SFT_MIX = {"world": 0.35, "reading": 0.65}
#: the old world's chat mix used inside SFT_MIX (as tiny-chat v1's last rounds: mostly context QA)
WORLD_CHAT_MIX = {"cqa": 0.55, "calc": 0.10, "addsub": 0.04, "calc_notool": 0.03, "lookup": 0.18, "instruction": 0.10}


def tokenizer_texts(seed: int, n_docs: int):
    c = Corpus(seed)
    yield from c.tokenizer_text(n_docs)
    rd = Reading(seed).documents("tok")
    for _ in range(n_docs):
        yield next(rd)
    for m in Reading(seed).chat_examples(n_docs // 3, stream="tok-chat"):
        yield F.format_chat(m, add_generation_prompt=False)
    for _ in range(4):  # each Latin letter, alone and inside a word, a few times
        yield " ".join(LETTER_INVENTORY) + "\n" + " ".join(ch + "a" for ch in LETTER_INVENTORY)


def pretrain_stream(seed: int, split: str = "train"):
    import random

    r = random.Random(f"v2-pre:{seed}:{split}")
    world = Corpus(seed).pretrain_docs(split)
    reading = Reading(seed + (0 if split == "train" else 1000)).documents(f"pre-{split}")
    rd = Reading(seed + (0 if split == "train" else 1000))
    chats: list = []
    batch = 0
    kinds, weights = list(PRE_MIX), list(PRE_MIX.values())
    while True:
        k = r.choices(kinds, weights)[0]
        if k == "world":
            yield next(world)
        elif k == "reading_docs":
            yield next(reading)
        else:
            if not chats:
                batch += 1
                chats = rd.chat_examples(256, stream=f"pre-chat-{split}-{batch}")
            yield F.format_chat(chats.pop(), add_generation_prompt=False)


def sft_examples(seed: int, n: int, split: str = "train", stream: str = "v2-sft") -> list:
    import random

    r = random.Random(f"{stream}:{seed}:{split}")
    n_world = sum(r.random() < SFT_MIX["world"] for _ in range(n))
    world = Corpus(seed).chat_examples(split, n_world, mix=WORLD_CHAT_MIX, stream=stream)
    reading = Reading(seed + (0 if split == "train" else 1000)).chat_examples(n - n_world, stream=f"{stream}-{split}")
    out = world + reading
    r.shuffle(out)
    return out


def build_v2(out, *, quick: bool = False, seed: int = 0, stages=("tokenizer", "base", "chat"),
             threads: int | None = None, pre_minutes: float | None = None, sft_minutes: float | None = None,
             ckpt_dir=None, log_file=None, chat_from=None, sft_seed: int | None = None,
             draft_minutes: float | None = None, sft_lr: float | None = None, seq_len: int | None = None,
             max_examples: int | None = None, draft_layers: int | None = None, on_progress=None) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from .tokenizer import save_tokenizer, train_tokenizer
    from .train import evaluate_loss, model_config, new_model, pack_pretrain, pack_sft, train

    torch.set_num_threads(threads or int(os.environ.get("LABKIT_ZOO_THREADS", "2")))
    R = dict(RECIPES["quick" if quick else "full"])
    if pre_minutes is not None:
        R["pre_minutes"] = pre_minutes
    if sft_minutes is not None:
        R["sft_minutes"] = sft_minutes
    if sft_lr is not None:
        R["sft_lr"] = sft_lr
    if seq_len is not None:  # longer rows, fewer of them: the same tokens per step
        R["batch_size"] = max(1, R["batch_size"] * R["seq_len"] // seq_len)
        R["seq_len"] = seq_len
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = Path(ckpt_dir or out / ".checkpoints")
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    log = _log_to(Path(log_file) if log_file else None)
    host = {"machine": platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__}
    result: dict = {"recipe": "v2-quick" if quick else "v2", "seed": seed}
    tok_dir = out / "tokenizer"
    if "tokenizer" in stages:
        t0 = time.perf_counter()
        tok = train_tokenizer(tokenizer_texts(seed, R["tokenizer_docs"]), vocab_size=R["vocab"])
        save_tokenizer(tok, tok_dir)
        log(f"tokenizer: {len(tok)} tokens in {time.perf_counter() - t0:.0f}s")
        _write_json(tok_dir / "build.json", {"vocab_size": len(tok), "docs": R["tokenizer_docs"], "seed": seed,
                                             "recipe": result["recipe"], "letters": len(LETTER_INVENTORY)})
    tok = PreTrainedTokenizerFast.from_pretrained(str(Path(chat_from) if chat_from and "tokenizer" not in stages
                                                      else tok_dir))
    seq, bs = R["seq_len"], R["batch_size"]
    tokps_guess = 3500 if not quick else 20000

    base_dir = out / "tiny-base"
    if "base" in stages:
        cfg = model_config("micro", tok, **R["size"])
        model = new_model(cfg, seed)
        n_params = sum(p.numel() for p in model.parameters())
        budget = R["pre_minutes"] and R["pre_minutes"] * 60
        steps = R["pre_steps"] if not budget else int(budget * tokps_guess * 1.6 / (bs * seq))
        log(f"tiny-base v2: {n_params:,} parameters; up to {steps} steps")
        t0 = time.perf_counter()
        data = pack_pretrain(tok, pretrain_stream(seed), steps * bs * seq, seq)
        val = pack_pretrain(tok, pretrain_stream(seed, "val"), 60_000 if not quick else 8000, seq)
        log(f"pre-training data: {data.numel():,} tokens in {time.perf_counter() - t0:.0f}s")
        stats = train(model, data, steps=steps, batch_size=bs, lr=R["pre_lr"], warmup=min(200, steps // 10),
                      seed=seed, val=(val, None), eval_every=max(1, min(500, steps // 4)), log=log, on_progress=on_progress,
                      log_every=max(1, min(100, steps // 20)), time_budget=budget,
                      checkpoint=str(ckpt_dir / "base.pt"))
        vl = evaluate_loss(model, val)
        log(f"tiny-base v2: val loss {vl:.3f} ppl {math.exp(vl):.2f}; {stats.tokens_per_s:,.0f} tok/s, "
            f"MFU {stats.mfu():.0%}, {stats.seconds / 60:.1f} min")
        result["tiny-base"] = _save(model, tok, base_dir, stats, vl, n_params, result["recipe"], host,
                                    lr=R["pre_lr"], batch=[bs, seq], seed=seed, val_perplexity=math.exp(vl),
                                    mix=PRE_MIX)
        del model

    chat_dir = out / "tiny-chat"
    if "chat" in stages:
        # chat_from: continue fine-tuning a chat model (e.g. the shipped tiny-chat-v2) on a fresh stream of chats
        init = Path(chat_from) if chat_from else base_dir
        model = AutoModelForCausalLM.from_pretrained(str(init), dtype=torch.float32)
        n_params = sum(p.numel() for p in model.parameters())
        budget = R["sft_minutes"] and R["sft_minutes"] * 60
        # a time budget sets an upper bound on the steps from the model's size (45 % MFU of the measured 170
        # GFLOP/s), with headroom: the clock, not the step count, ends the run
        guess = tokps_guess if quick else 0.45 * 170e9 / (6 * n_params)
        steps = R["sft_steps"] if not budget else int(budget * guess * 1.6 / (bs * seq))
        t0 = time.perf_counter()
        n_examples = int(steps * bs * (seq / 110)) + 100
        if max_examples:  # generating and packing costs about 1.6 ms per chat: past this, epochs repeat
            n_examples = min(n_examples, max_examples)
        stream = "v2-sft" if sft_seed is None else f"v2-sft-{sft_seed}"
        ids, lab = pack_sft(tok, sft_examples(seed, n_examples, stream=stream), seq)
        val_ids, val_lab = pack_sft(tok, sft_examples(seed, 400 if not quick else 100, "val"), seq)
        log(f"fine-tuning data: {n_examples} chats -> {ids.shape[0]} rows in {time.perf_counter() - t0:.0f}s; "
            f"up to {steps} steps")
        stats = train(model, ids, lab, steps=steps, batch_size=bs, lr=R["sft_lr"], warmup=min(100, steps // 10),
                      seed=seed, val=(val_ids, val_lab), eval_every=max(1, min(500, steps // 4)), log=log, on_progress=on_progress,
                      log_every=max(1, min(100, steps // 20)), time_budget=budget,
                      checkpoint=str(ckpt_dir / f"chat-{stream}.pt"))
        vl = evaluate_loss(model, val_ids, val_lab)
        log(f"tiny-chat v2: val loss (assistant tokens) {vl:.3f}; {stats.tokens_per_s:,.0f} tok/s, "
            f"{stats.seconds / 60:.1f} min")
        result["tiny-chat"] = _save(model, tok, chat_dir, stats, vl, n_params, result["recipe"], host,
                                    init=str(chat_from or "tiny-base"), stream=stream, lr=R["sft_lr"],
                                    batch=[bs, seq], seed=seed, examples=n_examples,
                                    mix={"sft": SFT_MIX, "world": WORLD_CHAT_MIX, "reading": Reading.CHAT_MIX})
    if "draft" in stages:
        # a draft for speculative decoding: trained from scratch on the same fine-tuning chats (assistant
        # tokens), sharing tiny-chat-v2's tokenizer so that its proposals can be checked by the target
        if draft_layers:
            # the target's embeddings (tied with its output head) and first ``draft_layers`` blocks: a draft
            # that starts out agreeing with the target on easy tokens, then is fine-tuned on the same chats
            model = AutoModelForCausalLM.from_pretrained(str(chat_from), dtype=torch.float32)
            model.model.layers = model.model.layers[:draft_layers]
            model.config.num_hidden_layers = draft_layers
            if getattr(model.config, "layer_types", None):
                model.config.layer_types = model.config.layer_types[:draft_layers]
            init_desc = f"the first {draft_layers} of the target's layers ({chat_from})"
        else:
            cfg = model_config("micro", tok, **(R["size"] if quick else DRAFT_SIZE))
            model = new_model(cfg, seed + 1)
            init_desc = "scratch"
        n_params = sum(p.numel() for p in model.parameters())
        budget = (draft_minutes or 12.0) * 60 if not quick else None
        steps = 60 if quick else int(budget * 14000 * 1.4 / (bs * seq))
        stream = "v2-draft"
        n_examples = int(steps * bs * (seq / 110)) + 100
        if max_examples:
            n_examples = min(n_examples, max_examples)
        ids, lab = pack_sft(tok, sft_examples(seed, n_examples, stream=stream), seq)
        val_ids, val_lab = pack_sft(tok, sft_examples(seed, 400 if not quick else 100, "val"), seq)
        log(f"draft: {n_params:,} parameters; {ids.shape[0]} rows; up to {steps} steps")
        draft_lr = 1e-3 if draft_layers else 3e-3
        stats = train(model, ids, lab, steps=steps, batch_size=bs, lr=draft_lr, warmup=min(100, steps // 10), seed=seed,
                      val=(val_ids, val_lab), eval_every=max(1, min(500, steps // 4)), log=log, on_progress=on_progress,
                      log_every=max(1, min(100, steps // 20)), time_budget=budget,
                      checkpoint=str(ckpt_dir / "draft.pt"))
        vl = evaluate_loss(model, val_ids, val_lab)
        log(f"draft: val loss (assistant tokens) {vl:.3f}; {stats.tokens_per_s:,.0f} tok/s, {stats.seconds / 60:.1f} min")
        result["tiny-draft"] = _save(model, tok, out / "tiny-draft", stats, vl, n_params, result["recipe"], host,
                                     init=init_desc, stream=stream, lr=draft_lr, batch=[bs, seq], seed=seed,
                                     examples=n_examples, target="tiny-chat-v2")
    return result


def _save(model, tok, folder: Path, stats, val_loss: float, n_params: int, recipe: str, host: dict, **extra) -> dict:
    """Weights, tokenizer and ``train.json`` (what the model card is written from), written beside the folder and
    moved into place at the end (``labkit.atomic.replace_folder``): an interrupted save never leaves a half-written
    model where ``labkit.models.load`` would read it."""
    from ..atomic import replace_folder

    info = {"recipe": recipe, "parameters": n_params, "steps": stats.steps, "tokens": stats.tokens,
            "seconds": stats.seconds, "tokens_per_s": stats.tokens_per_s, "mfu_vs_170gflops": stats.mfu(),
            "val_loss": val_loss, **extra, "losses": stats.losses, "evals": stats.evals, "host": host}

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        _write_json(tmp / "train.json", info)

    replace_folder(folder, write)
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m labkit.zoo.build_v2")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--stage", choices=["all", "tokenizer", "base", "chat", "draft"], default="all")
    p.add_argument("--draft-minutes", type=float, default=None, help="--stage draft: training budget (default 12)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--pre-minutes", type=float, default=None)
    p.add_argument("--sft-minutes", type=float, default=None)
    p.add_argument("--log", type=Path, default=None)
    p.add_argument("--chat-from", type=Path, default=None,
                   help="--stage chat: continue from this chat model folder (e.g. labkit/zoo/weights/tiny-chat-v2)")
    p.add_argument("--sft-seed", type=int, default=None, help="a fresh stream of fine-tuning chats")
    p.add_argument("--sft-lr", type=float, default=None, help="--stage chat: peak learning rate")
    p.add_argument("--seq-len", type=int, default=None, help="row length (the batch shrinks to keep tokens/step)")
    p.add_argument("--draft-layers", type=int, default=None,
                   help="--stage draft: start from the first N layers of --chat-from instead of from scratch")
    p.add_argument("--max-examples", type=int, default=None, help="--stage chat: at most this many chats")
    a = p.parse_args(argv)
    stages = ("tokenizer", "base", "chat") if a.stage == "all" else (a.stage,)
    build_v2(a.out, quick=a.quick, seed=a.seed, stages=stages, threads=a.threads, pre_minutes=a.pre_minutes,
             sft_minutes=a.sft_minutes, log_file=a.log, chat_from=a.chat_from, sft_seed=a.sft_seed,
             draft_minutes=a.draft_minutes, sft_lr=a.sft_lr, seq_len=a.seq_len, max_examples=a.max_examples,
             draft_layers=a.draft_layers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
