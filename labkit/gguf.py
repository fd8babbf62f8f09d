"""Export a zoo model (or a fine-tuned run) to GGUF, the file llama.cpp runs; and compare the two runtimes.

    export_gguf("tiny-chat", "tiny-chat-q8_0.gguf", qtype="q8_0")      # labkit export gguf tiny-chat OUT --type q8_0
    parity("tiny-chat", "tiny-chat-q8_0.gguf", "The cat sat")            # same token ids? logits how close?

The file is written with ``gguf.GGUFWriter`` (the gguf-py package llama.cpp maintains) rather than llama.cpp's
``convert_hf_to_gguf.py``: that converter refuses a BPE tokenizer whose pre-tokenizer hash it does not know (the
zoo's own) and needs its vendored gguf-py. What is hand-written here is only the mapping, which is small: the
hyper-parameters, the tensor names, the rotary permutation of q/k, and the tokenizer. Quantization (Q8_0, Q4_0)
is gguf-py's own (``gguf.quants.quantize``), the same block formats llama.cpp reads.

Tokenization must match too, and a wrong pre-tokenizer fails silently (the logits still match, the ids do not):
the zoo's tokenizer splits every digit on its own, then applies GPT-2's byte-level regex; llama.cpp's ``refact``
pre-tokenizer is exactly that (``\\p{N}`` then the GPT-2 expression). ``parity`` tests both ids and logits.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import LabkitError, LabkitUsageError

QTYPES = ("f32", "f16", "q8_0", "q4_0")
# llama.cpp's names for the zoo's pre-tokenizers, by the shape of the HF tokenizer's pre_tokenizer
_PRE_DIGITS_THEN_GPT2 = "refact"
_PRE_GPT2 = "gpt-2"


def _pre_tokenizer_name(tok_json: dict) -> str:
    pre = tok_json.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    types = [p.get("type") for p in parts]
    if types == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex", True):
        return _PRE_DIGITS_THEN_GPT2
    if types == ["ByteLevel"] and parts[0].get("use_regex", True):
        return _PRE_GPT2
    raise LabkitUsageError(f"no llama.cpp pre-tokenizer is known to match this tokenizer's ({types}); "
                           "GGUF export supports the zoo's byte-level BPE tokenizers")


def _permute(w, n_head: int):
    """HF's q/k rows (rotate-half layout) into llama.cpp's interleaved rotary layout (as convert_hf_to_gguf.py)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensor_type(qtype: str, name: str, arr):
    """The GGML type a tensor is stored in: 1-D tensors (norms) stay F32, as llama.cpp's converter keeps them;
    a matrix whose rows do not split into the quant's blocks of 32 falls back to F16."""
    import gguf

    if arr.ndim < 2 or qtype == "f32":
        return gguf.GGMLQuantizationType.F32
    if qtype == "f16":
        return gguf.GGMLQuantizationType.F16
    q = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}[qtype]
    block = gguf.GGML_QUANT_SIZES[q][0]
    return q if arr.shape[-1] % block == 0 else gguf.GGMLQuantizationType.F16


@dataclass
class Exported:
    path: Path
    qtype: str
    bytes: int
    tensors: int
    types: dict  # GGML type name -> number of tensors stored in it

    def __repr__(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.types.items()))
        return f"Exported({str(self.path)!r}, {self.qtype}, {self.bytes / 1024**2:.2f} MiB, {self.tensors} tensors: {kinds})"


