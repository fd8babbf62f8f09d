"""Attention engine: one forward pass with attention weights, for ``%%attend`` and for scripts.

    >>> from labkit.attend import attend
    >>> r = attend("The cat sat on the mat.", model="minilm")
    >>> r.attentions.shape          # (layers, heads, tokens, tokens), float16
    >>> r.weights(layer=2, head=5)  # one head's matrix, float32
    >>> r.top(3, layer=2, head=5)   # the tokens token #3 attends to most
    >>> r.show(view="matrix")

Models that compute attention with a fused kernel (PyTorch SDPA, flash attention) return no weights; the engine
then switches that model to the ``eager`` implementation (same numbers, slower, weights available) and says so.
Text longer than the model's positions is truncated with a visible notice.

The widget (``labkit.widgets.attention``) gets float16 binary buffers: every layer at once when the input is
small, otherwise one layer at a time, on demand, plus small downsampled thumbnails for the model view.
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

from .errors import LabkitError, LabkitUsageError
from .text import valid_unicode
from .viewable import Viewable

VIEWS = ("head", "model", "matrix", "bertviz")
DEFAULT_MODEL = "tiny-base"
#: above this many bytes of float16 attention the widget sends one layer at a time
ALL_LAYERS_LIMIT = 1_000_000
THUMB = 32  # thumbnail side (pixels) in the model view


@dataclass
class AttentionResult(Viewable):
    """Attention weights of one forward pass."""

    model: str
    kind: str  # 'causal-lm' or 'encoder'
    text: str
    tokens: list[str]
    token_ids: list[int]
    attentions: Any = field(repr=False)  # numpy float16 (layers, heads, n, n); row = query, column = key
    layer: int = 0
    head: int | None = None  # None = all heads
    view: str = "head"
    causal: bool = False
    pair_start: int | None = None  # index of the first token of sentence B (--pair)
    implementation: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    # -------------------------------------------------------------------------------------------- numbers
    @property
    def n_layers(self) -> int:
        return int(self.attentions.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.attentions.shape[1])

    @property
    def n_tokens(self) -> int:
        return int(self.attentions.shape[2])

    def weights(self, layer: int | None = None, head: int | None = None):
        """The (n, n) attention matrix of one head (float32); ``head=None`` averages the heads of the layer."""
        layer = self.layer if layer is None else layer
        check_index(layer, self.n_layers, "layer")
        if head is None:
            return self.attentions[layer].astype("float32").mean(axis=0)
        check_index(head, self.n_heads, "head")
        return self.attentions[layer, head].astype("float32")

    def top(self, token: int, layer: int | None = None, head: int | None = None, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` tokens that token number ``token`` attends to most: [(token text, weight), ...]."""
        check_index(token, self.n_tokens, "token")
        row = self.weights(layer, head if head is not None else self.head)[token]
        order = row.argsort()[::-1][:k]
        return [(self.tokens[j], float(row[j])) for j in order]

    def entropy(self, layer: int | None = None, head: int | None = None):
        """Mean entropy (nats) of the attention rows: low = focused heads, high = diffuse heads."""
        import numpy as np

        w = self.weights(layer, head).clip(1e-12, 1.0)
        return float(-(w * np.log(w)).sum(axis=1).mean())

    # -------------------------------------------------------------------------------------------- views
    def summary(self) -> str:
        head = "all heads" if self.head is None else f"head {self.head}"
        return (f"{self.model} ({self.kind}): {self.n_tokens} tokens · {self.n_layers} layers × {self.n_heads} heads"
                f" · showing layer {self.layer}, {head}" + (" · causal" if self.causal else ""))

    def __repr__(self) -> str:
        lines = [self.summary()]
        limit = 24
        for i in range(min(self.n_tokens, limit)):
            tops = ", ".join(f"{t!r} {w:.2f}" for t, w in self.top(i, k=3))
            lines.append(f"  {i:>3} {self.tokens[i]!r:<14} → {tops}")
        if self.n_tokens > limit:
            lines.append(f"  … {self.n_tokens - limit} more tokens")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def check_index(value: int, size: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < size:
        raise LabkitUsageError(f"{what} {value!r} does not exist: this model has {what}s 0–{size - 1}")
    return value


# ------------------------------------------------------------------------------------------------ model plumbing
def resolve(model) -> Any:
    """A registry name / folder / hub id, or an already loaded ``LoadedModel`` -> ``LoadedModel`` (through the
    model door, ``labkit.models.resolve``)."""
    from . import models

    loaded = models.resolve(model, kinds=("causal-lm", "encoder"), use="looking inside attention")
    if loaded.tokenizer is None:
        raise LabkitError(f"{model!r} has no tokenizer next to its weights; save one with tokenizer.save_pretrained")
    return loaded


def max_positions(model, tokenizer) -> int:
    """Deprecated name of ``labkit.models.context_length`` (kept for callers of the old API)."""
    import warnings

    from . import models

    warnings.warn("labkit.attend.max_positions is deprecated: use labkit.models.context_length",
                  DeprecationWarning, stacklevel=2)

    return models.context_length(model, tokenizer)


def token_labels(tokenizer, ids) -> list[str]:
    """Readable token strings: byte-level BPE tokens decoded one by one (' the'), WordPiece pieces as is ('##ing')."""
    pieces = tokenizer.convert_ids_to_tokens(list(ids))
    if any(p and ("Ġ" in p or "Ċ" in p) for p in pieces) or "ByteLevel" in repr(getattr(
            getattr(tokenizer, "backend_tokenizer", None), "decoder", None)):
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        return [pieces[k] if i in special else tokenizer.decode([i], clean_up_tokenization_spaces=False)
                for k, i in enumerate(ids)]
    return [p if p is not None else str(i) for p, i in zip(pieces, ids)]


def ensure_eager(model) -> str:
    """Switch a model to eager attention (the one that returns weights). Returns the implementation it had."""
    cfg = model.config
    before = getattr(cfg, "_attn_implementation", None) or "eager"
    if before == "eager":
        return before
    try:
        model.set_attn_implementation("eager")
    except Exception as exc:  # noqa: BLE001 - a model without an eager path
        raise LabkitError(f"{type(model).__name__} computes attention with {before!r} and cannot switch to the "
                          f"eager implementation that returns attention weights ({exc})") from None
    return before


def forward_attentions(model, inputs) -> tuple[Any, str]:
    """Run the model once with ``output_attentions``; switch to eager when the kernel returns none."""
    import torch

    impl = getattr(model.config, "_attn_implementation", None) or "eager"
    note = ""
    if impl != "eager":  # SDPA/flash kernels never materialise the weights: switch first, no wasted pass
        ensure_eager(model)
        note = (f"{type(model).__name__} uses {impl!r} attention, which returns no weights: this pass ran with "
                f"'eager' attention (same numbers), then the model went back to {impl!r}")
    try:
        with torch.no_grad():
            out = model(**inputs, output_attentions=True)
    except Exception as exc:  # noqa: BLE001
        raise LabkitError(f"the forward pass with output_attentions failed ({type(exc).__name__}: {exc})") from None
    finally:
        if impl != "eager":  # the model is shared (cached by the registry): leave it as it was
            try:
                model.set_attn_implementation(impl)
            except Exception:  # noqa: BLE001
                pass
    att = getattr(out, "attentions", None)
    if not att or any(a is None for a in att):
        raise LabkitError(f"{type(model).__name__} returned no attention weights even with eager attention: this "
                          f"model cannot show its attention (try tiny-base, tiny-chat or minilm)")
    return att, note


# ------------------------------------------------------------------------------------------------ engine
def split_pair(text: str) -> tuple[str, str]:
    """The two sentences of ``--pair``: the first two non-empty lines of the text (or a ``|||`` separator)."""
    if "|||" in text:
        a, b = text.split("|||", 1)
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if len(lines) != 2:
            raise LabkitUsageError(f"`pair` needs exactly two sentences, one per line (got {len(lines)} non-empty "
                                   f"lines); or separate them with |||")
        a, b = lines
    if not a.strip() or not b.strip():
        raise LabkitUsageError("`pair` needs two non-empty sentences, one per line")
    return a.strip(), b.strip()


def attend(text: str, model: Any = DEFAULT_MODEL, *, layer: int | None = None, head: int | None = None,
           view: str = "head", pair: bool = False, max_tokens: int | None = None) -> AttentionResult:
    """One forward pass of ``model`` on ``text`` with attention weights.

    ``layer``/``head``: what the views open on (checked against the model); ``view``: head, model, matrix or
    bertviz; ``pair``: two sentences (one per line) through an encoder as a sentence pair; ``max_tokens``: cut
    the input shorter than the model's positions.
    """
    import time

    import numpy as np

    if not isinstance(text, str) or not text.strip():
        raise LabkitUsageError("there is no text to look at: give some text (the cell body under %%attend)")
    text, bad_text = valid_unicode(text, "the text")
    if view not in VIEWS:
        raise LabkitUsageError(f"`view` must be one of {', '.join(VIEWS)}, not {view!r}")
    from . import models

    t0 = time.perf_counter()
    lm = resolve(model)
    net, tok = lm.model, lm.tokenizer
    cfg = net.config
    n_layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
    n_heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None)
    # check the requested layer/head before the forward pass: a typo costs nothing
    if layer is not None and n_layers:
        check_index(layer, n_layers, "layer")
    if head is not None and n_heads:
        check_index(head, n_heads, "head")
    causal = lm.kind == "causal-lm"
    if pair and causal:
        raise LabkitUsageError("`pair` is for encoders (BERT-style models such as minilm) that read two sentences "
                               "at once; a causal LM reads one text. Try an encoder such as minilm (`model`)")
    notes: list[str] = [bad_text] if bad_text else []
    limit = models.context_length(net, tok)
    if max_tokens is not None:
        if max_tokens < 2:
            raise LabkitUsageError(f"max_tokens must be at least 2, got {max_tokens}")
        limit = min(limit, max_tokens)
    if pair:
        a, b = split_pair(text)
        enc = tok(a, b, return_tensors="pt", truncation="longest_first", max_length=limit)
        n_full = len(tok(a, b, verbose=False)["input_ids"])
    else:
        enc = tok(text, return_tensors="pt", truncation=True, max_length=limit)
        n_full = len(tok(text, verbose=False)["input_ids"])  # the whole length, for the notice
    if n_full > enc["input_ids"].shape[1]:
        notes.append(f"the text has {n_full:,} tokens but {lm.name} reads at most {limit:,}: truncated to the "
                     f"first {enc['input_ids'].shape[1]:,}")
    inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    if causal:
        inputs.pop("token_type_ids", None)
    att, note = forward_attentions(net, inputs)
    if note:
        notes.append(note)
    import torch

    # float16 in torch (vectorised; numpy's float16 cast is ~10× slower): what the widget sends anyway
    attentions = torch.stack([a[0] for a in att]).to(torch.float16).numpy()
    ids = enc["input_ids"][0].tolist()
    pair_start = None
    if pair and "token_type_ids" in enc:
        tt = enc["token_type_ids"][0].tolist()
        pair_start = tt.index(1) if 1 in tt else None
    if layer is not None:
        check_index(layer, attentions.shape[0], "layer")
    if head is not None:
        check_index(head, attentions.shape[1], "head")
    impl = "eager" if note else (getattr(cfg, "_attn_implementation", None) or "eager")
    return AttentionResult(
        model=lm.name, kind=lm.kind, text=text, tokens=token_labels(tok, ids), token_ids=ids,
        attentions=attentions, layer=layer or 0, head=head, view=view, causal=causal, pair_start=pair_start,
        implementation=impl, notes=notes, seconds=time.perf_counter() - t0,
    )


