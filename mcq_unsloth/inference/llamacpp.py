"""Running a GGUF file with llama-cpp-python, the way our predictions run: letter scoring at the answer position
and greedy generation, on prompts rendered by the Hugging Face tokenizer's chat template and tokenized by
llama.cpp itself (what a deployment does).

llama-cpp-python is built from source by ``make install`` (see the README); export to f16, bf16 and q8_0 does
not need it, K-quants, ``--verify`` and GGUF prediction do.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path

from ..errors import ExportError
from ..extraction import extract_answer
from ..prompts import render_prompt
from .gguf_check import check_gguf
from .llamacpp_check import check_llama_cpp
from .scoring import Generated, Scored, break_tie, letter_token_ids

MISSING = ("llama-cpp-python is not installed: {what} needs it. `make install` builds it (about 5-10 minutes the "
           "first time; see the README for the build flags), or pip install llama-cpp-python")


def llama_cpp(what: str):
    """The ``llama_cpp`` module, once this machine is known to run it (:func:`check_llama_cpp`, before our process
    loads the library); raises :class:`ExportError` saying what needs it when it is not installed."""
    check_llama_cpp()
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
        check_gguf(path)  # llama.cpp would fail on a file that is not GGUF, or cut short, without saying so
        module = llama_cpp("running a GGUF file")
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
        """The token id of each bare letter in llama.cpp's vocabulary."""
        try:
            return letter_token_ids(self.tokenizer, letters)
        except ValueError as error:
            raise ExportError(f"{self.path}: {error}") from None

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

    @functools.cached_property
    def tokenizer(self) -> GgufTokenizer:
        """The file's chat template and llama.cpp's tokenization, as prompt rendering uses a tokenizer."""
        return GgufTokenizer(self)

    def context_length(self) -> int:
        """The file's trained context, or less when llama.cpp was given less."""
        return self.context

    def first_batch_size(self) -> int:
        """How many questions answering hands over at a time; llama.cpp asks them one by one anyway."""
        return 16

    def prompt_prefix(self, questions, prompt=None) -> None:
        """None: llama.cpp reuses the start each prompt shares with the one before by itself (:meth:`next_logits`)."""
        return None

    def score(self, questions, prompt=None, batch_size: int = 1, prefix=None) -> list:
        """Letter scoring as :func:`mcq_unsloth.inference.scoring.score_questions` does it, one prompt at a time (each
        reusing the start it shares with the previous one); ``batch_size`` and ``prefix`` are the transformers
        side's and change nothing here."""
        tokenizer = self.tokenizer
        letter_ids = self.letter_ids("".join(sorted({x for q in questions for x in q.options})))
        return [self.score_tokens(question, self.token_ids(render_prompt(tokenizer, question, prompt)), letter_ids)
                for question in questions]

    def score_tokens(self, question, token_ids: list[int], letter_ids: dict[str, int]):
        """The :class:`~mcq_unsloth.inference.scoring.Scored` answer to ``question`` after the prompt ``token_ids``: the
        softmax over its option letters at the answer position, exact ties drawn with the question's id."""
        import numpy as np

        letters = list(question.options)
        chosen = self.next_logits(token_ids)[[letter_ids[x] for x in letters]].astype("float64")
        probabilities = np.exp(chosen - chosen.max())
        probabilities /= probabilities.sum()
        tied = [x for x, value in zip(letters, chosen) if value == chosen.max()]
        return Scored(question.id, break_tie(question.id, tied), dict(zip(letters, probabilities.tolist())),
                      tied if len(tied) > 1 else [])

    def generate(self, questions, prompt=None, batch_size: int = 1, max_new_tokens: int = 8) -> list:
        """Greedy replies and the letters extracted from them, as
        :func:`mcq_unsloth.inference.scoring.generate_answers` gives them, one prompt at a time."""
        tokenizer, stop = self.tokenizer, self.end_of_generation()
        results = []
        for question in questions:
            reply = self.greedy(self.token_ids(render_prompt(tokenizer, question, prompt)), max_new_tokens, stop)
            results.append(Generated(question.id, extract_answer(reply, question.options), reply))
        return results

    def end_of_generation(self) -> set[int]:
        """The tokens generation stops on: the file's end-of-sequence and end-of-turn tokens."""
        vocab = self._module.llama_model_get_vocab(self.llm.model)
        return {int(self._module.llama_vocab_eos(vocab)), int(self._module.llama_vocab_eot(vocab))} - {-1}


class GgufTokenizer:
    """What prompt rendering and length checks need of a tokenizer, answered from a GGUF file: its own chat
    template (rendered as transformers renders templates, by llama-cpp-python's formatter) and llama.cpp's
    tokenization."""

    def __init__(self, model: GgufModel):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        metadata = model.llm.metadata
        if "tokenizer.chat_template" not in metadata:
            raise ExportError(f"{model.path} has no chat template; export it from a model that has one")
        token = lambda key: model.llm.detokenize([int(metadata[key])], special=True).decode() if key in metadata else ""
        self._template = Jinja2ChatFormatter(metadata["tokenizer.chat_template"], token("tokenizer.ggml.eos_token_id"),
                                             token("tokenizer.ggml.bos_token_id"), add_generation_prompt=True)
        self._model = model
        self.model_max_length = model.context

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return self._template(messages=messages).prompt

    def __call__(self, texts, add_special_tokens=False, verbose=False):
        return {"input_ids": [self._model.token_ids(text) for text in texts]}

    def encode(self, text, add_special_tokens=False):
        return self._model.llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=False)


def gguf_facts(path: str | Path) -> tuple[str, dict | None]:
    """What a GGUF file says of itself, read before llama.cpp loads it: its weights' type (``q8_0``, ``f16``...)
    and the training record our export put in it (None when it has none). Checks the file first."""
    import gguf

    check_gguf(path)
    fields = gguf.GGUFReader(path).fields
    kind = gguf.LlamaFileType(int(fields["general.file_type"].contents())) if "general.file_type" in fields \
        else gguf.LlamaFileType.ALL_F32
    record = fields.get("mcq_unsloth.training_record")
    return (kind.name.removeprefix("MOSTLY_").removeprefix("ALL_").lower(),
            json.loads(record.contents()) if record is not None else None)


def trained_context(path: str | Path) -> int:
    """The context length a GGUF file's metadata gives its model."""
    import gguf

    reader = gguf.GGUFReader(path)
    arch = reader.fields["general.architecture"].contents()
    return int(reader.fields[f"{arch}.context_length"].contents())
