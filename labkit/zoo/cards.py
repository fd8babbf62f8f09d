"""Model cards (README.md next to the weights) from ``train.json`` (build) and ``eval.json`` (``labkit zoo eval``)."""
from __future__ import annotations

import json
from pathlib import Path


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _size(folder: Path) -> str:
    f = folder / "model.safetensors"
    return f"{f.stat().st_size / 1e6:.1f} MB" if f.is_file() else "-"


def _config(folder: Path) -> dict:
    return _load(folder / "config.json")


def _arch(cfg: dict) -> str:
    return (f"Llama (RoPE, RMSNorm, SwiGLU), {cfg.get('num_hidden_layers')} layers, hidden {cfg.get('hidden_size')}, "
            f"{cfg.get('num_attention_heads')} query heads / {cfg.get('num_key_value_heads')} key-value heads "
            f"(grouped-query attention), MLP {cfg.get('intermediate_size')}, vocabulary {cfg.get('vocab_size')}, "
            f"context {cfg.get('max_position_embeddings')}, tied embeddings, float32 safetensors")


def _train_lines(t: dict) -> list[str]:
    if not t:
        return ["(no training record: build with `labkit zoo build`)"]
    host = t.get("host", {})
    return [
        f"- steps: {t.get('steps'):,} of batch {t['batch'][0]} x {t['batch'][1]} tokens = {t.get('tokens'):,} tokens",
        f"- wall-clock: {t.get('seconds', 0) / 60:.1f} min on {host.get('threads', '?')} CPU thread(s) "
        f"(torch {host.get('torch', '?')}), shared with other jobs",
        f"- throughput: {t.get('tokens_per_s', 0):,.0f} tokens/s, model-FLOPs utilisation "
        f"{t.get('mfu_vs_170gflops', 0):.0%} of the measured 170 GFLOP/s fp32 matmul peak (6 x parameters x tokens)",
        f"- optimiser: AdamW (betas 0.9/0.95, weight decay 0.1), peak learning rate {t.get('lr')}, linear warm-up "
        f"then cosine to 10 %, gradient clipping 1.0, seed {t.get('seed')}",
        f"- data mix: " + _mix(t.get("mix", {})),
    ]


def _mix(mix: dict) -> str:
    return ", ".join(f"{k} ({_mix(v)})" if isinstance(v, dict) else f"{k} {v:.0%}" for k, v in mix.items())


def reading_lines(e: dict) -> list[str]:
    """The card's in-world vs out-of-world table (zoo v2's bars are on the out-of-world set)."""
    o, i, h = e.get("out_of_world"), e.get("reading_in_distribution"), e.get("handwritten")
    if not o:
        return ["(out-of-world figures: run `labkit zoo eval`)", ""]
    f = lambda d, k: f"{d[k]:.1%}" if d and k in d else "-"  # noqa: E731
    return [
        "## Out of world: reading a learner's own input (`labkit zoo eval`)", "",
        "The world's test split above comes from the same generator, names and templates as training, so it "
        "measures memory of the world as much as reading. These come from `labkit.zoo.reading`: passages built "
        "from faker/wordfreq pools. *Out-of-world* uses locales, relations, fact and question phrasings and words "
        "never used in training; *in-distribution* is the generator zoo v2 trains on (fresh items; a v1 model never saw it either); *hand-written* is "
        "`labkit/zoo/data/handwritten.json`, questions typed the way a learner would.", "",
        "| task | in-distribution | out-of-world | hand-written | bar (out-of-world) |", "|---|---|---|---|---|",
        f"| context-QA exact match (SQuAD normalisation) | {f(i, 'context_qa_em')} | **{f(o, 'context_qa_em')}** | {f(h, 'context_qa_em')} | >= 85 % |",
        f"| calculator: both operands copied into the call | {f(i, 'calc_operands_copied')} | **{f(o, 'calc_operands_copied')}** | {f(h, 'calc_operands_copied')} | >= 98 % |",
        f"| calculator: final answer right | {f(i, 'calc_answer_right')} | **{f(o, 'calc_answer_right')}** | {f(h, 'calc_answer_right')} | >= 95 % |",
        f"| tool-call format valid | {f(i, 'tool_format_valid')} | **{f(o, 'tool_format_valid')}** | - | >= 98 % |",
        f"| unknown entity answered as not found | {f(i, 'unknown_said_unknown')} | **{f(o, 'unknown_said_unknown')}** | {f(h, 'unknown_said_unknown')} | >= 90 % |",
        f"| follow-up question about the first turn | {f(i, 'followup_em')} | **{f(o, 'followup_em')}** | {f(h, 'followup_em')} | >= 80 % |",
        "", f"Context QA out of world by passage length (sentences): "
        + ", ".join(f"{k}: {v:.0%}" for k, v in o.get("context_qa_em_by_sentences", {}).items()), "",
    ]


