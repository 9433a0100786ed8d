"""Synthetic Chinese single-choice questions whose answers follow simple rules.

Each kind is a small generator told at which position the right option must go, so the answer letters are
balanced exactly over A-D (within one) and always answering the same letter scores 25%.

Two kinds list their options in a fixed, natural order, so the question alone decides the letter; a tiny
random model picks these up with LoRA on a CPU in about a minute:
- ``lookup``: a fixed table of capitals, asked in several phrasings; the options are the capitals of the
  country's group of four, always in the table's order;
- ``count``: how many times a character repeats, options 一 二 三 四 in order.
Held-out questions (``held_out=True``) use lookup phrasings and count characters that training questions
never use.
Three kinds shuffle their options, so the model must compare the question with the option texts; they need
a real (pretrained) model or far more training:
- ``match`` (which option is the quoted word), ``arith`` (one-digit addition), ``compare`` (the largest
  number).
The same seed always gives the same questions.
"""

from __future__ import annotations

import random
import re
from typing import Callable

from .questions import LETTERS, Question

WORDS = ["苹果", "香蕉", "西瓜", "葡萄", "老虎", "熊猫", "骆驼", "海豚", "钢琴", "小提琴", "长城", "黄河",
         "月亮", "太阳", "森林", "沙漠", "火车", "轮船", "飞机", "电脑", "书本", "铅笔", "茶叶", "丝绸"]
# Three groups of four; a lookup question offers the four capitals of its country's group, in this order.
CAPITALS = [
    [("中国", "北京"), ("日本", "东京"), ("韩国", "首尔"), ("泰国", "曼谷")],
    [("法国", "巴黎"), ("英国", "伦敦"), ("德国", "柏林"), ("意大利", "罗马")],
    [("俄罗斯", "莫斯科"), ("埃及", "开罗"), ("印度", "新德里"), ("美国", "华盛顿")],
]
# (training, held-out): held-out questions use phrasings and characters that training questions never do.
LOOKUP_PHRASINGS = (["{}的首都是哪座城市？", "哪座城市是{}的首都？", "{}的首都在哪里？"],
                    ["请问{}的首都叫什么？", "{}的首都是哪里？"])
CHARS = ("山水木火土日月", "人口天")
NUMERALS = "一二三四"

Generated = tuple[str, list[str]]  # the question and its four options, the right one at the asked position


def _lookup(rng: random.Random, position: int, held_out: bool) -> Generated:
    group = rng.choice(CAPITALS)
    country = group[position][0]
    return rng.choice(LOOKUP_PHRASINGS[held_out]).format(country), [capital for _, capital in group]


def _count(rng: random.Random, position: int, held_out: bool) -> Generated:
    char = rng.choice(CHARS[held_out])
    return f"「{char * (position + 1)}」中有几个「{char}」字？", list(NUMERALS)


def _match(rng: random.Random, position: int, held_out: bool) -> Generated:
    right, *wrong = rng.sample(WORDS, 4)
    return f"下列哪个选项是「{right}」？", wrong[:position] + [right] + wrong[position:]


def _arith(rng: random.Random, position: int, held_out: bool) -> Generated:
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    wrong = rng.sample([n for n in range(max(2, a + b - 5), a + b + 6) if n != a + b], 3)
    return f"{a}加{b}等于多少？", [str(n) for n in wrong[:position] + [a + b] + wrong[position:]]


def _compare(rng: random.Random, position: int, held_out: bool) -> Generated:
    numbers = rng.sample(range(1, 100), 4)
    right = max(numbers)
    wrong = [n for n in numbers if n != right]
    return "下列哪个数最大？", [str(n) for n in wrong[:position] + [right] + wrong[position:]]


KINDS: dict[str, Callable[[random.Random, int, bool], Generated]] = {
    "lookup": _lookup, "count": _count, "match": _match, "arith": _arith, "compare": _compare,
}
LEARNABLE_KINDS = ["lookup", "count"]


SOURCE = re.compile(r"^synth(-held-out)?:(\d+)$")


def parse_source(text: str) -> tuple[int, bool] | None:
    """``(n, held_out)`` for the data sources ``synth:N`` and ``synth-held-out:N``; None for any other text.

    >>> parse_source("synth:400"), parse_source("synth-held-out:50"), parse_source("train.csv")
    ((400, False), (50, True), None)
    """
    found = SOURCE.match(text)
    return (int(found.group(2)), bool(found.group(1))) if found else None


def source_problem(text: str) -> str | None:
    """What is wrong with a data source that begins like a synthetic one but is not ``synth:N`` or
    ``synth-held-out:N``; None when it is one, or is no such thing."""
    if text.startswith("synth") and parse_source(text) is None:
        return "write synth:N or synth-held-out:N, N a number of questions"
    return None


def synth_questions(n: int, seed: int = 0, kinds: list[str] | None = None, held_out: bool = False) -> list[Question]:
    """``n`` synthetic questions with four options, the kinds taking turns (default: the learnable ones).

    ``held_out`` questions ask ``lookup`` in other phrasings and ``count`` with other characters than
    training questions do, so a model that scores on them has learnt the rule, not the question texts.

    >>> qs = synth_questions(8, seed=1, kinds=["arith"])
    >>> sorted(q.answer for q in qs)
    ['A', 'A', 'B', 'B', 'C', 'C', 'D', 'D']
    >>> q = qs[0]; q.options[q.answer] == str(eval(q.question.replace("加", "+").split("等")[0]))
    True
    >>> q = synth_questions(1, seed=3, kinds=["count"])[0]; q.question, q.options[q.answer]
    ('「土土土土」中有几个「土」字？', '四')
    """
    kinds = list(kinds or LEARNABLE_KINDS)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown synthetic kind(s) {unknown}; choose from {', '.join(KINDS)}")
    rng = random.Random(seed)
    positions: list[int] = []
    questions = []
    for i in range(n):
        if not positions:  # each block of four puts the right option once at each position
            positions = rng.sample(range(4), 4)
        position = positions.pop()
        text, options = KINDS[kinds[i % len(kinds)]](rng, position, held_out)
        questions.append(Question(f"synth{'-held-out' if held_out else ''}-{seed}-{i + 1}", text, dict(zip(LETTERS, options)), LETTERS[position],
                                  row=i + 1))
    return questions