# ------------------------------------------------------------------------------------------------ bertviz
# bertviz's views load require.js, d3 and jQuery from cdnjs.cloudflare.com, which a classroom without internet
# cannot reach. labkit ships pinned copies (labkit/vendor/bertviz, from npm by deploy/vendor-bertviz.sh, licences
# kept) and inlines them into bertviz's HTML, so its head and model views render offline.
VENDOR = Path(__file__).resolve().parent / "vendor" / "bertviz"
_CDN_REQUIRE = re.compile(r'<script src="https://cdnjs\.cloudflare\.com/ajax/libs/require\.js/[^"]+"></script>')
_REQUIRE_CONFIG = re.compile(r"require\.config\(\{\s*paths:\s*\{.*?\}\s*\}\);", re.S)


def _amd(name: str, source: str) -> str:
    """``source`` (a UMD build) registered as the AMD module ``name``: inside the wrapper it sees CommonJS
    (``module``/``exports``) and no ``define``, so it fills ``module.exports`` instead of an anonymous define()."""
    return (f"define('{name}', [], function () {{ var module = {{exports: {{}}}}, exports = module.exports;\n"
            f"(function (define) {{\n{source}\n}}).call(window);\nreturn module.exports; }});")


def _offline_scripts() -> str:
    try:
        req, d3, jq = ((VENDOR / f).read_text(encoding="utf-8") for f in ("require.js", "d3.min.js", "jquery.min.js"))
    except OSError as exc:
        raise LabkitError(f"labkit's copies of bertviz's scripts are missing ({exc.filename}): reinstall labkit") from None
    # </script> inside the libraries would end the tag early; they only contain it in strings, split it
    safe = lambda js: js.replace("</script", "<\\/script")  # noqa: E731
    return (f"<script type='text/javascript'>{safe(req)}</script>\n"
            f"<script type='text/javascript'>{safe(_amd('d3', d3))}\n{safe(_amd('jquery', jq))}</script>\n")


