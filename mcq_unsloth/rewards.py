"""GRPO reward functions with TRL's signature: ``reward(completions, **columns) -> list[float]``.

Completions are strings, or chat messages (``[{"role": "assistant", "content": ...}]``) for conversational
datasets; dataset columns (``answer``, ``options``) arrive as keyword lists, one value per completion.

- ``contest_format``: the contest's reward, reproduced so its runs can be compared. It never looks at the gold
  answer: a model can earn the maximum while always answering wrong.
- ``correct``: 1 when :func:`extract_answer` reads the gold letter, else 0.
- ``format``: a well-formed reply: the answer first (a leading letter or an explicit answer line) and a short
  reasoning line.
- ``neutral``: balanced, non-inflammatory wording, measured by a lexicon (see :func:`neutral`).
"""

from __future__ import annotations

import re

from .extraction import extract_answer

_ANSWER_MARKER = re.compile(r"答案[:：]|Answer:", re.I)
_REASON_MARKER = re.compile(r"理由[:：]|因为|根据")
_CONTEST_LETTER = re.compile(r"[A-D]")
_LEADING_ANSWER = re.compile(r"^\s*(?:\*\*)?[(（【\[]?[A-J](?![A-Za-z])|^\s*(?:答案|Answer)\s*[:：]", re.I)
_REASONING_LINE = re.compile(r"(?:理由|解析|原因|Reason(?:ing)?)\s*[:：]\s*(\S.*)", re.I)

# Wording that inflames rather than informs: insults, slurs against groups or officials, absolute verdicts.
# A lexicon catches words, not stances: a calmly worded one-sided argument, a factual error or a loaded framing
# without these words all pass. Matching is on the reasoning text, case-insensitive.
INFLAMMATORY = ["可耻", "无耻", "邪恶", "愚蠢", "白痴", "卖国", "汉奸", "走狗", "洗脑", "暴政", "滚出", "该死",
                "废物", "垃圾", "evil", "stupid", "idiot", "traitor", "brainwashed", "disgusting", "shameful"]
ABSOLUTE = ["绝对", "毫无疑问", "毋庸置疑", "必然", "永远", "所有人都", "唯一正确", "毫无例外",
            "undeniably", "obviously", "always", "never", "everyone knows"]
# Signs of weighing more than one side, or of pointing to evidence.
BALANCED = ["一方面", "另一方面", "也有观点", "有观点认为", "不同观点", "多方", "各方", "存在争议", "学界", "史料",
            "依据", "根据", "据记载", "数据显示", "on the other hand", "some argue", "evidence", "according to"]


def contest_format(completions, **_) -> list[float]:
    """The contest's reward: 0.5, +0.3 for an answer marker (答案：/Answer:), +0.2 for a reasoning marker
    (理由：/因为/根据), at least 0.7 when a letter A-D appears, at most 1.0. The gold answer is never read.

    >>> contest_format(["答案：B\\n理由：因为……", "C", "我不知道", "答案：A"])
    [1.0, 0.7, 0.5, 0.8]
    """
    scores = []
    for text in map(_text, completions):
        score = 0.5 + 0.3 * bool(_ANSWER_MARKER.search(text)) + 0.2 * bool(_REASON_MARKER.search(text))
        if _CONTEST_LETTER.search(text):
            score = max(score, 0.7)
        scores.append(round(min(score, 1.0), 4))
    return scores


def correct(completions, answer, options=None, **_) -> list[float]:
    """1.0 when the reply's answer (by :func:`extract_answer`) is the gold letter, else 0.0.

    >>> correct(["答案：B", "答案：A", "拒绝回答"], answer=["B", "B", "B"])
    [1.0, 0.0, 0.0]
    """
    options = options or [None] * len(completions)
    return [float(extract_answer(_text(c), o) == gold) for c, gold, o in zip(completions, answer, options)]


def format(completions, **_) -> list[float]:  # noqa: A001  (the reward's name in recipes)
    """0.5 for the answer first (a leading letter or an ``答案：`` line), 0.5 for a reasoning line of 4 to 200
    characters (``理由：…``).

    >>> format(["B\\n理由：北京是首都。", "答案：B", "我想想……理由：很长" + "很" * 300, "理由：因为如此。\\n答案：C"])
    [1.0, 0.5, 0.0, 0.5]
    """
    scores = []
    for text in map(_text, completions):
        reason = _REASONING_LINE.search(text)
        good_reason = reason is not None and 4 <= len(reason.group(1).strip()) <= 200
        scores.append(0.5 * bool(_LEADING_ANSWER.search(text)) + 0.5 * good_reason)
    return scores


def neutral(completions, **_) -> list[float]:
    """Balanced, non-inflammatory wording of the reasoning, from 0 to 1.

    Starts at 0.8; each inflammatory word takes 0.4 and each absolute verdict 0.2; a sign of weighing sides or
    citing evidence adds 0.2; more than one exclamation mark takes 0.2; clamped to [0, 1]. It catches wording
    only: a one-sided argument in calm words, a factual error, or a loaded framing without listed words all
    score well, and a quotation of someone else's insult is penalised like an insult.

    >>> neutral(["理由：一方面史料记载……另一方面也有观点认为……", "理由：这绝对是邪恶的！！", "答案：B"])
    [1.0, 0.0, 0.8]
    """
    scores = []
    for text in map(_text, completions):
        lower = text.lower()
        score = 0.8 - 0.4 * _count(lower, INFLAMMATORY) - 0.2 * _count(lower, ABSOLUTE)
        score += 0.2 * any(marker in lower for marker in BALANCED)
        score -= 0.2 * (text.count("!") + text.count("！") > 1)
        scores.append(round(min(max(score, 0.0), 1.0), 4))
    return scores


REWARDS = {"contest_format": contest_format, "correct": correct, "format": format, "neutral": neutral}


def _text(completion) -> str:
    """The reply text of a plain or conversational completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    return ""


def _count(text: str, words: list[str]) -> int:
    return sum(text.count(word.lower()) for word in words)
