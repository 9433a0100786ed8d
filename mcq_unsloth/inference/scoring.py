"""Answering questions with a model, in batches: letter scoring or generation.

``score`` reads the logits at the answer position (right after the opened assistant turn), keeps only the
choice letters' tokens and softmaxes over them: one forward pass, no generation, no parsing. The prompts'
shared start runs once; batches reuse its keys and values (:func:`prompt_prefix`). ``generate``
decodes greedily and extracts the letter with :func:`mcq_unsloth.extract_answer`. Both left-pad batches of
similar length; results never depend on the batch a question lands in.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..data.questions import Question
from ..errors import LongQuestions
from ..extraction import extract_answer
from ..prompts import PromptConfig, fit_question, render_prompt

log = logging.getLogger(__name__)


@dataclass
class Scored:
    """A question's predicted letter and the probabilities of every option letter. ``tied`` lists the letters
    that shared the highest logit exactly, when more than one did (the prediction is then drawn among them)."""

    id: str
    prediction: str
    probabilities: dict[str, float]
    tied: list[str] = field(default_factory=list)


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
                    batch_size: int = 16, prefix: PromptPrefix | None = None) -> list[Scored]:
    """Score every question's option letters, ``batch_size`` prompts per forward pass; results in input order.

    The letters' logits are computed in float32 from the final hidden state and the letters' rows of the output
    layer only, whatever the model's precision, so rounding makes no ties. The prompts' shared start (chat
    header, system prompt, instruction) runs through the model once and every batch reuses its keys and
    values; pass ``prefix`` (from :func:`prompt_prefix`) to reuse it across calls.
    """
    import torch

    letters = "".join(sorted({x for q in questions for x in q.options}))
    token_ids = list(letter_token_ids(tokenizer, letters).values())
    prompts = prompt_token_ids(tokenizer, questions, prompt)
    if prefix is None and len(prompts) > 1:
        prefix = prompt_prefix(model, shared_start(prompts))
    skip = len(prefix.token_ids) if prefix else 0
    if prefix and any(ids[:skip] != prefix.token_ids or len(ids) == skip for ids in prompts):
        raise ValueError("prefix: some prompts do not start with the given prefix")
    results: list[Scored | None] = [None] * len(questions)
    with letters_only_head(model, token_ids) as head:
        for indices, input_ids, mask in _left_padded_batches(model, tokenizer, prompts, batch_size, skip):
            # Left padding shifts real tokens right; positions must count real tokens only.
            positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, skip:]
            cache = prefix.cache(len(indices)) if prefix else None
            with torch.inference_mode():
                output = model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                               past_key_values=cache, logits_to_keep=1)
            logits = head.letter_logits(output)
            # A question's softmax runs over its own letters only: the others get no probability mass.
            foreign = torch.tensor([[x not in questions[i].options for x in letters] for i in indices],
                                   device=logits.device)
            logits = logits.masked_fill(foreign, float("-inf"))
            top = logits == logits.max(dim=-1, keepdim=True).values
            for index, row, best in zip(indices, torch.softmax(logits, dim=-1).tolist(), top.tolist()):
                q = questions[index]
                probabilities = {x: row[letters.index(x)] for x in q.options}
                tied = [x for x, is_top in zip(letters, best) if is_top]
                results[index] = Scored(q.id, break_tie(q.id, tied), probabilities, tied if len(tied) > 1 else [])
    return results


def break_tie(question_id: str, tied: list[str]) -> str:
    """The letter among exactly tied ones, drawn with the question's id as the seed: no position is favoured,
    and the same question always gets the same answer.

    >>> break_tie("q1", ["B"])
    'B'
    >>> sorted({break_tie(f"q{i}", ["A", "C"]) for i in range(20)})
    ['A', 'C']
    """
    return tied[0] if len(tied) == 1 else random.Random(question_id).choice(tied)


def _letter_head(rows, bias):
    """A stand-in for the output layer during scoring: the final hidden state, upcast to float32, times the
    option letters' rows of that layer (in float32), so no full-vocabulary projection runs and 16-bit rounding
    cannot make two letters tie. The model's own output is read when it stays in float32 (transformers' models
    do, after any softcapping or scaling of their logits); when the model casts it back to its dtype (Unsloth
    does), the float32 logits kept here are read instead."""
    import torch

    class LetterHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight, self.bias, self.logits = rows, bias, None

        def forward(self, hidden):
            self.logits = torch.nn.functional.linear(hidden.float(), self.weight, self.bias)
            return self.logits

        def letter_logits(self, output):
            """The float32 letter logits at the last position of each row: (batch, letters)."""
            logits = output.logits
            if logits.dtype != torch.float32 and self.logits is not None:
                logits = self.logits
            self.logits = None
            return logits[:, -1].float()

    return LetterHead()


@contextlib.contextmanager
def letters_only_head(model, token_ids: list[int]):
    """Within the block, ``model``'s output layer computes only the logits of ``token_ids``, in float32."""
    from peft import PeftModel

    owner = model.get_base_model() if isinstance(model, PeftModel) else model  # under PEFT's wrapper
    original = owner.get_output_embeddings()
    rows, bias = _output_rows(original, token_ids, owner.config.get_text_config().hidden_size)
    head = _letter_head(rows, bias)
    owner.set_output_embeddings(head)
    try:
        yield head
    finally:
        owner.set_output_embeddings(original)