def offline_bertviz(html_text: str) -> str:
    """bertviz's HTML with its CDN scripts replaced by labkit's copies (nothing left to fetch from the network)."""
    out, n = _CDN_REQUIRE.subn(lambda _m: _offline_scripts(), html_text, count=1)
    if not n:
        raise LabkitError("bertviz's HTML no longer loads require.js the way labkit expects (a new bertviz?); "
                          "use `view` head, model or matrix")
    return _REQUIRE_CONFIG.sub("", out, count=1)


@dataclass
class BertvizView:
    """bertviz's own view (its scripts served from labkit's copies), or labkit's when bertviz cannot run."""

    result: AttentionResult
    html: str | None
    notice: str

    def __repr__(self):
        return self.notice + "\n" + repr(self.result)

    def _repr_mimebundle_(self, include=None, exclude=None):
        esc = html.escape(self.notice)
        if self.html is None:  # bertviz could not run: our own view, with the notice on top
            data = self.result._repr_mimebundle_()
            data["text/html"] = f"<div class='labkit-notice'><b>{esc}</b></div>" + data["text/html"]
            data["text/plain"] = self.notice + "\n" + data["text/plain"]
            return data
        return {"text/html": self.html, "text/plain": self.notice}


def neuron_model(model) -> Any:
    """bertviz's own BERT (``bertviz.transformers_neuron_view``, which exposes each head's queries and keys) with the
    weights of a loaded BERT-style encoder (``minilm``): the two share parameter names, so the state dict loads
    whole (strict). Not cached: it is a second copy of the weights, dropped once the view is drawn."""
    lm = resolve(model)
    cfg = lm.model.config
    if getattr(cfg, "model_type", "") != "bert":
        raise LabkitUsageError(f"bertviz's neuron view reads BERT-style encoders (minilm), not {lm.name!r} "
                               f"({getattr(cfg, 'model_type', '?')}); use `view` head, model or matrix for it")
    from bertviz.transformers_neuron_view import BertConfig, BertModel

    bc = BertConfig(vocab_size_or_config_json_file=cfg.vocab_size, hidden_size=cfg.hidden_size,
                    num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
                    intermediate_size=cfg.intermediate_size, hidden_act=cfg.hidden_act,
                    max_position_embeddings=cfg.max_position_embeddings, type_vocab_size=cfg.type_vocab_size,
                    layer_norm_eps=cfg.layer_norm_eps)
    bc.output_attentions = True
    net = BertModel(bc)
    try:
        net.load_state_dict(lm.model.state_dict(), strict=True)
    except RuntimeError as exc:
        raise LabkitError(f"{lm.name!r}'s weights do not fit bertviz's BERT ({str(exc)[:200]})") from None
    return net.eval(), lm.tokenizer