FORMAT_NOTE = """Chat format (see `labkit/zoo/formats.py`, also the tokenizer's `chat_template`):

```
<|endoftext|><|user|> What is 347 times 86?<|end|>
<|assistant|><|call|>calculator(expression="347*86")<|end|>
<|tool|> 29842<|end|>
<|assistant|> The answer is 29842.<|end|>
```
Context QA: `<|user|> Context: <passage>\\nQuestion: <question><|end|>` -> the answer span copied from the passage.
Tools: `calculator(expression="...")`, `lookup(entity="...")` (the synthetic world's encyclopedia)."""


def write_cards(folder: Path) -> None:
    folder = Path(folder)
    base, chat = folder / "tiny-base", folder / "tiny-chat"
    if base.is_dir():
        t, e = _load(base / "train.json"), _load(base / "eval.json")
        lines = [
            "# tiny-base", "",
            "A tiny causal language model that labkit trains itself, offline, on a synthetic world "
            "(`labkit zoo build`). It exists so the labs can show generation, attention, sampling and fine-tuning "
            "on a laptop CPU; it knows nothing outside its little world.", "",
            f"- parameters: {t.get('parameters', 0):,} ({_size(base)})",
            f"- architecture: {_arch(_config(base))}",
            "- tokenizer: byte-level BPE, 4096 tokens, digits split one by one (`../tokenizer`)", "",
            "## Data", "",
            "Generated by `labkit.zoo.corpus` from seed 0: short stories about the world's people, encyclopedia "
            "entries (people: job, town, pet, favorite color, birth year, friend; towns: place, product, mayor, "
            "population), small arithmetic, context/question/answer texts and chats with tool-use traces. "
            "Every item is assigned to train / val / test by a hash of its key; held-out items are never trained on.",
            "", "## Training", "", *_train_lines(t), "", "## Evaluation (held-out)", "",
        ]
        if e:
            lines += [f"- validation perplexity: **{e['val_perplexity']:.2f}** (loss {e['val_loss']:.3f} over "
                      f"{e['val_tokens']:,} held-out tokens)", "", "Sampled stories (temperature 0.8, top-k 40):", ""]
            lines += [f"> {s.strip()}\n" for s in e.get("samples", [])]
        else:
            lines.append("(run `labkit zoo eval`)")
        lines += ["", "## Use", "", "```python", "import labkit", "lm = labkit.load('tiny-base')",
                  "```", "", "Limits: a toy. It writes the world's kind of sentences and nothing else; facts about "
                  "real things are beyond it.", ""]
        (base / "README.md").write_text("\n".join(lines))
    for chat in (folder / "tiny-chat", folder / "tiny-chat-v2"):
        if chat.is_dir():
            _chat_card(chat)
    _tokenizer_card(folder)


V2_INTRO = ("Zoo v2 (a preview, still training): a fresh tokenizer and model trained on the synthetic world *and* "
            "on the reading corpus of `labkit.zoo.reading` (passages from faker/wordfreq pools of 25 locales, 29 "
            "relations with several phrasings, distractor facts, tool traces with 1-7 digit operands, lookups of "
            "unknown people, two-turn chats), so that the answer can only come from the passage. Pre-trained, "
            "then fully fine-tuned (loss on the assistant's tokens), by `python -m labkit.zoo.build_v2`; the "
            "training checkpoints and resumes, so it can be continued in parts.")


V2_FROM_V1_INTRO = ("Zoo v2 (a preview: its out-of-world bars are not met yet): `tiny-chat` (v1: its 4k tokenizer and its "
                    "weights, which had already learned to copy answers out of the world's passages) fully fine-tuned "
                    "(loss on the assistant's tokens) on the world's chats *and* on the reading corpus of "
                    "`labkit.zoo.reading` (passages from faker/wordfreq pools of 25 locales, 29 relations with several "
                    "phrasings, distractor facts, tool traces with 1-7 digit operands, lookups of unknown people, "
                    "two-turn chats), so that the answer can only come from the passage. Trained by "
                    "`python -m labkit.zoo.build_v2 --stage chat --chat-from labkit/zoo/weights/tiny-chat`; the "
                    "training checkpoints and resumes, so it can be continued in parts.")


def _v2_intro(t: dict) -> str:
    init = str(t.get("init", ""))
    return V2_FROM_V1_INTRO if init.rstrip("/").endswith("weights/tiny-chat") else V2_INTRO


