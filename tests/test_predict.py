"""predict and eval: submission files, resume after a crash, generation equal batched or not, circular
evaluation, automatic batch size."""

import csv
import json

import pytest
from click.testing import CliRunner

from mcq_unsloth.inference.transformers_model import TransformersModel
from mcq_unsloth import Question
from mcq_unsloth.cli.main import main
from mcq_unsloth.data.questions import write_questions
from mcq_unsloth.inference.scoring import generate_answers
from mcq_unsloth.model.backends import load_model
from mcq_unsloth.inference.answering import PredictSettings, _rotations, _unrotate, metrics
from mcq_unsloth.inference.files import answered, predict_file, record_path
from mcq_unsloth.data.synthetic import synth_questions


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir), backend="hf", load_in_4bit=False, dtype="float32")


def rows(path):
    with open(path, encoding="utf-8", newline="") as source:
        return list(csv.reader(source))


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_predict_writes_a_submission_and_refuses_to_overwrite(tmp_path, tiny_model_dir):
    data = tmp_path / "test.csv"
    write_questions([Question(q.id, q.question, q.options) for q in synth_questions(10, seed=4)], data)  # no answers
    out = tmp_path / "sub.csv"
    result = run("predict", "--model", tiny_model_dir, "--data", data, "--out", out, "--no-4bit", "--backend", "hf",
                 "--id-column", "ID", "--answer-column", "Answer")
    assert result.exit_code == 0, result.output
    table = rows(out)
    assert table[0] == ["ID", "Answer"] and len(table) == 11 and all(a in "ABCD" and a for _, a in table[1:])
    assert json.loads(result.stdout.strip().splitlines()[-1])["answered"] == 10
    again = run("predict", "--model", tiny_model_dir, "--data", data, "--out", out)
    assert again.exit_code == 2 and "--resume" in again.output


def test_an_adapter_whose_base_moved_predicts_with_base(tmp_path, tiny_model_dir, backend):
    """Trained where the base was at one path, predicted where it is at another: --base names the new place,
    and the answers are the adapter's (equal to those with the adapter's config pointing there)."""
    import shutil

    from peft import LoraConfig
    from peft import get_peft_model

    base = load_model(str(tiny_model_dir), backend="hf", load_in_4bit=False).model
    adapter = tmp_path / "adapter"
    get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
                   ).save_pretrained(adapter)
    moved = tmp_path / "adapter-moved"
    shutil.copytree(adapter, moved)
    config = json.loads((moved / "adapter_config.json").read_text())
    (moved / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "/gone/base"}))
    data = tmp_path / "q.csv"
    write_questions(synth_questions(6, seed=9), data)
    common = ["--data", data, "--backend", backend, "--no-4bit", "--raw"]
    lost = run("predict", "--model", moved, *common, tmp_path / "r0.jsonl", "--out", tmp_path / "lost.csv")
    assert lost.exit_code == 2 and "--base PATH" in lost.output
    rebased = run("predict", "--model", moved, "--base", tiny_model_dir, *common, tmp_path / "r1.jsonl",
                  "--out", tmp_path / "rebased.csv")
    assert rebased.exit_code == 0, rebased.output
    original = run("predict", "--model", adapter, *common, tmp_path / "r2.jsonl", "--out", tmp_path / "original.csv")
    assert original.exit_code == 0, original.output
    assert (tmp_path / "r1.jsonl").read_text() == (tmp_path / "r2.jsonl").read_text()
    alone = run("predict", "--model", tiny_model_dir, *common, tmp_path / "r3.jsonl", "--out", tmp_path / "base.csv")
    assert alone.exit_code == 0 and (tmp_path / "r3.jsonl").read_text() != (tmp_path / "r1.jsonl").read_text()
    assert json.loads((moved / "adapter_config.json").read_text())["base_model_name_or_path"] == "/gone/base"
    not_adapter = run("predict", "--model", tiny_model_dir, "--base", tiny_model_dir, "--data", data, "--out",
                      tmp_path / "x.csv", "--backend", "hf")
    assert not_adapter.exit_code == 2 and "not an adapter" in not_adapter.output


def test_resume_after_a_crash_finishes_with_the_same_answers(tmp_path, tiny):
    questions = synth_questions(12, seed=8)
    settings = PredictSettings(batch_size=4)
    full, partial = tmp_path / "full.csv", tmp_path / "partial.csv"
    predict_file(TransformersModel(tiny.model, tiny.tokenizer), questions, full, settings, progress=False)
    lines = full.read_text().splitlines(keepends=True)
    partial.write_text("".join(lines[:6]) + lines[6][:5])  # five answers and a line cut mid-write
    record_path(partial).write_bytes(record_path(full).read_bytes())  # written before the first answer
    assert len(answered(partial, settings, {q.id for q in questions})) == 5 and partial.read_text().endswith("\n")
    result = predict_file(TransformersModel(tiny.model, tiny.tokenizer), questions, partial, settings, resume=True, progress=False)
    assert (result["answered"], result["skipped"]) == (7, 5)
    assert sorted(rows(partial)[1:]) == sorted(rows(full)[1:])


def test_generation_batched_equals_one_at_a_time(tiny):
    questions = synth_questions(6, seed=3, kinds=["lookup", "count", "match"])
    questions.append(Question("long", "这是一个特别长的问题，" * 8, {"A": "甲", "B": "乙"}, "A"))
    together = generate_answers(tiny.model, tiny.tokenizer, questions, batch_size=7, max_new_tokens=6)
    for q, batched in zip(questions, together):
        (alone,) = generate_answers(tiny.model, tiny.tokenizer, [q], batch_size=1, max_new_tokens=6)
        assert batched.id == q.id and batched.text == alone.text and batched.prediction == alone.prediction


