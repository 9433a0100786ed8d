"""Nothing lost, nothing crashes: each case a user met (interruptions, a second writer, unwritable folders,
over-long questions, broken checkpoints, bad recipes), checked by exit code, the one line said and the files'
exact content afterwards. Kills are simulated by cut or empty files, a second writer by a held lock, an
unwritable folder by its permissions."""

import contextlib
import errno
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

# Every module a command reaches before it checks its outputs, imported now: while a test runs as an
# unprivileged user, the standard library under /root cannot be read.
import mcq_unsloth.cli.inference  # noqa: F401
import mcq_unsloth.demo  # noqa: F401
import mcq_unsloth.inference.files  # noqa: F401
import mcq_unsloth.model.smollm2  # noqa: F401
import mcq_unsloth.data.sources  # noqa: F401
import mcq_unsloth.model.tiny_models  # noqa: F401
from mcq_unsloth import Question
from mcq_unsloth.cli.errors import user_error_types
from mcq_unsloth.data.questions import write_questions
from mcq_unsloth.training.recipes import shipped_recipes
from mcq_unsloth.records import latest_checkpoint
from mcq_unsloth.training.folders import resume_checkpoint
from mcq_unsloth.data.synthetic import synth_questions

from helpers import error_line, run

user_error_types()  # imports the modules it names

FAST = ["--backend", "hf", "--no-4bit", "--batch-size", "4"]


@pytest.fixture
def reference(tmp_path, tiny_model_dir, questions_csv):
    """An uninterrupted eval of the questions: its predictions.csv and predictions.jsonl."""
    out = tmp_path / "reference"
    result = run("eval", "--model", tiny_model_dir, "--data", questions_csv, "--out-dir", out, *FAST)
    assert result.exit_code == 0, result.output
    return out


# --- 1. a prediction killed before its first batch, or in the middle of one ----------------------------

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


def test_an_answer_without_its_raw_record_is_asked_again(tmp_path, tiny):
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


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from mcq_unsloth.model.backends import load_model

    return load_model(str(tiny_model_dir), backend="hf", dtype="float32")


# --- 2. two writers of one output ---------------------------------------------------------------------