def _output_rows(layer, token_ids: list[int], hidden_size: int):
    """The rows of a linear output layer for ``token_ids`` and their bias, in float32, read through the layer
    itself by feeding it unit vectors: exact for a plain layer, and right for PEFT's copy of a fully trained
    head or a head carrying LoRA, which a ``.weight`` alone would miss."""
    import torch

    weight = getattr(layer, "weight", None)
    dtype = weight.dtype if weight is not None and weight.dtype.is_floating_point else torch.float32
    device = weight.device if weight is not None else "cpu"
    with torch.inference_mode():
        bias = layer(torch.zeros(1, hidden_size, dtype=dtype, device=device))[0, token_ids].float()
        unit = torch.eye(hidden_size, dtype=dtype, device=device)
        columns = torch.cat([layer(unit[i:i + 256])[:, token_ids].float() for i in range(0, hidden_size, 256)])
    return (columns - bias).T.contiguous(), (bias if bias.any() else None)


def generate_answers(model, tokenizer, questions: list[Question], prompt: PromptConfig | None = None,
                     batch_size: int = 16, max_new_tokens: int = 8) -> list[Generated]:
    """Greedy replies, ``batch_size`` prompts per ``generate`` call, and the letters extracted from them."""
    import torch

    results: list[Generated | None] = [None] * len(questions)
    prompts = prompt_token_ids(tokenizer, questions, prompt)
    for indices, input_ids, mask in _left_padded_batches(model, tokenizer, prompts, batch_size):
        with torch.inference_mode():
            output = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                    do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                    eos_token_id=stop_token_ids(model, tokenizer))
        replies = tokenizer.batch_decode(output[:, input_ids.shape[1]:], skip_special_tokens=True)
        for index, reply in zip(indices, replies):
            q = questions[index]
            results[index] = Generated(q.id, extract_answer(reply, q.options), reply)
    return results


def stop_token_ids(model, tokenizer) -> list[int]:
    """The tokens generation stops on: the tokenizer's end token (the chat template's end of turn, see
    :func:`mcq_unsloth.model.backends.load_model`) and any the model's generation config names."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    configured = [configured] if isinstance(configured, int) else list(configured or [])
    return list(dict.fromkeys([tokenizer.eos_token_id, *configured]))


def fit_to_context(context: int | None, tokenizer, questions: list[Question], prompt: PromptConfig | None = None,
                   room: int = 0, circular: bool = False, on_long: str = "shorten") -> tuple[list[Question], set[str]]:
    """The questions with those whose prompts leave less than ``room`` tokens of the model's ``context`` (a reply's
    length, for generation) shortened from the middle (see :func:`mcq_unsloth.prompts.fit_question`), and the
    ids shortened, each named in a warning on stderr. With ``on_long="error"`` they raise :class:`LongQuestions`
    instead. Either way memory stays bounded by the batch, never by one long row. No limit when ``context`` is
    None."""
    if context is None or not questions:
        return questions, set()
    # A rotation's prompt (circular evaluation) may take a token or two more than the original's.
    limit = context - room - (8 if circular else 0)
    lengths = [n for i in range(0, len(questions), 1000)
               for n in map(len, prompt_token_ids(tokenizer, questions[i:i + 1000], prompt))]
    long = [(i, n) for i, n in enumerate(lengths) if n > limit]
    if not long:
        return questions, set()
    named = ", ".join(_row_name(questions[i], f"{n} tokens") for i, n in long)
    if on_long == "error":
        raise LongQuestions(f"{len(long)} question(s) take more tokens than the model's context of {limit}: "
                            f"{named}; shorten them, or leave out --on-long error to have them shortened")
    fitted = list(questions)
    for i, _ in long:
        fitted[i] = fit_question(tokenizer, questions[i], limit, prompt)
        if fitted[i] is None:
            raise LongQuestions(f"{_row_name(questions[i])}: even with its question and options cut to nothing, "
                                f"its prompt takes more tokens than the model's context of {limit}")
    log.warning(f"warning: {len(long)} question(s) take more tokens than the model's context of {limit} and were "
                f"shortened from the middle of their text: {named}. Pass --on-long error to stop instead")
    return fitted, {questions[i].id for i, _ in long}


def _row_name(q: Question, detail: str = "") -> str:
    """
    >>> _row_name(Question("q7", "?", {}, row=7), "900 tokens"), _row_name(Question("q7", "?", {}))
    ('row 7 (id q7, 900 tokens)', 'id q7')
    """
    if q.row:
        return f"row {q.row} (id {q.id}{', ' + detail if detail else ''})"
    return f"id {q.id}{f' ({detail})' if detail else ''}"


def prompt_token_ids(tokenizer, questions: list[Question], prompt: PromptConfig | None = None) -> list[list[int]]:
    """Each question's rendered chat prompt as token ids, tokenized in one call."""
    texts = [render_prompt(tokenizer, q, prompt) for q in questions]
    # verbose=False: a prompt longer than the model's context is for the caller to handle (see predict), not for
    # transformers to warn of.
    return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]


