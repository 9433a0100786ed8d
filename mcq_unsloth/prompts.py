"""Rendering a question into chat messages, the same way for SFT, GRPO and inference.

The default is the contest's Chinese system prompt and user template; ``en`` is an English variant; a recipe
may replace either part. Templates are ``str.format`` strings over ``{question}``, ``{options}`` (one
``A. text`` line per option) and ``{letters}`` (``A、B、C或D`` in Chinese, ``A, B, C or D`` in English).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field, replace

from .data.questions import Question

TEMPLATES = {
    "zh": {
        "system": "你是一个提供有关中国敏感话题客观答案的助手。始终呈现多元视角并保持政治中立。",
        "user": "请回答以下选择题。你的回答必须仅以单个字母（{letters}）开头。\n问题：{question}\n选项：\n{options}",
    },
    "en": {
        "system": "You are an assistant that answers questions objectively, presents multiple perspectives "
                  "and stays politically neutral.",
        "user": "Answer the following multiple-choice question. Your reply must start with a single letter "
                "({letters}).\nQuestion: {question}\nOptions:\n{options}",
    },
}
PLACEHOLDERS = frozenset({"question", "options", "letters"})


@dataclass
class PromptConfig:
    """How questions are put to the model.

    ``template`` names a built-in template (``zh``, the contest's, or ``en``); ``system`` and ``user``, when
    set, replace that template's system prompt and user message (``system: ""`` drops the system message).
    """

    template: str = field(default="zh", metadata={"doc": "the built-in prompt: zh (the contest's) or en"})
    system: str | None = field(default=None, metadata={
        "doc": "replaces the template's system prompt; an empty text drops the system message"})
    user: str | None = field(default=None, metadata={
        "doc": "replaces the template's user message, with {question}, {options} and optionally {letters}"})

    def problems(self) -> list[str]:
        found = []
        if self.template not in TEMPLATES:
            found.append(f"prompt.template: {self.template!r} is not one of {sorted(TEMPLATES)}")
        if self.user is not None:
            names = {name for _, name, _, _ in string.Formatter().parse(self.user) if name is not None}
            if unknown := names - PLACEHOLDERS:
                found.append(f"prompt.user: unknown placeholder(s) {sorted(unknown)}; "
                             f"use {{question}}, {{options}} and {{letters}}")
            if missing := {"question", "options"} - names:
                found.append(f"prompt.user: the template must contain {', '.join('{' + m + '}' for m in sorted(missing))}")
        return found


def build_messages(question: Question, config: PromptConfig | None = None) -> list[dict[str, str]]:
    """The system and user chat messages for one question.

    >>> q = Question("1", "1+1等于几？", {"A": "1", "B": "2"}, "B")
    >>> print(build_messages(q)[1]["content"])
    请回答以下选择题。你的回答必须仅以单个字母（A或B）开头。
    问题：1+1等于几？
    选项：
    A. 1
    B. 2
    >>> build_messages(q, PromptConfig("en", system=""))[0]["content"][:28]
    'Answer the following multipl'
    """
    config = config or PromptConfig()
    template = TEMPLATES[config.template]
    system = template["system"] if config.system is None else config.system
    user = template["user"] if config.user is None else config.user
    letters = list(question.options)
    zh = config.template == "zh"
    joined = _join_letters(letters, "、", "或") if zh else _join_letters(letters, ", ", " or ")
    content = user.format(
        question=question.question,
        options="\n".join(f"{letter}. {text}" for letter, text in question.options.items()),
        letters=joined,
    )
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": content}]


def render_prompt(tokenizer, question: Question, config: PromptConfig | None = None) -> str:
    """The text the model sees before it answers: the chat template with the assistant turn opened."""
    return tokenizer.apply_chat_template(build_messages(question, config), tokenize=False,
                                         add_generation_prompt=True)


def shorten_middle(text: str, keep: int) -> str:
    """``text`` with all but ``keep`` of its characters cut from the middle, the cut marked by an ellipsis: the
    start of a question says what it is about, and its end often holds the actual question.

    >>> shorten_middle("abcdefghij", 4), shorten_middle("abcdefghij", 0), shorten_middle("abc", 3)
    ('ab…ij', '…', 'abc')
    """
    if len(text) <= keep:
        return text
    head = (keep + 1) // 2
    return text[:head] + "…" + text[len(text) - (keep - head):]


def fit_question(tokenizer, question: Question, max_tokens: int, config: PromptConfig | None = None
                 ) -> Question | None:
    """``question`` shortened from the middle until its prompt takes at most ``max_tokens`` tokens: the question
    text first, then, if even a question cut to nothing is too long, every option alike. The options and the
    answer cue at the prompt's end stay whole whenever the question text alone can make room. None when the
    prompt does not fit even with everything cut."""

    def fits(q: Question) -> bool:
        text = render_prompt(tokenizer, q, config)
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]) <= max_tokens

    def cut_question(keep: int) -> Question:
        return replace(question, question=shorten_middle(question.question, keep))

    def cut_options(keep: int) -> Question:
        return replace(cut_question(0), options={x: shorten_middle(t, keep) for x, t in question.options.items()})

    if fits(question):
        return question
    if (keep := _most_that_fits(lambda k: fits(cut_question(k)), len(question.question))) is not None:
        return cut_question(keep)
    longest = max(map(len, question.options.values()), default=0)
    if (keep := _most_that_fits(lambda k: fits(cut_options(k)), longest)) is not None:
        return cut_options(keep)
    return None


def _most_that_fits(fits, most: int) -> int | None:
    """The largest k in 0..most with ``fits(k)`` (assumed to hold up to some k and fail beyond), or None.

    >>> _most_that_fits(lambda k: k <= 37, 100), _most_that_fits(lambda k: False, 100)
    (37, None)
    """
    if not fits(0):
        return None
    low, high = 0, most
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def _join_letters(letters: list[str], separator: str, last: str) -> str:
    """
    >>> _join_letters(list("ABCD"), "、", "或"), _join_letters(list("AB"), ", ", " or ")
    ('A、B、C或D', 'A or B')
    """
    return separator.join(letters[:-1]) + last + letters[-1]


def end_of_turn(tokenizer) -> str | None:
    """The special token the tokenizer's chat template closes an assistant turn with (``<|im_end|>`` for
    ChatML, ``<|eot_id|>`` for Llama 3), or None when the template writes none after a reply."""
    from jinja2 import TemplateError

    marker = "MCQ-UNSLOTH-REPLY"
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "?"}, {"role": "assistant", "content": marker}],
                                             tokenize=False)
    except (ValueError, TemplateError):  # no template, or one that cannot render a reply
        return None
    _, found, after = text.partition(marker)
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    ids = tokenizer.encode(after, add_special_tokens=False) if found else []
    return next((tokenizer.convert_ids_to_tokens(i) for i in ids if i in special), None)
