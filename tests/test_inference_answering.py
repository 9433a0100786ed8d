"""Questions longer than the model's context (:mod:`mcq_unsloth.inference.answering`): shortened from the middle
of their text and named in one warning, or with ``--on-long error`` refused before anything is written."""

import json

import pytest

from mcq_unsloth import Question
from mcq_unsloth.data.questions import write_questions
from mcq_unsloth.data.synthetic import synth_questions

from helpers import error_line, run

FAST = ["--backend", "hf", "--no-4bit", "--batch-size", "4"]


@pytest.fixture
def long_csv(tmp_path):
    data = tmp_path / "long.csv"
    short = synth_questions(3, seed=5)
    huge = Question("huge", "开头" + "很长的题干。" * 2000 + "问题在最后？", {x: f"选项{x}" * 2500 for x in "ABCD"}, "C")
    write_questions([short[0], huge, short[1], short[2]], data)
    return data


def huge_tokens(tokenizer, data):
    from mcq_unsloth import load_questions
    from mcq_unsloth.inference.scoring import prompt_token_ids

    return len(prompt_token_ids(tokenizer, [load_questions(data)[1]])[0])


@pytest.mark.parametrize("mode", ["score", "generate"])
def test_an_over_long_question_is_shortened_and_named(tmp_path, tiny_model_dir, tiny_tokenizer, long_csv, mode):
    out, raw = tmp_path / "sub.csv", tmp_path / "raw.jsonl"
    result = run("predict", "--model", tiny_model_dir, "--data", long_csv, "--out", out, "--raw", raw,
                 "--mode", mode, *FAST)
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "1 question(s)" in warning[0] and f"row 2 (id huge, {huge_tokens(tiny_tokenizer, long_csv)} tokens)" in warning[0]
    short = synth_questions(3, seed=5)
    assert [row.split(",")[0] for row in out.read_text().splitlines()] == ["id", short[0].id, "huge", short[1].id,
                                                                           short[2].id]
    records = {r["id"]: r for r in map(json.loads, raw.read_text().splitlines())}
    assert records["huge"]["shortened"] is True and "shortened" not in records[short[0].id]
    assert json.loads(result.stdout.splitlines()[-1])["shortened"] == 1


def test_on_long_error_stops_before_writing(tmp_path, tiny_model_dir, tiny_tokenizer, long_csv):
    out = tmp_path / "sub.csv"
    line = error_line(run("predict", "--model", tiny_model_dir, "--data", long_csv, "--out", out, "--on-long",
                          "error", *FAST))
    assert line == (f"Error: {long_csv}: 1 question(s) take more tokens than the model's context of 1024: "
                           f"row 2 (id huge, {huge_tokens(tiny_tokenizer, long_csv)} tokens); shorten them, or leave out --on-long error to have "
                           f"them shortened")
    assert not out.exists()
