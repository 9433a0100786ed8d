"""The command line: fast --help everywhere, one readable line and exit 2 for user mistakes."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mcq_unsloth import load_questions
from mcq_unsloth.cli.main import main
from mcq_unsloth.data.questions import write_questions
from mcq_unsloth.data.synthetic import synth_questions

from helpers import error_line

COMMANDS = [[], ["data"], ["data", "check"], ["data", "synth"], ["recipe"], ["recipe", "list"],
            ["recipe", "show"], ["recipe", "cp"], ["recipe", "run"], ["tiny"], ["demo"], ["predict"], ["eval"],
            ["bench"], ["bench", "inference"], ["bench", "letters"], ["bench", "padding"], ["bench", "grpo-variants"],
            ["export"], ["verify-gguf"], ["ui"]]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "main")
def test_every_help(command):
    result = run(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_help_imports_nothing_heavy():
    code = ("import sys; from mcq_unsloth.cli.main import main\n"
            "try: main(['recipe', '--help'])\nexcept SystemExit: pass\n"
            "print(sorted({'torch', 'transformers', 'trl', 'unsloth', 'pyarrow'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]")


def test_data_check_summary_and_json(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("question,A,B,C,D,answer\nq1,a,b,c,d,A\nq2,a,b,c,d,（C）\nq3,a,b,c,d,c\n", encoding="utf-8")
    result = run("data", "check", path, "--json")
    assert result.exit_code == 0, result.output
    assert "3 questions" in result.output
    assert json.loads(result.output.strip().splitlines()[-1]) == {
        "rows": 3, "labelled": True, "answers": {"A": 1, "B": 0, "C": 2, "D": 0}}


def test_data_check_unlabelled(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text('{"id": "a", "question": "q", "choices": ["x", "y"]}\n', encoding="utf-8")
    result = run("data", "check", path, "--json")
    assert json.loads(result.output.strip().splitlines()[-1]) == {"rows": 1, "labelled": False}


def test_data_check_invalid_file_is_one_line_exit_2(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("question,A,B,C,D,answer\nq1,a,b,c,d,A\nq2,a,b,c,d,E\n", encoding="utf-8")
    result = run("data", "check", path)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert "bad.csv" in line and "data row 2" in line and "column 'answer'" in line and "Fix:" in line


def test_data_check_in_a_real_process(tmp_path):
    """No traceback reaches the terminal, outside click's test runner too."""
    path = tmp_path / "bad.tsv"
    path.write_text("题目\tA\tB\t答案\n问题\t甲\t乙\tZ\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "mcq_unsloth.cli.main", "data", "check", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "data row 1" in proc.stderr


def test_data_synth_writes_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "synth.csv"
    assert run("data", "synth", out, "--n", 12, "--seed", 3).exit_code == 0
    check = run("data", "check", out, "--json")
    assert json.loads(check.output.strip().splitlines()[-1])["answers"] == {"A": 3, "B": 3, "C": 3, "D": 3}
    again = run("data", "synth", out, "--n", 12)
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert run("data", "synth", out, "--kinds", "riddle", "--overwrite").exit_code == 2


def test_recipe_list_show_cp(tmp_path):
    listing = run("recipe", "list")
    assert listing.exit_code == 0 and "smoke" in listing.output
    shown = run("recipe", "show", "smoke")
    assert shown.output.startswith("# smoke:")
    resolved = run("recipe", "show", "smoke", "--set", "lora.r=4")
    assert "r: 4" in resolved.output and "lora_alpha" in resolved.output
    assert run("recipe", "cp", "smoke", tmp_path).exit_code == 0
    assert run("recipe", "cp", "smoke", tmp_path).exit_code == 2


def test_recipe_errors_are_user_errors(tmp_path):
    unknown = run("recipe", "smok")
    assert unknown.exit_code == 2 and "did you mean 'smoke'" in unknown.output
    bad_set = run("recipe", "smoke", "--set", "lora.rank=4", "--out", tmp_path / "run")
    assert bad_set.exit_code == 2 and "did you mean 'lora.r'" in bad_set.output
    assert not (tmp_path / "run").exists()  # nothing created for a recipe that does not validate


def test_recipe_run_refuses_an_existing_run(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("x")
    result = run("recipe", "smoke", "--out", tmp_path / "run")
    assert result.exit_code == 2 and "--overwrite" in result.output and "--resume" in result.output


def test_tiny_command(tmp_path):
    out = tmp_path / "tiny"
    result = run("tiny", out, "--arch", "llama", "--layers", 1)
    assert result.exit_code == 0, result.output
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    assert run("tiny", out).exit_code == 2  # never overwritten without asking


def test_recipe_without_training_data_says_how_and_leaves_nothing(tmp_path):
    result = run("recipe", "sft_qwen14b_1m", "--out", tmp_path / "run")
    assert result.exit_code == 2 and "--set data.train=PATH" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.gpu
def test_bench_inference_on_a_gpu_reports_peak_memory():
    result = run("bench", "inference", "--n", 16, "--one-at-a-time", 2, "--repeat", 1, "--backend", "unsloth")
    assert result.exit_code == 0, result.output
    assert "CUDA" in result.stdout and "peak GPU memory (GiB)" in result.stdout
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| score")]
    assert float(rows[0][-2]) > 0


def test_bench_inference_shape_needs_one_model_source_and_a_gpu():
    import torch

    both = run("bench", "inference", "--shape", "qwen2.5-7b", "--model", "x")
    assert both.exit_code == 2 and "not both" in both.output
    if not torch.cuda.is_available():
        alone = run("bench", "inference", "--shape", "qwen2.5-7b")
        assert alone.exit_code == 2 and "needs a CUDA GPU" in alone.output


def test_bench_inference_prints_a_table():
    result = run("bench", "inference", "--n", 16, "--one-at-a-time", 4, "--repeat", 1, "--backend", "hf", "--no-4bit")
    assert result.exit_code == 0, result.output
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| mode |") and len(table) == 5
    assert "| score | 16 |" in result.stdout and "one at a time | 4 |" in result.stdout


def test_a_file_not_found_in_our_own_code_is_a_bug_not_a_user_error(tmp_path, monkeypatch):
    """Only our typed errors become one line: a FileNotFoundError from inside the toolkit shows as the bug it is."""
    import mcq_unsloth.api.artifacts

    def broken(*args, **kwargs):
        raise FileNotFoundError("/internal/table.json")

    monkeypatch.setattr(mcq_unsloth.api.artifacts, "synth_questions", broken)
    result = CliRunner().invoke(main, ["data", "synth", "--n", "4", str(tmp_path / "s.csv")])
    assert result.exit_code == 1 and isinstance(result.exception, FileNotFoundError)


# --- papercuts, and a stdout that holds the result alone -------------------------------------------------------------

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


def test_stdout_holds_only_the_result(tmp_path, tiny_model_dir, questions_csv):
    """Unsloth prints its banners to stdout: they go to stderr, so `predict ... | jq` reads one JSON line."""
    for backend in ("unsloth", "hf"):
        result = run("predict", "--model", tiny_model_dir, "--data", questions_csv, "--out", tmp_path / f"{backend}.csv",
                     "--backend", backend)
        assert result.exit_code == 0, result.output
        (line,) = result.stdout.strip().splitlines()
        assert json.loads(line)["answered"] == 10
        if backend == "unsloth":
            assert "Unsloth (CPU)" in result.stderr  # its loading banner, moved


def test_synth_help_shows_the_real_default_kinds(tmp_path):
    assert "[default: lookup,count]" in run("data", "synth", "--help").output
    ok_synth = run("data", "synth", "--n", "8", tmp_path / "s.csv")
    assert ok_synth.exit_code == 0
    texts = [q.question for q in load_questions(tmp_path / "s.csv")]
    assert all("首都" in t or "几个" in t for t in texts), texts  # lookup (capitals) and count questions only
