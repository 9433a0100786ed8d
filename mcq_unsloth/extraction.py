"""Reading the chosen letter out of a model's free-text answer, the way a careful reader would.

In order of trust: the last explicit answer (答案：B, 故选C, The answer is D, \\boxed{A}, 第二个选项...), so a
later correction overrides earlier mentions; then a reply that is a single letter; then a letter the reply
starts with; then a single bracketed or free-standing letter; then, when the options are known, the one option
whose text the reply quotes. Lower-case letters count where nothing else is meant: a reply that is only the
letter (``b``) and a letter right after an answer marker (``答案：b``, ``Answer: c``), but not the English words
"a" and "I" (``The answer is a matter of opinion``). Think blocks are ignored, negated letters (不是A, not B)
never count, and refusals or letters outside the choices give None. Bad output never raises.
"""

from __future__ import annotations

import re
import unicodedata

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S | re.I)
_TRADITIONAL = str.maketrans("選項確應該為擇個", "选项确应该为择个")
_ORDINALS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5}

_L = r"([A-J])(?![A-Za-z])"  # one letter, not the start of a word
# After an answer marker, lower case too: "a" and "i" only when no word follows (else the article, the pronoun),
# the others unless they open an abbreviation ("e.g.").
_LX = r"([A-J]|[ai](?!\s*[A-Za-z])|[b-hj](?!\.[A-Za-z]))(?![A-Za-z])"
# Explicit answer statements; the text is NFKC-normalised (full-width forms become ASCII) beforehand.
_EXPLICIT = [
    re.compile(r"\\boxed\{\s*(?:\\text\{)?\s*" + _LX),
    re.compile(r"(?:正确答案|最终答案|答案|答)\s*(?:应该|应当|应)?\s*(?:是|为|选)?\s*[:：]?\s*(?:选项)?\s*[(\[【{<《]?\s*\**" + _LX),
    re.compile(r"(?:故|所以|因此|因而|我|应|应该|应当|只能)\s*(?:选择|选)\s*(?:选项)?\s*[(\[【]?\s*" + _LX),
    re.compile(r"(?:^|[^不未])(?:选择|选)\s*[(\[【]?\s*" + _LX + r"\s*(?:项|选项|[。.!！]|$)"),
    re.compile(r"(?:应该是|应当是|应是|应为)\s*(?:选项)?\s*[(\[【]?\s*" + _LX),
    re.compile(r"正确(?:的)?(?:选项|答案)?\s*(?:是|为)\s*[:：]?\s*(?:选项)?\s*[(\[【]?\s*" + _LX),
    re.compile(r"(?:选项|答案)\s*" + _LX + r"\s*(?:是|为)?\s*(?:正确|对)(?!吗)"),
    re.compile(r"(?i:(?:the\s+)?(?:correct\s+|final\s+|best\s+)?(?:answer|option|choice)\s*(?:is|would be|should be"
               r"|:|=)\s*(?:option\s+|choice\s+)?[(\[]?\s*\**)" + _LX),
    re.compile(r"(?i:\b(?:I\s+(?:would\s+)?(?:choose|pick|select|go\s+with))\s+(?:option\s+)?[(\[]?)" + _LX),
]
_ORDINAL = re.compile(r"(?:第\s*([一二三四五六1-6])\s*(?:个)?\s*(?:选项|项|个)|选项\s*([1-6])(?![0-9]))")
_NEGATED = re.compile(r"(?:不是|不选|并非|排除|而非|不应选|不对的是|错误的是|(?i:not|isn't|is not)\s+(?:option\s+)?)"
                      r"\s*(?:选项)?\s*[(\[【]?\s*$")
_LEADING = re.compile(r"^\W*?(?:\*\*)?[(\[【]?\s*" + _L + r"\s*(?:[)\]】.、:：,，\s*]|$)")
_BRACKETED = re.compile(r"[(\[【（]\s*" + _L + r"\s*[)\]】）]")
_ONLY_LETTER = re.compile(r"^\W*([a-j])\W*$")
_STANDALONE = re.compile(r"(?<![A-Za-z])([A-J])(?![A-Za-z])")
_REFUSAL = re.compile(r"无法(?:回答|作答|确定|判断|选择)|不能(?:回答|作答|确定)|拒绝回答|不便回答|"
                      r"(?i:I\s+(?:cannot|can't|can not|won't|am unable to)\s+(?:answer|choose|select|determine))")


def extract_answer(text: str | None, options: dict[str, str] | None = None) -> str | None:
    """The letter a reply chooses, or None.

    >>> extract_answer("答案：B")
    'B'
    >>> extract_answer("不是A，应该是D")
    'D'
    >>> extract_answer("A possible answer is C")
    'C'
    >>> extract_answer("北京是中国的首都。", {"A": "上海", "B": "北京"})
    'B'
    >>> extract_answer("抱歉，我无法回答这个问题。") is None
    True
    """
    if not isinstance(text, str) or not text.strip():
        return None
    letters = set(options) if options else set("ABCD")
    text = _THINK.sub(" ", unicodedata.normalize("NFKC", text)).translate(_TRADITIONAL)
    explicit = _last_explicit(text, letters)
    if explicit is not None:
        return explicit if explicit in letters else None
    if _REFUSAL.search(text):
        return None
    if only := _ONLY_LETTER.match(text):
        return only.group(1).upper() if only.group(1).upper() in letters else None
    leading = _LEADING.match(text)
    if leading and not _is_article(text, leading):
        return leading.group(1) if leading.group(1) in letters else None
    for pattern in (_BRACKETED, _STANDALONE):
        found = {m.group(1) for m in pattern.finditer(text) if not _negated(text, m.start(1))
                 and not _is_article(text, m) and (pattern is _BRACKETED or m.group(1) in letters)}
        if len(found) == 1:
            letter = found.pop()
            return letter if letter in letters else None
        if found:
            return None
    return _quoted_option(text, options) if options else None


def _last_explicit(text: str, letters: set[str]) -> str | None:
    """The letter of the explicit answer statement that comes last in the text."""
    best: tuple[int, str] | None = None
    for pattern in _EXPLICIT:
        for match in pattern.finditer(text):
            if not _negated(text, match.start()) and (best is None or match.start(1) > best[0]):
                best = (match.start(1), match.group(1).upper())
    for match in _ORDINAL.finditer(text):
        index = _ORDINALS[match.group(1) or match.group(2)]
        if not _negated(text, match.start()) and (best is None or match.start() > best[0]):
            best = (match.start(), "ABCDEF"[index])
    return best[1] if best else None


def _negated(text: str, position: int) -> bool:
    return bool(_NEGATED.search(text[max(0, position - 12):position]))


def _is_article(text: str, match: re.Match) -> bool:
    """English "A"/"I" used as a word: "A possible answer", "I think"."""
    letter, end = match.group(1), match.end(1)
    return letter in "AI" and re.match(r"\s+[a-z]", text[end:end + 2]) is not None


def _quoted_option(text: str, options: dict[str, str]) -> str | None:
    """The one option whose text the reply contains (the longest, when one option's text contains another's)."""
    quoted = [letter for letter, option in options.items() if option and option in text]
    quoted = [x for x in quoted if not any(x != y and options[x] in options[y] for y in quoted)]
    return quoted[0] if len(quoted) == 1 else None