def test_rotations_and_mapping_back():
    q = Question("1", "q", {"A": "w", "B": "x", "C": "y", "D": "z"}, "C")
    rotated = _rotations(q)
    assert [r.options["A"] for r in rotated] == ["w", "x", "y", "z"]
    for k, r in enumerate(rotated):
        assert r.options[r.answer] == "y"                        # the right option moves with the rotation
        assert _unrotate(q, k, r.answer) == "C"                   # and maps back to the original letter


def test_circular_scoring_votes_over_rotations_scored_like_single_questions(tmp_path, tiny):
    """Score mode with --circular: every rotation's probabilities equal scoring that rotation on its own (the
    file-wide cached prompt start included), and the vote maps back to the original letters."""
    from mcq_unsloth.inference.scoring import score_questions

    questions = synth_questions(5, seed=6) + [Question("two", "哪个是甲？", {"A": "乙", "B": "甲"}, "B")]
    raw = tmp_path / "raw.jsonl"
    settings = PredictSettings(batch_size=8, circular=True, raw=raw)
    predict_file(TransformersModel(tiny.model, tiny.tokenizer), questions, tmp_path / "sub.csv", settings, progress=False)
    records = [json.loads(line) for line in raw.read_text().splitlines()]
    assert [r["id"] for r in records] == [q.id for q in questions]
    for q, record in zip(questions, records):
        rotations = _rotations(q)
        assert len(record["details"]) == len(rotations) == len(q.options)
        for rotation, detail in zip(rotations, record["details"]):
            (alone,) = score_questions(tiny.model, tiny.tokenizer, [rotation], batch_size=1)
            assert detail["probabilities"] == pytest.approx(alone.probabilities, abs=1e-5)
        assert record["prediction"] in q.options


def test_circular_metrics_expose_position_bias():
    questions = [Question(str(i), "q", dict(zip("ABCD", "wxyz")), "ABCD"[i % 4]) for i in range(8)]
    always_a = {q.id: ["A", "A", "A", "A"] for q in questions}     # picks the first position whatever it holds
    by_content = {q.id: [r.answer for r in _rotations(q)] for q in questions}  # always the right text
    biased = metrics(questions, {q.id: "A" for q in questions}, always_a)
    assert biased["circular_accuracy"] == 0.0 and biased["position_bias"] == {"A": 1.0, "B": 0.0, "C": 0.0, "D": 0.0}
    fair = metrics(questions, {q.id: q.answer for q in questions}, by_content)
    assert fair["circular_accuracy"] == 1.0 and fair["position_bias"] == {"A": 0.25, "B": 0.25, "C": 0.25, "D": 0.25}


def test_eval_writes_metrics_and_confusion(tmp_path, tiny_model_dir):
    data = tmp_path / "dev.csv"
    write_questions(synth_questions(8, seed=2), data)
    out = tmp_path / "eval"
    result = run("eval", "--model", tiny_model_dir, "--data", data, "--out-dir", out, "--no-4bit", "--backend", "hf",
                 "--mode", "generate", "--max-new-tokens", "3", "--circular", "--batch-size", "8")
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "unparseable", "predicted", "gold", "confusion", "questions_per_second", "seconds",
            "circular_accuracy", "position_bias"} <= set(saved)
    assert saved["questions"] == 8 and sum(sum(r.values()) for r in saved["confusion"].values()) == 8
    assert (out / "confusion.png").stat().st_size > 5_000
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 8


@pytest.mark.parametrize("name", ["mcq_zh.csv", "reasoning_zh.tsv"])
def test_eval_on_the_shipped_data(tmp_path, tiny_model_dir, name):
    """The shipped Chinese files end to end: every question answered, in both the metrics and the predictions."""
    from mcq_unsloth import load_questions
    from mcq_unsloth.resources import shipped_dir

    data = shipped_dir("data") / name
    out = tmp_path / "eval"
    result = run("eval", "--model", tiny_model_dir, "--data", data, "--out-dir", out, "--no-4bit", "--backend", "hf")
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "metrics.json").read_text())
    questions = load_questions(data)
    assert saved["questions"] == len(questions) > 100 and saved["unparseable"] == 0
    assert sorted(row[0] for row in rows(out / "predictions.csv")[1:]) == sorted(q.id for q in questions)


def test_eval_needs_answers(tmp_path, tiny_model_dir):
    data = tmp_path / "test.csv"
    write_questions([Question("1", "q", {"A": "x", "B": "y"})], data)
    result = run("eval", "--model", tiny_model_dir, "--data", data, "--out-dir", tmp_path / "e", "--backend", "hf")
    assert result.exit_code == 2 and "use predict" in result.output


def test_out_of_memory_halves_the_batch_and_keeps_finished_work(tmp_path, tiny, monkeypatch):
    import torch

    import mcq_unsloth.inference.scoring as inference

    real, calls = inference.score_questions, []

    def flaky(model, tokenizer, questions, prompt, batch_size, prefix):
        calls.append((len(questions), batch_size))
        if len(calls) == 2:  # the second batch runs out of memory once
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(model, tokenizer, questions, prompt, batch_size, prefix)

    monkeypatch.setattr("mcq_unsloth.inference.transformers_model.score_questions", flaky)
    out = tmp_path / "sub.csv"
    result = predict_file(TransformersModel(tiny.model, tiny.tokenizer), synth_questions(10, seed=1), out, PredictSettings(batch_size=4),
                          progress=False)
    assert calls[:3] == [(4, 4), (4, 4), (2, 2)] and result["batch_size"] == 2
    assert len(rows(out)) == 11