def export_gguf(model="tiny-chat", out: str | os.PathLike | None = None, qtype: str = "f32") -> Exported:
    """Write ``model`` (a zoo name, a run name, a folder, or a LoadedModel: anything ``labkit.load`` takes) to a
    GGUF file of type ``qtype`` (f32, f16, q8_0, q4_0), with its tokenizer and chat template."""
    import gguf
    import numpy as np

    from . import models

    qtype = str(qtype).lower()
    if qtype not in QTYPES:
        raise LabkitUsageError(f"`qtype` {qtype!r}: choose one of {', '.join(QTYPES)}")
    lm = models.resolve(model, use="GGUF export")
    if lm.kind != "causal-lm":
        raise LabkitUsageError(f"{lm.name!r} is a {lm.kind}: GGUF export takes a causal LM (tiny-base, tiny-chat, ...)")
    cfg = lm.model.config
    if getattr(cfg, "model_type", "") != "llama":
        raise LabkitUsageError(f"GGUF export knows the Llama architecture; {lm.name!r} is {cfg.model_type!r}")
    if lm.path is None or not (Path(lm.path) / "tokenizer.json").is_file():
        raise LabkitUsageError(f"{lm.name!r} has no saved folder with tokenizer.json: save it first (`%%finetune --out NAME`)")
    folder = Path(lm.path)
    out = Path(out) if out is not None else Path(f"{Path(str(lm.name)).name}-{qtype}.gguf")
    out.parent.mkdir(parents=True, exist_ok=True)
    tok_json = json.loads((folder / "tokenizer.json").read_text())
    pre = _pre_tokenizer_name(tok_json)

    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    rope = getattr(cfg, "rope_parameters", None) or {}
    theta = float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))
    if rope.get("rope_type", "default") not in ("default", None):
        raise LabkitUsageError(f"rope scaling {rope.get('rope_type')!r} is not exported; export the unscaled model")

    tmp = out.with_name(out.name + ".part")
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name(Path(str(lm.name)).name)
    w.add_context_length(int(cfg.max_position_embeddings))
    w.add_embedding_length(int(cfg.hidden_size))
    w.add_block_count(int(cfg.num_hidden_layers))
    w.add_feed_forward_length(int(cfg.intermediate_size))
    w.add_head_count(int(n_head))
    w.add_head_count_kv(int(n_kv))
    w.add_key_length(int(head_dim))
    w.add_value_length(int(head_dim))
    w.add_rope_dimension_count(int(head_dim))
    w.add_rope_freq_base(theta)
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    w.add_vocab_size(int(cfg.vocab_size))
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[qtype]
    w.add_file_type(ftype)

    # tokenizer: byte-level BPE ("gpt2" model in llama.cpp's terms), ids in order, added tokens marked as control
    vocab = tok_json["model"]["vocab"]
    special = {t["id"]: t for t in tok_json.get("added_tokens", [])}
    size = max(int(cfg.vocab_size), max(vocab.values()) + 1, max(special, default=-1) + 1)
    by_id = {i: s for s, i in vocab.items()}
    tokens, types = [], []
    for i in range(size):
        if i in special:
            tokens.append(special[i]["content"])
            types.append(gguf.TokenType.CONTROL if special[i].get("special") else gguf.TokenType.USER_DEFINED)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    sv = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens))
    sv.add_to_gguf(w)  # merges, bos/eos/pad ids, the chat template (chat_template.jinja)
    w.add_add_bos_token(False)  # the zoo's tokenizer adds no BOS (its post-processor has no special tokens)
    if getattr(sv, "chat_template", None) is None and (folder / "chat_template.jinja").is_file():
        w.add_chat_template((folder / "chat_template.jinja").read_text())

    sd = {k: v.detach().float().cpu().numpy() for k, v in lm.model.state_dict().items()}
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                 "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                 "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down"}
    counts: dict[str, int] = {}
    n = 0
    for key, arr in sd.items():
        if key == "lm_head.weight" and getattr(cfg, "tie_word_embeddings", False):
            continue  # tied: llama.cpp reuses token_embd
        if key in names:
            gname = names[key]
        elif key.startswith("model.layers.") and key.endswith(".weight"):
            rest = key[len("model.layers."):-len(".weight")]
            idx, sub = rest.split(".", 1)
            if sub not in per_layer:
                raise LabkitError(f"GGUF export: unexpected tensor {key}")
            gname = f"blk.{idx}.{per_layer[sub]}.weight"
            if sub == "self_attn.q_proj":
                arr = _permute(arr, n_head)
            elif sub == "self_attn.k_proj":
                arr = _permute(arr, n_kv)
        elif key.endswith("rotary_emb.inv_freq"):
            continue
        else:
            raise LabkitError(f"GGUF export: unexpected tensor {key}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        t = _tensor_type(qtype, gname, arr)
        if t == gguf.GGMLQuantizationType.F32:
            w.add_tensor(gname, arr)
        elif t == gguf.GGMLQuantizationType.F16:
            w.add_tensor(gname, arr.astype(np.float16))
        else:
            w.add_tensor(gname, gguf.quants.quantize(arr, t), raw_dtype=t)
        counts[t.name] = counts.get(t.name, 0) + 1
        n += 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, out)  # no half-written .gguf left behind if anything above failed
    return Exported(out, qtype, out.stat().st_size, n, counts)


@dataclass
class Parity:
    text: str
    hf_ids: list
    gguf_ids: list
    max_abs_diff: float  # next-token logits, every position
    argmax_agree: float  # fraction of positions whose top token is the same

    @property
    def same_ids(self) -> bool:
        return self.hf_ids == self.gguf_ids


def parity(model, gguf_path, text: str) -> Parity:
    """Tokenize ``text`` with both runtimes and compare next-token logits at every position (llama.cpp's own
    ``eval`` + ``scores``; not ``create_completion(echo=True)``, which is off by one position)."""
    import numpy as np
    import torch

    from . import models

    lm = models.resolve(model, use="GGUF export")
    llm = models.load(f"gguf:{gguf_path}", n_ctx=int(lm.model.config.max_position_embeddings),
                      logits_all=True).model
    hf_ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    gg_ids = list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
    with torch.no_grad():
        ref = lm.model(torch.tensor([hf_ids])).logits[0].float().numpy()
    llm.reset()
    llm.eval(hf_ids)  # the same ids in both, so that the logits compare even where tokenization differs
    got = np.array(llm.scores[: len(hf_ids)], dtype=np.float32)
    diff = float(np.abs(got - ref).max())
    agree = float((got.argmax(-1) == ref.argmax(-1)).mean())
    return Parity(text, list(hf_ids), gg_ids, diff, agree)
