"""Whole files of answers (:mod:`mcq_unsloth.inference.files`): a prediction killed before its first batch or
in the middle of one resumes to the uninterrupted file, an answer without its raw record is asked again, a
resume with other settings or columns is refused naming the difference, and an output that is the input is
refused. Kills are simulated by cut or empty files."""

import json
import shutil
from pathlib import Path

import pytest

from mcq_unsloth import load_questions
from mcq_unsloth.data.questions import Question, write_questions
from mcq_unsloth.data.synthetic import synth_questions
from mcq_unsloth.inference.files import record_path

from helpers import digest, error_line, ok, run

FAST = ["--backend", "hf", "--no-4bit", "--batch-size", "4"]


# --- a prediction killed before its first batch, or in the middle of one ---------------------------------------------

def test_predict_resumes_an_empty_output_to_the_uninterrupted_file(tmp_path, tiny_model_dir, questions_csv,
                                                                   reference):
    out = tmp_path / "sub.csv"
    out.write_text("")  # killed before its first write
    args = ["predict", "--model", tiny_model_dir, "--data", questions_csv, "--out", out, *FAST, "--resume"]
    first = run(*args)
    assert first.exit_code == 0, first.output
    assert out.read_text() == (reference / "predictions.csv").read_text()  # header included, each answer once
    second = run(*args)
    assert second.exit_code == 0 and json.loads(second.stdout.splitlines()[-1])["answered"] == 0
    assert out.read_text() == (reference / "predictions.csv").read_text()


def test_eval_resumes_empty_and_cut_files(tmp_path, tiny_model_dir, questions_csv, reference):
    out = tmp_path / "eval"
    out.mkdir()
    args = ["eval", "--model", tiny_model_dir, "--data", questions_csv, "--out-dir", out, *FAST, "--resume"]
    (out / "predictions.csv").write_text("")
    empty = run(*args)
    assert empty.exit_code == 0, empty.output
    assert (out / "predictions.csv").read_text() == (reference / "predictions.csv").read_text()

    # Killed mid-batch: the raw file got 8 records and part of a 9th, the answers file 5 and part of a 6th.
    answers = (reference / "predictions.csv").read_text().splitlines(keepends=True)
    records = (reference / "predictions.jsonl").read_text().splitlines(keepends=True)
    (out / "predictions.csv").write_text("".join(answers[:6]) + answers[6][:4])
    (out / "predictions.jsonl").write_text("".join(records[:8]) + records[8][:9])
    cut = run(*args)
    assert cut.exit_code == 0, cut.output
    assert (out / "predictions.csv").read_text() == (reference / "predictions.csv").read_text()
    resumed = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    original = [json.loads(line) for line in records]
    assert [r["id"] for r in resumed] == [r["id"] for r in original]
    assert [r["prediction"] for r in resumed] == [r["prediction"] for r in original]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["questions"] == 10 and metrics["accuracy"] == json.loads(
        (reference / "metrics.json").read_text())["accuracy"]


def test_an_answer_without_its_raw_record_is_asked_again(tmp_path):
    from mcq_unsloth.inference.answering import PredictSettings
    from mcq_unsloth.inference.files import answered, record_path

    out, raw = tmp_path / "a.csv", tmp_path / "a.jsonl"
    out.write_text("id,answer\nsynth-0,A\nsynth-1,B\nsynth-0,C\n")
    raw.write_text('{"id": "synth-1", "prediction": "B"}\n{"id": "synth-2", "prediction": "D"}\n')
    settings = PredictSettings(raw=raw)
    record_path(out).write_text(json.dumps(settings.record()))  # what predict writes before its first answer
    assert answered(out, settings, {f"synth-{i}" for i in range(3)}) == {"synth-1"}
    assert out.read_text() == "id,answer\nsynth-1,B\n"
    assert raw.read_text() == '{"id": "synth-1", "prediction": "B"}\n'


@pytest.mark.parametrize("odd_id, cut_inside", [
    ("a\u2028b", False),   # a line separator str.splitlines() would split the file on
    ("x\ny", True),        # a newline inside a quoted id, the file cut inside it
])
def test_predict_resumes_ids_with_line_breaks_to_the_uninterrupted_file(tmp_path, tiny_model_dir, odd_id,
                                                                         cut_inside):
    questions = synth_questions(6, seed=4)
    questions[3] = Question(odd_id, questions[3].question, questions[3].options, questions[3].answer)
    data = tmp_path / "q.jsonl"
    write_questions(questions, data)
    full, part = tmp_path / "full.csv", tmp_path / "part.csv"
    ok(run("predict", "--model", tiny_model_dir, "--data", data, "--out", full, *FAST))
    ok(run("predict", "--model", tiny_model_dir, "--data", data, "--out", part, *FAST))
    text = part.read_text(encoding="utf-8")
    if cut_inside:  # killed just after the newline inside the quoted id: '"x\n' ends the file
        part.write_text(text[: text.index('"x') + 3], encoding="utf-8")
    else:  # killed just after the odd id's whole row
        part.write_text(text[: text.index(odd_id) + len(odd_id) + 3], encoding="utf-8")
    resumed = ok(run("predict", "--model", tiny_model_dir, "--data", data, "--out", part, "--resume", *FAST))
    assert resumed["answered"] == (3 if cut_inside else 2)
    assert part.read_text(encoding="utf-8") == full.read_text(encoding="utf-8")