def test_a_second_writer_is_refused_while_the_first_runs(tmp_path, tiny_model_dir, questions_csv):
    out = tmp_path / "sub.csv"
    out.write_text("id,answer\nsynth-0,A\n")
    holder = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "sub.csv.lock").write_text(f"{holder.pid} {os.uname().nodename}\n")
        result = run("predict", "--model", tiny_model_dir, "--data", questions_csv, "--out", out, *FAST, "--resume")
        line = error_line(result)
    finally:
        holder.kill()
        holder.wait()
    assert f"is being written by process {holder.pid}" in line and "sub.csv.lock" in line
    assert "model:" not in result.stderr  # refused before loading anything
    assert out.read_text() == "id,answer\nsynth-0,A\n"
    assert (tmp_path / "sub.csv.lock").read_text() == f"{holder.pid} {os.uname().nodename}\n"


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, tiny_model_dir, questions_csv, reference):
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "sub.csv"
    (tmp_path / "sub.csv.lock").write_text(f"{dead.pid} {os.uname().nodename}\n")
    result = run("predict", "--model", tiny_model_dir, "--data", questions_csv, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "taking over" in result.stderr and "no longer running" in result.stderr
    assert out.read_text() == (reference / "predictions.csv").read_text()
    assert not (tmp_path / "sub.csv.lock").exists()


def test_a_run_folder_is_locked_too(tmp_path):
    from mcq_unsloth.outputs import exclusive

    with exclusive(tmp_path / "run"):
        line = error_line(run("recipe", "smoke", "--out", tmp_path / "run"))
    assert "is being written by process" in line
    assert not (tmp_path / "run").exists()


# --- 3. outputs that cannot be written --------------------------------------------------------------------

@pytest.fixture
def read_only():
    """A folder this process may not write. Its permissions say read-only; a test running as root (which
    ignores permissions) runs its commands as the unprivileged user ``nobody`` (see :func:`unprivileged`)."""
    scratch = Path(tempfile.mkdtemp(prefix="mcq-unsloth-ro-"))
    scratch.chmod(0o777)  # the unprivileged user may write beside the locked folder
    locked = scratch / "locked"
    locked.mkdir()
    write_questions(synth_questions(4, seed=3), scratch / "q.csv")
    # Inputs the unprivileged user can read wherever the checkout is (a clone in a private folder too).
    shutil.copyfile(shipped_recipes()["smoke"], scratch / "smoke.yaml")
    locked.chmod(0o555)
    yield locked
    locked.chmod(0o755)
    shutil.rmtree(scratch)


@contextlib.contextmanager
def unprivileged():
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


COMMANDS = {
    "predict": lambda ro, model: ["predict", "--model", model, "--data", ro.parent / "q.csv", "--out", ro / "a.csv"],
    "predict --raw": lambda ro, model: ["predict", "--model", model, "--data", ro.parent / "q.csv", "--out",
                                        ro.parent / "a.csv", "--raw", ro / "a.jsonl"],
    "eval": lambda ro, model: ["eval", "--model", model, "--data", ro.parent / "q.csv", "--out-dir", ro / "eval"],
    "recipe": lambda ro, model: ["recipe", ro.parent / "smoke.yaml", "--out", ro / "run"],
    "data synth": lambda ro, model: ["data", "synth", ro / "new" / "q.csv"],
    "tiny": lambda ro, model: ["tiny", ro / "tiny"],
    "recipe cp": lambda ro, model: ["recipe", "cp", ro.parent / "smoke.yaml", ro / "mine.yaml"],
    "smollm2": lambda ro, model: ["smollm2", ro / "smollm2"],
    "demo": lambda ro, model: ["demo", "--out", ro / "demo"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unwritable_output_is_one_line_before_any_work(read_only, tiny_model_dir, command):
    with unprivileged():
        result = run(*COMMANDS[command](read_only, tiny_model_dir))
    line = error_line(result)
    assert line.startswith("Error: cannot write") and "permission denied" in line and str(read_only) in line
    assert os.listdir(read_only) == [] and sorted(os.listdir(read_only.parent)) == ["locked", "q.csv", "smoke.yaml"]


def test_a_full_disk_is_one_line(tmp_path, tiny_model_dir, questions_csv, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "sub.csv"))

    monkeypatch.setattr(mcq_unsloth.inference.files, "predict_file", full)
    line = error_line(run("predict", "--model", tiny_model_dir, "--data", questions_csv, "--out",
                          tmp_path / "sub.csv", *FAST))
    assert line == f"Error: {tmp_path / 'sub.csv'}: no space left on device; free some space, then run again"
    assert not (tmp_path / "sub.csv.lock").exists()


# --- 4. questions longer than the model's context --------------------------------------------------------

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


def test_on_long_error_stops_before_writing(tmp_path, tiny_model_dir, tiny_tokenizer, long_csv):
    out = tmp_path / "sub.csv"
    line = error_line(run("predict", "--model", tiny_model_dir, "--data", long_csv, "--out", out, "--on-long",
                          "error", *FAST))
    assert line == (f"Error: {long_csv}: 1 question(s) take more tokens than the model's context of 1024: "
                           f"row 2 (id huge, {huge_tokens(tiny_tokenizer, long_csv)} tokens); shorten them, or leave out --on-long error to have "
                           f"them shortened")
    assert not out.exists()


# --- 5. a checkpoint cut short while it was written --------------------------------------------------------

def _checkpoint(folder: Path, step: int) -> Path:
    import torch
    from safetensors.torch import save_file

    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    save_file({"w": torch.zeros(4, 4)}, checkpoint / "adapter_model.safetensors")
    torch.save({"state": {}}, checkpoint / "optimizer.pt")
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return checkpoint


@pytest.mark.parametrize("cut", ["trainer_state.json", "adapter_model.safetensors", "optimizer.pt"])
def test_a_checkpoint_with_a_cut_file_is_skipped_with_a_notice(tmp_path, capsys, cut):
    _checkpoint(tmp_path, 3)
    broken = _checkpoint(tmp_path, 6)
    data = (broken / cut).read_bytes()
    (broken / cut).write_bytes(data[: len(data) // 2])
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint-3")
    assert resume_checkpoint(tmp_path) == str(tmp_path / "checkpoint-3")
    assert capsys.readouterr().err == (f"note: skipping checkpoint-6: {cut} is cut short or damaged; resuming "
                                       f"from checkpoint-3\n")


# --- 6. a recipe that is not UTF-8 -----------------------------------------------------------------------

@pytest.mark.parametrize("command", [["recipe"], ["recipe", "show"]])
def test_a_recipe_in_another_encoding_is_one_line(tmp_path, command):
    recipe = tmp_path / "mine.yaml"
    recipe.write_bytes("# 我的配方\ntrain:\n  max_steps: 3\n".encode("gbk"))
    line = error_line(run(*command, recipe))
    assert line == f"Error: {recipe}: line 1: byte 0xce is not UTF-8; save the file as UTF-8"
    assert not Path("runs/mine").exists()


# --- 8. an output that is an input; resuming with other columns ----------------------------------------------

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


# --- 9. real-sized models on a CPU -----------------------------------------------------------------------

def test_tiny_shape_on_a_cpu_is_refused(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the shaped model would be built")
    line = error_line(run("tiny", tmp_path / "big", "--shape", "qwen2.5-7b"))
    assert "made on a CUDA GPU, and there is none" in line
    assert not (tmp_path / "big").exists()


# --- 10. papercuts -------------------------------------------------------------------------------------

def test_papercuts(tmp_path):
    shipped = run("data", "check", "shipped:mcq_zh.csv")
    assert shipped.exit_code == 0 and shipped.stdout.startswith("shipped:mcq_zh.csv: 200 questions")
    assert "no shipped data file 'nope.csv'" in error_line(run("data", "check", "shipped:nope.csv"))

    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "x").write_text("x")
    line = error_line(run("tiny", tmp_path / "tiny"))
    assert line == f"Error: {tmp_path / 'tiny'} already holds files; pass --overwrite to replace it, or choose " \
                   f"another folder"
    assert (tmp_path / "tiny" / "x").read_text() == "x"

    csv_file = tmp_path / "q.csv"
    write_questions(synth_questions(2, seed=0), csv_file)
    line = error_line(run("predict", "--model", csv_file, "--data", csv_file, "--out", tmp_path / "a.csv"))
    assert line.startswith(f"Error: {csv_file} is a file; a model is a folder holding config.json")

    assert error_line(run("recipe", "smok")) == ("Error: no recipe named 'smok' (did you mean 'smoke'?); shipped "
                                                 "recipes: grpo_50pct, grpo_smoke, sft_qwen14b_1m, smoke, or give "
                                                 "the path of a YAML file")
    assert "Write --n synthetic" in run("data", "synth", "--help").output
    assert "export" in run("--help").output and run("export", "--help").exit_code == 0  # promised, and there
    assert "unsloth: FastLanguageModel" in run("predict", "--help").output


def test_a_killed_holder_not_yet_collected_counts_as_gone(tmp_path):
    """kill -9 leaves a zombie until its parent collects it; its pid still answers signals."""
    from mcq_unsloth.outputs import exclusive, lock_path

    zombie = subprocess.Popen(["true"])
    time.sleep(0.5)  # ended, not yet waited for
    lock_path(tmp_path / "a.csv").write_text(f"{zombie.pid} {os.uname().nodename}\n")
    with exclusive(tmp_path / "a.csv"):
        assert lock_path(tmp_path / "a.csv").read_text().split()[0] == str(os.getpid())
    zombie.wait()
