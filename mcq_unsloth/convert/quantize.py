"""K-quants (and anything else beyond gguf-py) by llama.cpp's own quantizer, as llama-cpp-python ships it: its
rules decide which tensors keep more bits (the output layer, parts of attention), which a hand-written
quantizer would not reproduce."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

from ..errors import ExportError
from ..inference.llamacpp import llama_cpp

# llama.cpp's file types (enum llama_ftype) for the quantizations we offer through it.
LLAMA_CPP_QUANTS = {"q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}


def quantize_gguf(source: str | Path, out: str | Path, quant: str) -> Path:
    """Quantize the GGUF file ``source`` (f32, f16 or bf16) into ``out`` with llama.cpp; ``out`` appears only
    when complete."""
    if quant not in LLAMA_CPP_QUANTS:
        raise ExportError(f"llama.cpp quantizes to {', '.join(LLAMA_CPP_QUANTS)} here, not {quant!r}")
    module = llama_cpp(f"--quant {quant}")
    out = Path(out)
    partial = out.with_name(f".{out.name}.partial")
    params = module.llama_model_quantize_default_params()
    params.ftype = LLAMA_CPP_QUANTS[quant]
    params.nthread = os.cpu_count() or 1
    # llama-cpp-python maps llama.cpp's warnings to logging.ERROR, so "errors only" still prints one "falling
    # back to q5_0" line per narrow tensor (180 for SmolLM2): quiet during quantizing, summed up by fallbacks().
    log = logging.getLogger("llama-cpp-python")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        if module.llama_model_quantize(str(source).encode(), str(partial).encode(), params) != 0:
            raise ExportError(f"llama.cpp could not quantize {source} to {quant}")
        os.replace(partial, out)
    finally:
        log.setLevel(level)
        partial.unlink(missing_ok=True)
    return out


def fallbacks(path: str | Path, quant: str) -> str | None:
    """One line on the tensors of a K-quant file that llama.cpp kept in another type because their rows are
    not a multiple of the K-quants' 256-value blocks (None when there are none)."""
    import gguf

    kept = Counter(t.tensor_type.name.lower() for t in gguf.GGUFReader(path).tensors
                   if t.tensor_type.name.endswith(("_0", "_1")) or t.tensor_type.name in ("F16", "BF16"))
    if not kept:
        return None
    counted = ", ".join(f"{n} {kind}" for kind, n in kept.most_common())
    return (f"{Path(path).name}: llama.cpp kept {counted} tensor(s) out of {quant}, as their rows are not a "
            f"multiple of 256 values")
