"""Answering questions with a model: letter scoring in one forward pass per batch.

``score`` mode reads the logits at the answer position (right after the opened assistant turn), keeps only
the choice letters' tokens and softmaxes over them: no generation, no parsing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .data import Question
from .prompts import PromptConfig, render_prompt


@dataclass
class Scored:
    """A question's predicted letter and the probabilities of every option letter."""

    id: str
    prediction: str
    probabilities: dict[str, float]


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
    """Score every question's option letters, ``batch_size`` prompts per forward pass."""
    import torch

    letters = "".join(sorted({letter for q in questions for letter in q.options}))
    token_ids = letter_token_ids(tokenizer, letters)
    # Longest first: the first batch shows at once whether memory suffices, and padding is minimal.
    order = sorted(range(len(questions)), key=lambda i: -len(questions[i].question))
    results: list[Scored | None] = [None] * len(questions)
    device = next(model.parameters()).device
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        for start in range(0, len(order), batch_size):
            batch = [questions[i] for i in order[start:start + batch_size]]
            texts = [render_prompt(tokenizer, q, prompt) for q in batch]
            encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            # Left padding shifts real tokens right; positions must count real tokens only.
            positions = (encoded["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = model(**encoded, position_ids=positions, logits_to_keep=1).logits[:, -1, :]
            for q, row, index in zip(batch, logits.float(), order[start:start + batch_size]):
                own = list(q.options)
                probs = torch.softmax(row[[token_ids[x] for x in own]], dim=-1).tolist()
                distribution = dict(zip(own, probs))
                results[index] = Scored(q.id, max(distribution, key=distribution.get), distribution)
    finally:
        tokenizer.padding_side = padding_side
    return results


def accuracy(questions: list[Question], predictions: list[str | None]) -> float:
    """Share of questions whose prediction equals the gold answer.

    >>> qs = [Question("1", "q", {"A": "x", "B": "y"}, "A")] * 4
    >>> accuracy(qs, ["A", "B", None, "A"])
    0.5
    """
    return sum(p == q.answer for q, p in zip(questions, predictions)) / len(questions)