# --- a resume with other settings or columns is refused, naming the difference ---------------------------------------

@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory):
    from mcq_unsloth.model.tiny_models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("other") / "llama", "llama", seed=5)


def _partial(out: Path, keep: int) -> None:
    """``out`` as a kill after ``keep`` answers leaves it (its settings record was written first)."""
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[: 1 + keep]), encoding="utf-8")


@pytest.mark.parametrize("changed, says", [
    (["--model"], "model "),
    (["--mode", "generate"], "mode 'score', now 'generate'"),
    (["--circular"], "circular False, now True"),
    (["--prompt", "en"], "prompt {'template': 'zh'"),
    (["--dtype", "bfloat16"], "precision 'float32', now 'bfloat16'"),
])
def test_predict_resume_with_other_settings_is_refused(tmp_path, tiny_model_dir, other_model_dir, questions_csv,
                                                       changed, says):
    out = tmp_path / "sub.csv"
    ok(run("predict", "--model", tiny_model_dir, "--data", questions_csv, "--out", out, *FAST))
    _partial(out, 4)
    before = {**digest(out), **digest(record_path(out))}
    model, extra = (other_model_dir, []) if changed[0] == "--model" else (tiny_model_dir, changed)
    line = error_line(run("predict", "--model", model, "--data", questions_csv, "--out", out, "--resume", *FAST,
                          *extra))
    assert "was written with other settings" in line and says in line, line
    assert {**digest(out), **digest(record_path(out))} == before


def test_eval_resume_circular_after_a_plain_run_is_refused_and_the_same_settings_finish(tmp_path, tiny_model_dir,
                                                                                          questions_csv):
    full, part = tmp_path / "full", tmp_path / "part"
    reference = ok(run("eval", "--model", tiny_model_dir, "--data", questions_csv, "--out-dir", full, *FAST))
    ok(run("eval", "--model", tiny_model_dir, "--data", questions_csv, "--out-dir", part, *FAST))
    _partial(part / "predictions.csv", 3)
    line = error_line(run("eval", "--model", tiny_model_dir, "--data", questions_csv, "--out-dir", part, "--resume",
                          "--circular", *FAST))
    assert "circular False, now True" in line
    resumed = ok(run("eval", "--model", tiny_model_dir, "--data", questions_csv, "--out-dir", part, "--resume",
                     *FAST))
    assert resumed["accuracy"] == reference["accuracy"] and resumed["questions"] == 10
    assert (part / "predictions.csv").read_text() == (full / "predictions.csv").read_text()


def test_a_partial_output_without_its_settings_record_is_refused(tmp_path, tiny_model_dir, questions_csv):
    out = tmp_path / "sub.csv"
    written = f"id,answer\n{load_questions(questions_csv)[0].id},A\n"
    out.write_text(written)  # written by hand, or by an mcq-unsloth that kept no record
    line = error_line(run("predict", "--model", tiny_model_dir, "--data", questions_csv, "--out", out, "--resume",
                          *FAST))
    assert "the record of what produced them, is missing" in line and out.read_text() == written


def test_resume_with_another_id_column_is_refused(tmp_path, tiny_model_dir, questions_csv):
    out = tmp_path / "sub.csv"
    out.write_text("id,answer\nsynth-0,A\n")
    line = error_line(run("predict", "--model", tiny_model_dir, "--data", questions_csv, "--out", out, "--resume",
                          "--id-column", "qid", *FAST))
    assert line == (f"Error: {out} has the columns id,answer and this run writes qid,answer; resume with the "
                    f"--id-column, --answer-column and --top-k it was written with, or replace it with --overwrite")
    assert out.read_text() == "id,answer\nsynth-0,A\n"
    other = tmp_path / "other.csv"
    write_questions(synth_questions(3, seed=2, held_out=True), other)
    line = error_line(run("predict", "--model", tiny_model_dir, "--data", other, "--out", out, "--resume", *FAST))
    assert "holds answers to questions that are not in this --data (id 'synth-0')" in line
    assert out.read_text() == "id,answer\nsynth-0,A\n"


# --- an output that is the input -------------------------------------------------------------------------------------

def test_out_equal_to_data_is_refused(tmp_path, tiny_model_dir, questions_csv):
    before = questions_csv.read_bytes()
    line = error_line(run("predict", "--model", tiny_model_dir, "--data", questions_csv, "--out", questions_csv,
                          "--overwrite", *FAST))
    assert line == (f"Error: {questions_csv} is the --data file; writing there would destroy the questions: choose "
                    f"another output")
    inside = tmp_path / "eval"
    inside.mkdir()
    shutil.copy(questions_csv, inside / "predictions.csv")
    assert "is the --data file" in error_line(run("eval", "--model", tiny_model_dir, "--data",
                                                  inside / "predictions.csv", "--out-dir", inside, "--overwrite"))
    assert questions_csv.read_bytes() == before == (inside / "predictions.csv").read_bytes()
