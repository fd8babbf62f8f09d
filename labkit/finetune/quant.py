"""Low-bit base weights for QLoRA.

The base model's linear layers are stored in 4-bit NF4 (or 8-bit) by bitsandbytes, through transformers'
``BitsAndBytesConfig``; LoRA adapters train in full precision on top. bitsandbytes (>= 0.46) has a CPU backend,
so the same code path runs on a laptop CPU and, with CUDA, on a GPU (``compute_dtype`` bfloat16 there).
"""
from __future__ import annotations

from ..errors import LabkitError


def bnb_available() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def bnb_config(bits: int = 4, cuda: bool = False):
    """The ``BitsAndBytesConfig`` for a QLoRA base: NF4 with double quantization (the QLoRA paper's recipe)."""
    import logging

    import torch
    from transformers import BitsAndBytesConfig

    if not bnb_available():
        raise LabkitError("`method` qlora needs bitsandbytes: `pip install bitsandbytes` (it has a CPU backend).")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    if bits == 4:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.bfloat16 if cuda else torch.float32)
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    raise LabkitError(f"qlora supports 4 or 8 bits, not {bits}")


def load_quantized(path, bits: int = 4):
    """A causal LM from ``path`` with its linear layers quantized (CPU or the first GPU)."""
    import torch
    from transformers import AutoModelForCausalLM

    cuda = torch.cuda.is_available()
    return AutoModelForCausalLM.from_pretrained(str(path), quantization_config=bnb_config(bits, cuda),
                                                device_map="cuda:0" if cuda else "cpu", local_files_only=True)


def weight_bytes(model) -> int:
    """Bytes the model's parameters and buffers hold (packed 4-bit weights count as what they store)."""
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        total += t.numel() * t.element_size()
        qs = getattr(t, "quant_state", None)  # bitsandbytes keeps scales beside the packed weights
        if qs is not None:
            for v in (getattr(qs, "absmax", None), getattr(getattr(qs, "state2", None), "absmax", None)):
                if v is not None:
                    total += v.numel() * v.element_size()
    return total
