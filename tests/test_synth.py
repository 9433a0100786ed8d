"""Synthetic questions: balanced, reproducible, and right by their own rules."""

from collections import Counter

import pytest

from mcq_unsloth.data.synthetic import CAPITALS, KINDS, NUMERALS, synth_questions


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_is_balanced_and_seeded(kind):
    questions = synth_questions(40, seed=5, kinds=[kind])
    assert Counter(q.answer for q in questions) == {"A": 10, "B": 10, "C": 10, "D": 10}
    assert synth_questions(40, seed=5, kinds=[kind]) == questions
    assert synth_questions(40, seed=6, kinds=[kind]) != questions
    assert all(len(set(q.options.values())) == 4 for q in questions)


def right(q):
    return q.options[q.answer]


def test_answers_follow_the_rules():
    capital = {country: city for group in CAPITALS for country, city in group}
    for q in synth_questions(60, seed=1, kinds=list(KINDS)):
        if "首都" in q.question:     # lookup: the capital of the country named
            country = next(c for c in capital if c in q.question)
            assert right(q) == capital[country]
        elif "几个" in q.question:   # count: how many times the character repeats
            char = q.question[-4]
            assert NUMERALS.index(right(q)) + 1 == q.question.count(char) - 1
        elif "加" in q.question:     # arith
            a, b = q.question.split("等")[0].split("加")
            assert int(right(q)) == int(a) + int(b)
        elif "最大" in q.question:   # compare
            assert int(right(q)) == max(map(int, q.options.values()))
        else:                        # match: the quoted word
            assert f"「{right(q)}」" in q.question


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown synthetic kind"):
        synth_questions(4, kinds=["riddle"])
