"""Run folders: nothing overwritten without asking, and an interrupted checkpoint never picked."""

import json
import os
import shutil
from pathlib import Path

import pytest

from mcq_unsloth.errors import RunExists
from mcq_unsloth.records import git_commit, latest_checkpoint
from mcq_unsloth.training.folders import prepare_run_dir, resume_checkpoint

from helpers import QUICK, error_line, ok, run


def test_new_existing_overwrite_and_resume(tmp_path):
    run = tmp_path / "run"
    assert prepare_run_dir(run) == run and run.is_dir()
    prepare_run_dir(run)                      # an empty folder is fine
    (run / "config.yaml").write_text("x")
    with pytest.raises(RunExists, match="overwrite=True"):
        prepare_run_dir(run)
    assert prepare_run_dir(run, resume=True) == run and (run / "config.yaml").exists()
    prepare_run_dir(run, overwrite=True)
    assert not (run / "config.yaml").exists()
    with pytest.raises(RunExists, match="no such run folder"):
        prepare_run_dir(tmp_path / "missing", resume=True)


def test_latest_checkpoint_skips_incomplete_ones(tmp_path):
    for step, complete in [(100, True), (200, True), (300, False), (1000, True)]:
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-1000" / "trainer_state.json").unlink()  # cut short while saving
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint-200")
    assert latest_checkpoint(tmp_path / "none") is None


def test_git_commit_is_the_checkouts_own():
    # The tests run from a git checkout (CI clones one): the record names its commit.
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
    commit = git_commit()
    assert commit is not None and commit.removesuffix("+dirty") == head.stdout.strip()


# --- checkpoints cut short, settings that crashed after the run folder was made --------------------------------------

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


# --- what a run folder says it is ----------------------------------------------------------------------------

def test_a_run_folder_says_what_it_is_running_finished_failed_or_stopped(tmp_path, trained_run, monkeypatch):
    import mcq_unsloth as mu
    import mcq_unsloth.training.run
    from mcq_unsloth.outputs import exclusive
    from mcq_unsloth.records import run_status

    assert run_status(trained_run) == ("finished", str(trained_run / "adapter"))
    with exclusive(trained_run):  # what a process training into it holds
        state, holder = run_status(trained_run)
    assert state == "running" and holder.startswith(f"process {os.getpid()} on ")

    def broken(*args, **kwargs):
        raise RuntimeError("the kernel exploded\nsecond line")

    monkeypatch.setattr(mcq_unsloth.training.run, "train_sft", broken)
    with pytest.raises(RuntimeError):
        mu.train("smoke", out=tmp_path / "broken", overrides={"train.max_steps": 1})
    assert run_status(tmp_path / "broken") == ("failed", "RuntimeError: the kernel exploded")

    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "run.json").write_text(json.dumps({"recipe": "smoke"}))  # Ctrl-C before the first checkpoint
    assert run_status(stopped) == ("stopped", "stopped before its first checkpoint")
    shutil.copytree(trained_run / "checkpoints", stopped / "checkpoints")
    assert run_status(stopped) == ("stopped", "last complete checkpoint: checkpoint-2")


def test_the_history_is_written_as_it_is_logged_and_a_resume_rewrites_it_from_its_checkpoint(tmp_path):
    from transformers import TrainerState

    from mcq_unsloth.records import read_history, read_progress
    from mcq_unsloth.training.callbacks import LiveHistory

    # a stopped session's rows past its checkpoint
    (tmp_path / "history.jsonl").write_text('{"loss": 9.0, "step": 7}\n')
    state = TrainerState(max_steps=8, is_world_process_zero=True, global_step=2,
                         log_history=[{"loss": 3.0, "step": 2}])   # resumed from checkpoint-2
    live = LiveHistory(tmp_path)
    live.on_train_begin(None, state, None)
    assert read_history(tmp_path) == [{"loss": 3.0, "step": 2}]
    assert read_progress(tmp_path)["step"] == 2 and read_progress(tmp_path)["first_step"] == 2
    state.global_step = 3
    state.log_history.append({"loss": 2.0, "step": 3})
    live.on_log(None, state, None)
    state.log_history.append({"eval_accuracy": 0.5, "step": 3})  # McqAccuracy's own row, added without on_log
    live.on_step_end(None, state, None)
    assert read_history(tmp_path) == state.log_history
    assert read_progress(tmp_path)["step"] == 3 and read_progress(tmp_path)["max_steps"] == 8
    with (tmp_path / "history.jsonl").open("a") as out:
        out.write('{"loss": 1.')  # a row being written when the page reads
    assert read_history(tmp_path) == state.log_history
    other = TrainerState(is_world_process_zero=False, log_history=[{"loss": 0.0, "step": 1}])
    LiveHistory(tmp_path / "not-main").on_train_begin(None, other, None)  # only the main process writes
    assert not (tmp_path / "not-main").exists()
