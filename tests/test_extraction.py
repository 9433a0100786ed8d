"""extract_answer: what a careful reader takes from a model's reply. One case per behaviour promised."""

import pytest

from mcq_unsloth import extract_answer

CAPITALS = {"A": "上海", "B": "北京", "C": "广州", "D": "深圳"}

CASES = [
    # (reply, options, expected)
    ("B", None, "B"),                                           # a bare letter
    ("b", None, "B"),                                           # a reply that is only a lower-case letter
    ("  d  ", None, "D"),                                       # ...with spaces around it
    ("(c).", None, "C"),                                        # ...in brackets, with a full stop
    ("a", None, "A"),                                           # ...even the article's letter, alone
    ("e", None, None),                                          # ...but not one outside the choices
    ("Answer: c", None, "C"),                                   # lower case after an English marker
    ("答案：b", None, "B"),                                      # lower case after a Chinese marker
    ("答案是ｄ。", None, "D"),                                     # full-width lower case after a marker
    ("The answer is b because the text says so.", None, "B"),   # a word after b, c, d: still the letter
    ("The answer is a.", None, "A"),                            # "a" after a marker with nothing after it
    ("The answer is a matter of opinion.", None, None),         # "a" followed by a word is the article
    ("I would go with a different reading.", None, None),       # the article after "go with"
    ("Option: e.g. the first one", None, None),                 # an abbreviation is not a letter
    ("b is wrong, a is wrong", None, None),                     # lower-case letters inside prose stay unread
    ("Ｃ", None, "C"),                                          # full-width letter
    ("D.", None, "D"),                                          # letter with a full stop
    ("C、北京", None, "C"),                                      # letter then the option text
    ("(A) 上海", None, "A"),                                     # parenthesised leading letter
    ("**B**", None, "B"),                                       # markdown bold
    ("答案：B", None, "B"),                                      # Chinese answer marker, full-width colon
    ("答案是C", None, "C"),                                      # 答案是
    ("正确答案为 D", None, "D"),                                  # 正确答案为
    ("答：A", None, "A"),                                        # 答：
    ("根据史料分析，故选C。", None, "C"),                            # 故选
    ("我选B。", None, "B"),                                      # 我选
    ("选D", None, "D"),                                          # bare 选
    ("The answer is B.", None, "B"),                            # English marker
    ("Answer: (D)", None, "D"),                                 # English marker with brackets
    ("The correct answer is option C because ...", None, "C"),  # option word between
    ("I would choose A.", None, "A"),                           # I would choose
    ("\\boxed{C}", None, "C"),                                  # LaTeX boxed
    ("最终答案：\\boxed{B}", None, "B"),                          # boxed after a marker
    ("（B）", None, "B"),                                        # full-width parentheses alone
    ("【D】", None, "D"),                                        # lenticular brackets
    ("正確答案是Ｃ", None, "C"),                                   # traditional characters, full-width letter
    ("答案應該是D", None, "D"),                                   # traditional 應該
    ("<think>也许是A，也可能是B</think>答案：C", None, "C"),          # think block ignored
    ("<think>嗯……答案：A</think>\n\nD", None, "D"),                # marker inside think ignored, reply after it
    ("<think>还在想，答案可能是A", None, None),                      # unfinished thinking: no answer
    ("答案是第二个选项", None, "B"),                                 # ordinal word
    ("我认为第三项正确", None, "C"),                                  # 第三项
    ("选项2是正确的", None, "B"),                                    # 选项 + digit
    ("不是A，应该是D", None, "D"),                                   # a later explicit answer overrides
    ("答案：A。不对，更正：答案是C", None, "C"),                        # correction: the last explicit answer wins
    ("A选项说法错误，B选项也错误，正确的是D", None, "D"),                 # mentions, then 正确的是
    ("A possible answer is C", None, "C"),                      # English article is not an answer
    ("A good case can be made for B.", None, "B"),              # article again, then a lone letter
    ("I think it is C.", None, "C"),                            # pronoun I is not a letter
    ("因为北京是首都，所以C", None, "C"),                             # lone letter after reasoning
    ("A和B都有可能", None, None),                                  # two letters, no decision
    ("抱歉，我无法回答这个问题。", None, None),                         # refusal
    ("I cannot answer questions about this topic.", None, None),   # English refusal
    ("答案：E", None, None),                                      # explicit letter outside the choices
    ("E", None, None),                                          # bare letter outside the choices
    ("答案：E", {"A": "1", "B": "2", "C": "3", "D": "4", "E": "5"}, "E"),  # E is fine with five options
    ("答案：D", {"A": "1", "B": "2", "C": "3"}, None),              # D is outside three options
    ("北京", CAPITALS, "B"),                                      # quotes an option's text
    ("中国的首都是北京。", CAPITALS, "B"),                            # option text inside a sentence
    ("上海和北京都是大城市", CAPITALS, None),                          # two options quoted: undecided
    ("10", {"A": "1", "B": "10", "C": "100", "D": "5"}, "B"),     # "10" contains option "1": the longer text wins
    ("1或5", {"A": "1", "B": "10", "C": "100", "D": "5"}, None),   # two separate options quoted
    ("答案是100", {"A": "1", "B": "10", "C": "100", "D": "5"}, "C"),  # ...but one whole option text wins
    ("", None, None),                                           # empty
    (None, None, None),                                         # not text at all
    ("   \n", None, None),                                      # whitespace
    ("这个问题涉及多方观点，各有依据。", None, None),                      # neutral text, no choice
]


@pytest.mark.parametrize("reply,options,expected", CASES, ids=[repr(c[0])[:40] for c in CASES])
def test_extract_answer(reply, options, expected):
    assert extract_answer(reply, options) == expected