def _chat_card(chat: Path) -> None:
    if True:
        t, e = _load(chat / "train.json"), _load(chat / "eval.json")
        v2 = chat.name.endswith("-v2")
        lines = [
            f"# {chat.name}", "",
            _v2_intro(t) if v2 else
            "tiny-base fine-tuned (full fine-tuning, loss on the assistant's tokens only) on chats: context "
            "question answering, calculator and lookup tool use with the observation fed back, and simple "
            "instructions. Built by `labkit zoo build`.", "",
            f"- parameters: {t.get('parameters', 0):,} ({_size(chat)})",
            f"- architecture: {_arch(_config(chat))}", "",
            FORMAT_NOTE, "", "## Training", "", *_train_lines(t),
            f"- {t.get('examples', 0):,} training chats packed whole into rows (last round)",
            *([f"- pre-training before it (tiny-base v2, not shipped): {t['pretraining']['steps']:,} steps, "
               f"{t['pretraining']['tokens']:,} tokens, {t['pretraining']['seconds'] / 60:.1f} min at "
               f"{t['pretraining']['tokens_per_s']:,.0f} tokens/s, held-out perplexity "
               f"{t['pretraining']['val_perplexity']:.2f}; mix " + _mix(t['pretraining']['mix'])]
              if t.get("pretraining") else []),
            *[f"- earlier round {i + 1}: {r.get('steps', 0):,} steps, {r.get('tokens', 0):,} tokens, "
              f"{r.get('seconds', 0) / 60:.1f} min, peak learning rate {r.get('lr')}, chat stream `{r.get('stream') or 'chat'}`"
              for i, r in enumerate(t.get("previous_rounds", []))],
            f"- this round: started from `{t.get('init', 'tiny-base')}`, chat stream `{t.get('stream', 'chat')}`"
            + (" (recipe: `labkit.zoo.build_v2.RECIPES['full']`; continue it with `python -m labkit.zoo.build_v2 "
               "--stage chat --chat-from labkit/zoo/weights/tiny-chat-v2 --sft-seed N --out DIR`)" if v2 else ""),
            f"- all fine-tuning rounds together: "
            f"{(t.get('seconds', 0) + sum(r.get('seconds', 0) for r in t.get('previous_rounds', []))) / 60:.1f} min, "
            f"{t.get('tokens', 0) + sum(r.get('tokens', 0) for r in t.get('previous_rounds', [])):,} tokens "
            + ("" if v2 else "(recipe: `labkit.zoo.build.SHIPPED_CHAT_ROUNDS`)"), "",
            "## Evaluation (held-out test split, `labkit zoo eval`)", "",
        ]
        if e:
            lines += [
                "| task | score | bar |", "|---|---|---|",
                f"| context-QA exact match | **{e['context_qa_em']:.1%}** | >= 90 % |",
                f"| tool-call format valid (calculator + lookup questions) | **{e['tool_format_valid']:.1%}** | >= 95 % |",
                f"| multi-digit multiplication, calculator tool | **{e['calc_with_tool']:.1%}** | >= 90 % |",
                f"| multi-digit multiplication, no tool | {e['calc_no_tool']:.1%} | reported |",
                f"| lookup tool: answer contains the fact | {e['lookup_correct']:.1%} | reported |",
                f"| lookup tool: right entity in the call | {e['lookup_entity_correct']:.1%} | reported |", "",
                f"{e['n']} held-out items per task ({e.get('n_lookup', e['n'])} for lookup: all the world's held-out "
                "entity/attribute pairs), greedy decoding. The harness runs each tool call and feeds the "
                "observation back as a `tool` message (`labkit.zoo.evaluate.run_chat`).", "",
            ]
        else:
            lines.append("(run `labkit zoo eval`)")
        lines += reading_lines(e)
        lines += ["## Use", "", "```python", "import labkit", "from labkit.zoo.evaluate import run_chat",
                  f"lm = labkit.load('{chat.name}')",
                  "out = run_chat(lm.model, lm.tokenizer, [[{'role': 'user', 'content': 'What is 123 times 45?'}]])",
                  "print(out[0]['reply'])", "```", "",
                  "Limits: it only handles the kinds of requests it was trained on, in the same phrasing; "
                  "without the calculator its multiplication is a guess.", ""]
        (chat / "README.md").write_text("\n".join(lines))


def _tokenizer_card(folder: Path) -> None:
    tok = folder / "tokenizer"
    if tok.is_dir():
        (tok / "README.md").write_text(
            "# zoo tokenizer\n\nByte-level BPE with 4096 tokens, trained with HF `tokenizers` on the zoo corpus "
            "(`labkit.zoo.tokenizer`). Digits are split one by one before BPE. Special tokens: "
            "`<|endoftext|>` (bos/eos/document separator), `<|pad|>`, `<|system|>`, `<|user|>`, `<|assistant|>`, "
            "`<|tool|>`, `<|end|>`, `<|call|>`. The chat template (`chat_template.jinja`) renders the format of "
            "`labkit/zoo/formats.py`.\n\n```python\nimport labkit.models\ntok = labkit.models.load_tokenizer('tiny')\n"
            "```\n")
