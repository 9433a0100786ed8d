"""Nothing lost, round two: each case a user met, through the CLI, checked by exit code, the one line said, the
files' checksums before and after, and the corrected command running afterwards. The numbers are the issue's:
1 export deleting its source, 2 resumes mixing runs, 3 full disks, 4 half-written folders, 5 settings that
crashed later, 6 line separators, 7 CSV shape, 8 clean output."""

import errno
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from helpers import error_line, ok, run

from mcq_unsloth.errors import machine_errno
from mcq_unsloth import load_questions
from mcq_unsloth.data.questions import Question, write_questions
from mcq_unsloth.inference.files import record_path
from mcq_unsloth.data.synthetic import synth_questions

FAST = ["--backend", "hf", "--batch-size", "4"]
QUICK = ["train.max_steps=2", "train.save_steps=2", "train.eval_steps=2", "data.train=synth:32",
         "data.validation=synth-held-out:8"]


def digest(path: Path) -> dict[str, str]:
    """Every file under ``path`` (or ``path`` itself) with its SHA-256."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished smoke run (adapter, checkpoint, tiny base), in a folder of its own."""
    out = tmp_path_factory.mktemp("runs") / "smoke"
    ok(run("recipe", "smoke", "--out", out, *[a for o in QUICK for a in ("--set", o)]))
    return out


# --- 1. export never deletes its source ----------------------------------------------------------------

def test_export_refuses_an_out_that_is_in_or_above_its_source(trained_run, tmp_path):
    before = digest(trained_run)
    link = tmp_path / "link-to-run"
    link.symlink_to(trained_run)
    cases = [  # (SOURCE, --format, --out): the adapter, the run, the folder holding the run, a link to it
        (trained_run, "lora", trained_run / "adapter", "is the export's source"),
        (trained_run, "lora", trained_run, "is the export's source"),
        (trained_run, "lora", trained_run.parent, "holds the export's source"),
        (trained_run, "merged", link, "is the export's source"),
        (trained_run, "gguf", trained_run / "tiny-base", "is the export's source"),  # the adapter's base
        (trained_run / "tiny-base", "gguf", trained_run / "tiny-base", "is the export's source"),
        (trained_run, "gguf", trained_run / "checkpoints", "lies inside, and holds files already,"),
    ]
    for source, fmt, out, says in cases:
        for overwrite in (["--overwrite"], []):
            line = error_line(run("export", source, "--format", fmt, "--out", out, *overwrite))
            assert says in line and "choose an output folder outside" in line, line
    assert digest(trained_run) == before  # nothing deleted, nothing written
    written = ok(run("export", trained_run, "--format", "lora", "--out", trained_run / "lora-copy"))
    assert written["files"] and (trained_run / "lora-copy" / "adapter_model.safetensors").is_file()


# --- 2. a resume with other settings is refused, naming the difference --------------------------------

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


# --- 3 and 4. full disks: one line naming the path, and no half-written folder left ----------------------

@pytest.fixture
def full_disk(tmp_path):
    """A 64 KB file system (tmpfs), as small as a disk that is about to fill up; ``grow()`` gives it room, as
    freeing space would. Needs root."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")

    class Disk(type(mount)):
        def grow(self):
            subprocess.run(["mount", "-o", "remount,size=64m", str(self)], check=True)

    yield Disk(mount)
    subprocess.run(["umount", "--lazy", str(mount)], check=True)  # torch may still hold a file open


def _files(path: Path) -> list[str]:
    if path.is_dir():
        return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    return [path.name] if path.exists() else []


FULL_DISK_CASES = {  # command, the output it names, and what the corrected command adds
    "recipe": (["recipe", "smoke", "--out", "{disk}/run", *[a for o in QUICK for a in ("--set", o)]], "run", []),
    "export": (["export", "{run}", "--format", "gguf", "--quant", "q8_0", "--out", "{disk}/gguf"], "gguf", []),
    "tiny": (["tiny", "{disk}/tiny"], "tiny", []),
    "synth": (["data", "synth", "--n", "4000", "{disk}/synth.csv"], "synth.csv", []),
    "eval": (["eval", "--model", "{model}", "--data", "shipped:mcq_zh.csv", "--out-dir", "{disk}/eval", *FAST],
             "eval", ["--resume"]),  # a partial evaluation is kept, to be finished
}


@pytest.mark.parametrize("case", list(FULL_DISK_CASES))
def test_a_full_disk_is_one_line_naming_the_output_and_blocks_nothing(full_disk, trained_run, tiny_model_dir, case):
    command, named, again = FULL_DISK_CASES[case]
    args = [a.format(disk=full_disk, run=trained_run, model=tiny_model_dir) for a in command]
    line = error_line(run(*args))
    assert line == f"Error: {full_disk / named}: no space left on device; free some space, then run again", line
    if case != "eval":  # no run folder, no half-written model or file: nothing that blocks the same command
        assert _files(full_disk / named) == [] and sorted(p.name for p in full_disk.iterdir()) in ([], [named])
    full_disk.grow()
    assert run(*args, *again).exit_code == 0  # the same command, once there is room, without --overwrite


def test_predict_on_a_disk_without_room_names_its_output(full_disk, tiny_model_dir, questions_csv):
    with pytest.raises(OSError):
        (full_disk / "filler").write_bytes(b"x" * 70_000)  # fill the disk: not even the CSV header fits
    line = error_line(run("predict", "--model", tiny_model_dir, "--data", questions_csv, "--out",
                          full_disk / "sub.csv", *FAST))
    assert line.startswith(f"Error: {full_disk / 'sub.csv'}") and "no space left on device" in line


def test_torchs_own_write_error_on_a_full_disk_is_recognised(full_disk):
    """torch's zip writer reports a full disk as 'unexpected pos N vs M' only."""
    import torch

    with pytest.raises(RuntimeError) as raised:
        torch.save(torch.zeros(100_000), full_disk / "big.pt")
    assert "inline_container" in str(raised.value)
    assert machine_errno(raised.value, (full_disk / "run",)) == errno.ENOSPC
    assert machine_errno(raised.value, ()) is None  # with no output on a full disk, it is not called one


