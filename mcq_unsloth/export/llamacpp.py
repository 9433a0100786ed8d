"""Running a GGUF file with llama-cpp-python, the way our predictions run: letter scoring at the answer position
and greedy generation, on prompts rendered by the Hugging Face tokenizer's chat template and tokenized by
llama.cpp itself (what a deployment does).

llama-cpp-python is built from source by ``make install`` (see the README); export to f16, bf16 and q8_0 does
not need it, K-quants, ``--verify`` and GGUF prediction do.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .gguf_file import ExportError

MISSING = ("llama-cpp-python is not installed: {what} needs it. `make install` builds it (about 5-10 minutes the "
           "first time; see the README for the build flags), or pip install llama-cpp-python")


def llama_cpp(what: str):
    """The ``llama_cpp`` module; raises :class:`ExportError` saying what needs it when it is not installed."""
    try:
        import llama_cpp as module
    except ImportError:
        raise ExportError(MISSING.format(what=what)) from None
    # llama.cpp's own log (per-tensor notes while quantizing, context sizes) goes through this logger: errors only.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    return module


class GgufModel:
    """A GGUF model in llama.cpp. Consecutive prompts that share a start reuse its keys and values."""

    def __init__(self, path: str | Path, context: int = 4096):
        module = llama_cpp("running a GGUF file")
        if not Path(path).is_file():
            raise ExportError(f"{path}: no such GGUF file")
        self._module = module
        self.path = Path(path)
        self.context = min(context, trained_context(path))
        self.llm = module.Llama(model_path=str(path), n_ctx=self.context, n_batch=512, logits_all=False,
                                verbose=False, n_threads=os.cpu_count())

    def close(self) -> None:
        """Free llama.cpp's model and context now (at interpreter exit, llama-cpp-python's own clean-up fails)."""
        self.llm.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def token_ids(self, text: str) -> list[int]:
        """``text`` tokenized by llama.cpp, special tokens read as such and no start token added (the chat
        template writes every special token)."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def letter_ids(self, letters: str) -> dict[str, int]:
        ids = {}
        for letter in letters:
            tokens = self.llm.tokenize(letter.encode(), add_bos=False, special=False)
            if len(tokens) != 1:
                raise ExportError(f"{self.path}: llama.cpp writes {letter!r} as {len(tokens)} tokens; letter scoring "
                                  f"needs one")
            ids[letter] = tokens[0]
        return ids

    def next_logits(self, token_ids: list[int]):
        """The logits (float32 numpy, whole vocabulary) of the token after ``token_ids``."""
        import numpy as np

        shared = 0
        previous = self.llm.input_ids[: self.llm.n_tokens]
        limit = min(len(previous), len(token_ids) - 1)
        while shared < limit and previous[shared] == token_ids[shared]:
            shared += 1
        self.llm.n_tokens = shared
        self.llm.eval(token_ids[shared:])
        pointer = self._module.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.llm.n_vocab(),)).copy()

    def greedy(self, token_ids: list[int], max_new_tokens: int, stop: set[int]) -> str:
        """Greedy continuation of ``token_ids``, up to ``max_new_tokens`` or a ``stop`` token, as text."""
        reply: list[int] = []
        for _ in range(max_new_tokens):
            token = int(self.next_logits(token_ids + reply).argmax())
            if token in stop:
                break
            reply.append(token)
        return self.llm.detokenize(reply).decode("utf-8", errors="replace")

    def end_of_generation(self) -> set[int]:
        """The tokens generation stops on: the file's end-of-sequence and end-of-turn tokens."""
        vocab = self._module.llama_model_get_vocab(self.llm.model)
        return {int(self._module.llama_vocab_eos(vocab)), int(self._module.llama_vocab_eot(vocab))} - {-1}


def trained_context(path: str | Path) -> int:
    """The context length a GGUF file's metadata gives its model."""
    import gguf

    reader = gguf.GGUFReader(path)
    arch = reader.fields["general.architecture"].contents()
    return int(reader.fields[f"{arch}.context_length"].contents())
