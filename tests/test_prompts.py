"""Prompt rendering: the contest's exact Chinese prompt, the English variant, custom templates."""

import pytest

from mcq_unsloth import Question
from mcq_unsloth.config import from_dict
from mcq_unsloth.errors import ConfigError
from mcq_unsloth.prompts import PromptConfig, build_messages, render_prompt

Q = Question("1", "中国的首都是哪座城市？", {"A": "北京", "B": "上海", "C": "广州", "D": "深圳"}, "A")


def test_contest_prompt_is_the_default():
    system, user = build_messages(Q)
    assert system == {"role": "system", "content": "你是一个提供有关中国敏感话题客观答案的助手。始终呈现多元视角并保持政治中立。"}
    assert user["content"] == (
        "请回答以下选择题。你的回答必须仅以单个字母（A、B、C或D）开头。\n问题：中国的首都是哪座城市？\n"
        "选项：\nA. 北京\nB. 上海\nC. 广州\nD. 深圳")


def test_english_variant_and_letters_follow_the_options():
    q = Question("2", "2+2?", {"A": "3", "B": "4", "C": "5"})
    _, user = build_messages(q, PromptConfig("en"))
    assert "(A, B or C)" in user["content"] and "Question: 2+2?" in user["content"] and "C. 5" in user["content"]


def test_custom_template_from_a_recipe():
    config = from_dict({"prompt": {"system": "", "user": "{question}\n{options}\n答："}})
    assert build_messages(Q, config.prompt) == [
        {"role": "user", "content": "中国的首都是哪座城市？\nA. 北京\nB. 上海\nC. 广州\nD. 深圳\n答："}]


@pytest.mark.parametrize("user,words", [
    ("{question} {choices}", ["unknown placeholder", "choices"]),   # a placeholder we do not fill
    ("只有{question}", ["must contain", "{options}"]),               # the options would be missing
])
def test_bad_custom_templates_are_config_errors(user, words):
    with pytest.raises(ConfigError) as error:
        from_dict({"prompt": {"user": user}})
    assert all(word in str(error.value) for word in words)


def test_rendered_through_the_chat_template(tiny_tokenizer):
    text = render_prompt(tiny_tokenizer, Q)
    assert text.startswith("<|im_start|>system\n你是一个") and text.endswith("<|im_start|>assistant\n")


# --- a question too long for the context -----------------------------------------------------------------------------

def test_a_shortened_prompt_fits_and_keeps_both_ends(tiny_tokenizer):
    from mcq_unsloth.prompts import fit_question, render_prompt

    question = Question("q", "开头" + "很长的题干。" * 2000 + "问题在最后？", {"A": "甲", "B": "乙"})
    fitted = fit_question(tiny_tokenizer, question, 300)
    tokens = len(tiny_tokenizer(render_prompt(tiny_tokenizer, fitted), add_special_tokens=False)["input_ids"])
    assert 250 < tokens <= 300
    assert fitted.question.startswith("开头") and fitted.question.endswith("问题在最后？") and "…" in fitted.question
    assert fitted.options == question.options
    options_too = Question("o", "题", {"A": "甲" * 5000, "B": "乙" * 5000})
    cut = fit_question(tiny_tokenizer, options_too, 300)
    assert cut.question == "…" and all(len(t) < 1000 and "…" in t for t in cut.options.values())
    assert fit_question(tiny_tokenizer, question, 5) is None  # not even the template fits