def test_an_incomplete_tiny_base_is_rebuilt(tmp_path):
    from mcq_unsloth.model.backends import model_source

    base = tmp_path / "run" / "tiny-base"
    base.mkdir(parents=True)
    (base / "config.json").write_text("{}")  # what a full disk left before model folders were written whole
    assert Path(model_source("tiny:qwen2", tmp_path / "run")) == base.resolve()
    assert (base / "model.safetensors").is_file() and (base / "tokenizer.json").is_file()


# --- 5. settings that crashed after the run folder was made --------------------------------------------

@pytest.mark.parametrize("setting, says", [
    ("train.learning_rate=nan", "train.learning_rate: expected a finite number, got 'nan'"),
    ("train.learning_rate=.inf", "train.learning_rate: expected a finite number, got inf"),
    ("train.optim=adamw_fake", "train.optim: 'adamw_fake' is not an optimizer transformers knows; did you mean"),
    ("train.lr_scheduler_type=cosinus", "train.lr_scheduler_type: 'cosinus' is not a learning-rate scheduler "
                                        "transformers knows; did you mean 'cosine'"),
    ("lora.lora_alpha=-5", "lora.lora_alpha: must be positive"),
    ("train.warmup_steps=-1", "train.warmup_steps: must be 0 or more"),
    ("lora.target_modules=foo_proj", "lora.target_modules: foo_proj is not a module of"),
])
def test_bad_settings_stop_in_one_line_and_leave_no_run_folder(tmp_path, setting, says):
    out = tmp_path / "run"
    line = error_line(run("recipe", "smoke", "--out", out, "--set", setting, "--set", "train.max_steps=1"))
    assert says in line, line
    assert not out.exists()


def test_an_unknown_target_module_lists_the_models_linear_layers_and_the_corrected_run_works(tmp_path):
    out = tmp_path / "run"
    for backend in ("hf", "unsloth"):
        line = error_line(run("recipe", "smoke", "--out", out, "--set", "lora.target_modules=q_proj,foo_proj",
                              "--set", f"model.backend={backend}"))
        assert "its linear layers are down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj" in line
        assert not out.exists()
    assert ok(run("recipe", "smoke", "--out", out, "--set", "lora.target_modules=q_proj",
                  *[a for o in QUICK for a in ("--set", o)]))["steps"] == 2


# --- 6. line separators inside texts --------------------------------------------------------------------

SEPARATORS = "\u2028\u2029\u0085\x1c\x1d\x1e\x0b\x0c"  # all of which str.splitlines() splits on


def test_jsonl_with_unicode_line_separators_reads_back_whole(tmp_path):
    questions = [Question(f"q{i}", f"第一行{sep}第二行", {"A": f"甲{sep}子", "B": "乙", "C": "丙", "D": "丁"}, "A")
                 for i, sep in enumerate(SEPARATORS)]
    path = tmp_path / "validation.jsonl"
    write_questions(questions, path)
    assert [(q.id, q.question, q.options) for q in load_questions(path)] == \
        [(q.id, q.question, q.options) for q in questions]
    assert ok_check(path) == len(SEPARATORS)


def ok_check(path) -> int:
    result = run("data", "check", path, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])["rows"]


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


# --- 7. CSV shape ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, says", [
    ("id,question,A,B,C,D,answer,answer\n1,q,a,b,c,d,A,B\n",
     "column 'answer': the header has 2 columns named 'answer': which one to read is not clear"),
    ("id,question,A,B,C,D,answer\n1,q,a,b,c,d,A\n2,q,a,b,c\n",
     "data row 2: 5 fields but the header has 7 (the fields from 'D' on are missing)"),
    ("id,question,A,B,C,D,answer\n1,q,a,b,c,d,A,extra\n", "data row 1: 8 fields but the header has 7"),
])
def test_csv_of_the_wrong_shape_is_refused_naming_row_and_counts(tmp_path, tiny_model_dir, text, says):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    assert says in error_line(run("data", "check", path))
    line = error_line(run("predict", "--model", tiny_model_dir, "--data", path, "--out", tmp_path / "s.csv", *FAST))
    assert line.startswith(f"Error: {path}: ") and says in line
    assert not (tmp_path / "s.csv").exists()


# --- 8. clean output ------------------------------------------------------------------------------------

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


def test_k_quant_export_says_its_fallbacks_in_one_line(tmp_path, tiny_model_dir):
    result = run("export", tiny_model_dir, "--format", "gguf", "--quant", "q4_k_m", "--out", tmp_path / "k")
    assert result.exit_code == 0, result.output
    assert "falling back" not in result.stderr
    notes = [line for line in result.stderr.splitlines() if "kept" in line and "out of q4_k_m" in line]
    assert len(notes) == 1 and "as their rows are not a multiple of 256 values" in notes[0]


def test_synth_help_shows_the_real_default_kinds(tmp_path):
    assert "[default: lookup,count]" in run("data", "synth", "--help").output
    ok_synth = run("data", "synth", "--n", "8", tmp_path / "s.csv")
    assert ok_synth.exit_code == 0
    texts = [q.question for q in load_questions(tmp_path / "s.csv")]
    assert all("首都" in t or "几个" in t for t in texts), texts  # lookup (capitals) and count questions only