@dataclass
class PromptPrefix:
    """The tokens a set of prompts starts with and the model's keys and values for them (batch of one)."""

    token_ids: list[int]
    states: list[tuple]  # (keys, values) per layer

    def cache(self, batch: int):
        """A fresh cache holding the prefix for ``batch`` rows; forward passes extend copies, never the prefix."""
        from transformers import DynamicCache

        return DynamicCache([(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in self.states])


def shared_start(prompts: Iterable[list[int]]) -> list[int]:
    """The longest run of tokens every prompt starts with, leaving each at least one token of its own.

    >>> shared_start([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]])
    [1, 2]
    >>> shared_start([[1, 2], [1, 2]])
    [1]
    """
    common: list[int] | None = None
    for ids in prompts:
        if common is None:
            common = list(ids[:-1])
            continue
        length = min(len(common), len(ids) - 1)
        common = common[:next((i for i in range(length) if ids[i] != common[i]), length)]
    return common or []


def prompt_prefix(model, token_ids: list[int]) -> PromptPrefix | None:
    """Run ``token_ids`` (a :func:`shared_start`) through ``model`` once and keep its keys and values. None for
    no tokens or a model whose cache is not a plain per-layer one (sliding windows)."""
    import torch
    from transformers.cache_utils import DynamicLayer

    if not token_ids:
        return None
    device = next(model.parameters()).device
    with torch.inference_mode():
        cache = model(input_ids=torch.tensor([token_ids], device=device), use_cache=True,
                      logits_to_keep=1).past_key_values
    if isinstance(cache, (tuple, list)):  # Unsloth's fast path returns per-layer (keys, values) tuples
        states = [(layer[0], layer[1]) for layer in cache]
    elif cache is not None and all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None])):
        states = [(layer.keys, layer.values) for layer in cache.layers]
    else:
        return None
    return PromptPrefix(list(token_ids), states)


def _left_padded_batches(model, tokenizer, prompts: list[list[int]], batch_size: int, skip: int = 0):
    """(prompt indices, input ids, attention mask) per batch, longest prompts first: padding is minimal, and
    the first batch shows at once whether memory suffices. ``skip`` leading tokens (a cached prefix) are left
    out of the input ids but covered by the mask."""
    import torch

    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        width = len(prompts[indices[0]]) - skip
        input_ids = torch.full((len(indices), width), pad, dtype=torch.long)
        mask = torch.zeros((len(indices), skip + width), dtype=torch.long)
        mask[:, :skip] = 1
        for row, index in enumerate(indices):
            own = prompts[index][skip:]
            input_ids[row, width - len(own):] = torch.tensor(own)
            mask[row, skip + width - len(own):] = 1
        yield indices, input_ids.to(device), mask.to(device)


def accuracy(questions: list[Question], predictions: list[str | None]) -> float:
    """Share of questions whose prediction equals the gold answer, as every report gives it (4 decimals): eval's
    metrics, the accuracy logged during training, the demo's. None of none.

    >>> qs = [Question("1", "q", {"A": "x", "B": "y"}, "A")] * 4
    >>> accuracy(qs, ["A", "B", None, "A"])
    0.5
    """
    return share(correct(questions, predictions), len(questions))


def correct(questions: list[Question], predictions: list[str | None]) -> int:
    """How many ``predictions`` equal their question's gold answer (a launch adds up each process's count)."""
    return sum(p == q.answer for q, p in zip(questions, predictions, strict=True))


def share(count: int, total: int) -> float:
    """``count`` of ``total`` rounded as the reports round shares; 0.0 of none.

    >>> share(2, 3), share(0, 0)
    (0.6667, 0.0)
    """
    return round(count / max(total, 1), 4)
