"""A transformers model (loaded by Unsloth or the vanilla way, with or without a PEFT adapter) and its tokenizer,
answering through the same small set of methods as :class:`mcq_unsloth.inference.llamacpp.GgufModel`: what
:mod:`mcq_unsloth.inference.answering` asks of either kind of model."""

from __future__ import annotations

from ..data.questions import Question
from ..prompts import PromptConfig
from .scoring import generate_answers, prompt_prefix, prompt_token_ids, score_questions, shared_start


class TransformersModel:
    """``model`` and ``tokenizer`` as the loaders return them; the scoring and generation functions of
    :mod:`mcq_unsloth.inference.scoring` behind the methods answering uses."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def context_length(self) -> int | None:
        """The most tokens the model takes at once: its position limit, or the tokenizer's when that is lower.
        None when neither says."""
        config = self.model.config.get_text_config()
        limits = [getattr(config, "max_position_embeddings", None), getattr(self.tokenizer, "model_max_length", None)]
        limits = [x for x in limits if isinstance(x, int) and 0 < x < 10**8]  # tokenizers say 1e30 for "no limit"
        return min(limits, default=None)

    def first_batch_size(self) -> int:
        """A starting batch size: from free GPU memory (answering halves it on out-of-memory), or 16 on a CPU."""
        import torch

        if not torch.cuda.is_available():
            return 16
        free, _ = torch.cuda.mem_get_info()
        # ~150-token prompts of a 7B model need well under 64 MiB of activations each at inference.
        return int(max(1, min(256, free // (64 * 2**20))))

    def prompt_prefix(self, questions: list[Question], prompt: PromptConfig | None = None):
        """The start every question's prompt shares, run through the model once: each scoring batch reuses its
        keys and values. Prompts are tokenized a thousand at a time, so a large file's token ids are never all
        held at once."""
        chunks = (prompt_token_ids(self.tokenizer, questions[i:i + 1000], prompt) for i in range(0, len(questions), 1000))
        return prompt_prefix(self.model, shared_start(ids for chunk in chunks for ids in chunk))

    def score(self, questions: list[Question], prompt: PromptConfig | None = None, batch_size: int = 16,
              prefix=None) -> list:
        """:func:`mcq_unsloth.inference.scoring.score_questions` on this model."""
        return score_questions(self.model, self.tokenizer, questions, prompt, batch_size, prefix)

    def generate(self, questions: list[Question], prompt: PromptConfig | None = None, batch_size: int = 16,
                 max_new_tokens: int = 8) -> list:
        """:func:`mcq_unsloth.inference.scoring.generate_answers` on this model."""
        return generate_answers(self.model, self.tokenizer, questions, prompt, batch_size, max_new_tokens)
