"""Answering questions with a model, in batches: letter scoring or generation.

``score`` reads the logits at the answer position (right after the opened assistant turn), keeps only the
choice letters' tokens and softmaxes over them: one forward pass, no generation, no parsing. ``generate``
decodes greedily and extracts the letter with :func:`mcq_unsloth.extract_answer`. Both left-pad batches of
similar length; results never depend on the batch a question lands in.
"""

from __future__ import annotations

from dataclasses import dataclass

from .data import Question
from .extraction import extract_answer
from .prompts import PromptConfig, render_prompt


@dataclass
class Scored:
    """A question's predicted letter and the probabilities of every option letter."""

    id: str
    prediction: str
    probabilities: dict[str, float]


@dataclass
class Generated:
    """A question's generated reply and the letter extracted from it (None when there is none)."""

    id: str
    prediction: str | None
    text: str


def letter_token_ids(tokenizer, letters: str) -> dict[str, int]:
    """The token id of each bare letter; raises ValueError for a tokenizer that splits one."""
    ids = {}
    for letter in letters:
        tokens = tokenizer.encode(letter, add_special_tokens=False)
        if len(tokens) != 1:
            raise ValueError(f"the tokenizer writes {letter!r} as {len(tokens)} tokens; letter scoring needs one")
        ids[letter] = tokens[0]
    return ids


def score_questions(model, tokenizer, questions: list[Question], prompt: PromptConfig | None = None,
                    batch_size: int = 16) -> list[Scored]:
    """Score every question's option letters, ``batch_size`` prompts per forward pass; results in input order."""
    import torch

    token_ids = letter_token_ids(tokenizer, "".join(sorted({x for q in questions for x in q.options})))
    results: list[Scored | None] = [None] * len(questions)
    for indices, encoded in _left_padded_batches(model, tokenizer, questions, prompt, batch_size):
        # Left padding shifts real tokens right; positions must count real tokens only.
        positions = (encoded["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = model(**encoded, position_ids=positions, logits_to_keep=1).logits[:, -1, :].float()
        for index, row in zip(indices, logits):
            own = list(questions[index].options)
            probabilities = dict(zip(own, torch.softmax(row[[token_ids[x] for x in own]], dim=-1).tolist()))
            results[index] = Scored(questions[index].id, max(probabilities, key=probabilities.get), probabilities)
    return results


def generate_answers(model, tokenizer, questions: list[Question], prompt: PromptConfig | None = None,
                     batch_size: int = 16, max_new_tokens: int = 8) -> list[Generated]:
    """Greedy replies, ``batch_size`` prompts per ``generate`` call, and the letters extracted from them."""
    import torch

    results: list[Generated | None] = [None] * len(questions)
    for indices, encoded in _left_padded_batches(model, tokenizer, questions, prompt, batch_size):
        with torch.inference_mode():
            output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
        replies = tokenizer.batch_decode(output[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
        for index, reply in zip(indices, replies):
            q = questions[index]
            results[index] = Generated(q.id, extract_answer(reply, q.options), reply)
    return results


def _left_padded_batches(model, tokenizer, questions, prompt, batch_size):
    """(question indices, encoded batch) pairs, longest prompts first: padding is minimal, and the first batch
    shows at once whether memory suffices. Prompts are tokenized once and padded per batch."""
    texts = [render_prompt(tokenizer, q, prompt) for q in questions]
    token_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    order = sorted(range(len(questions)), key=lambda i: -len(token_ids[i]))
    device = next(model.parameters()).device
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            encoded = tokenizer.pad({"input_ids": [token_ids[i] for i in indices]}, return_tensors="pt")
            yield indices, encoded.to(device)
    finally:
        tokenizer.padding_side = padding_side


def accuracy(questions: list[Question], predictions: list[str | None]) -> float:
    """Share of questions whose prediction equals the gold answer.

    >>> qs = [Question("1", "q", {"A": "x", "B": "y"}, "A")] * 4
    >>> accuracy(qs, ["A", "B", None, "A"])
    0.5
    """
    return sum(p == q.answer for q, p in zip(questions, predictions)) / len(questions)
