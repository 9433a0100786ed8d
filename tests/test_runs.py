"""Run folders: nothing overwritten without asking, and an interrupted checkpoint never picked."""

import pytest

from mcq_unsloth.errors import RunExists
from mcq_unsloth.records import git_commit, latest_checkpoint
from mcq_unsloth.training.folders import prepare_run_dir


def test_new_existing_overwrite_and_resume(tmp_path):
    run = tmp_path / "run"
    assert prepare_run_dir(run) == run and run.is_dir()
    prepare_run_dir(run)                      # an empty folder is fine
    (run / "config.yaml").write_text("x")
    with pytest.raises(RunExists, match="--overwrite"):
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