def bertviz_html(result: AttentionResult, which: str = "model") -> str:
    """bertviz's ``model_view``/``head_view``/``neuron_view`` HTML for this result, its scripts inlined (renders
    offline). The neuron view (queries and keys of one head, for BERT-style encoders) runs the model again in
    bertviz's own BERT, on the result's text."""
    try:
        import torch
        from bertviz import head_view, model_view
    except ImportError:
        raise LabkitError("bertviz is not installed (`pip install bertviz`); use `view` head, model or matrix") from None
    if which == "neuron":
        from bertviz import neuron_view

        net, tok = neuron_model(result.model)
        a, b = split_pair(result.text) if result.pair_start is not None else (result.text, None)
        with torch.no_grad():
            out = neuron_view.show(net, "bert", tok, a, b, layer=result.layer, head=result.head or 0,
                                   html_action="return")
        return offline_bertviz(out.data if hasattr(out, "data") else str(out))
    if which not in ("head", "model"):
        raise LabkitUsageError(f"bertviz's views here are 'head', 'model' and 'neuron', not {which!r}")
    att = tuple(torch.from_numpy(result.attentions[i : i + 1].astype("float32")) for i in range(result.n_layers))
    fn = model_view if which == "model" else head_view
    kwargs = {"sentence_b_start": result.pair_start} if result.pair_start is not None else {}
    out = fn(att, result.tokens, html_action="return", **kwargs)
    return offline_bertviz(out.data if hasattr(out, "data") else str(out))


def bertviz_view(result: AttentionResult, which: str = "head") -> BertvizView:
    try:
        return BertvizView(result, bertviz_html(result, which), f"bertviz {which}_view of {result.model} "
                                                                "(its scripts from labkit's copies: works offline)")
    except LabkitError as exc:
        return BertvizView(result, None, f"{exc}: showing labkit's own view.")
