"""GRPO rewards on tables of completions, with TRL's calling convention."""

import pytest

from mcq_unsloth.rewards import REWARDS, contest_format, correct, format, neutral

# The contest's markers, one behaviour per row: (completion, reward)
CONTEST = [
    ("我不确定。", 0.5),                                # the base
    ("答案：", 0.8),                                     # answer marker alone (no letter)
    ("Answer: unknown", 0.8),                            # English answer marker, no letter A-D
    ("理由：史料不足", 0.7),                               # reasoning marker alone
    ("因为资料有限", 0.7),                                 # 因为 counts as a reasoning marker
    ("根据记载如此", 0.7),                                 # 根据 too
    ("C", 0.7),                                          # an extractable letter lifts the floor to 0.7
    ("答案：B", 0.8),                                    # marker and letter
    ("答案：B\n理由：因为史料记载", 1.0),                    # everything: capped at 1.0
    ("B 理由：因为", 0.7),                                 # letter + reasoning: 0.7, not more
]


@pytest.mark.parametrize("completion,expected", CONTEST)
def test_contest_format_reproduces_the_contest_reward(completion, expected):
    assert contest_format([completion]) == [expected]


def test_contest_format_rewards_wrong_answers_fully():
    """Why `correct` exists: the contest's reward is maxed by a confidently wrong reply."""
    reply = ["答案：A\n理由：因为根据史料记载。"]
    assert contest_format(reply) == [1.0] and correct(reply, answer=["B"]) == [0.0]


CORRECT = [
    ("答案：B", "B", None, 1.0),                          # explicit marker
    ("B", "B", None, 1.0),                                # bare letter
    ("不是A，应该是B", "B", None, 1.0),                     # correction counts
    ("答案：A", "B", None, 0.0),                          # wrong letter
    ("我无法回答", "B", None, 0.0),                         # refusal
    ("北京", "B", {"A": "上海", "B": "北京"}, 1.0),          # the option's text, with the options column
]


@pytest.mark.parametrize("completion,gold,options,expected", CORRECT)
def test_correct(completion, gold, options, expected):
    assert correct([completion], answer=[gold], options=[options]) == [expected]


FORMAT = [
    ("B\n理由：北京是首都。", 1.0),                          # letter first and a reasoning line
    ("答案：B\n理由：根据记载。", 1.0),                       # answer line first
    ("答案：B", 0.5),                                     # no reasoning
    ("理由：北京是首都。\n答案：B", 0.5),                     # reasoning before the answer: answer not first
    ("B\n理由：是", 0.5),                                  # reasoning too short
    ("B\n理由：" + "很长" * 150, 0.5),                       # reasoning too long
    ("嗯", 0.0),                                          # neither
]


@pytest.mark.parametrize("completion,expected", FORMAT)
def test_format(completion, expected):
    assert format([completion]) == [expected]


NEUTRAL = [
    ("答案：B\n理由：北京是首都。", 0.8),                       # plain statement: the base
    ("理由：一方面史料记载如此，另一方面也有观点认为不同。", 1.0),   # weighs sides
    ("理由：根据统计数据，……", 1.0),                           # cites evidence
    ("理由：这是绝对正确的。", 0.6),                            # one absolute verdict
    ("理由：这种人都是走狗。", 0.4),                            # an insult
    ("理由：毫无疑问，他们是邪恶的卖国贼！！", 0.0),               # several, and exclamations: clamped at 0
    ("理由：十二生肖里有狗。", 0.8),                            # everyday words are not insults
]


@pytest.mark.parametrize("completion,expected", NEUTRAL)
def test_neutral(completion, expected):
    assert neutral([completion]) == [expected]


def test_conversational_completions_and_trl_keywords():
    """TRL passes chat-format completions and every dataset column as keyword lists."""
    completions = [[{"role": "assistant", "content": "答案：B\n理由：根据记载。"}]]
    columns = {"answer": ["B"], "options": [{"A": "x", "B": "y"}], "prompt": [[]], "completion_ids": [[1]]}
    assert {name: fn(completions, **columns) for name, fn in REWARDS.items()} == {
        "contest_format": [1.0], "correct": [1.0], "format": [1.0], "neutral": [1.0]}
