"""Writing outputs (:mod:`mcq_unsloth.outputs`): one writer at a time, a lock left by a dead process taken over,
an unwritable folder or a full disk said in one line before any work, and nothing half-written left behind.
Checked through the commands, by exit code, the one line said and the files afterwards: a second writer is a
held lock, an unwritable folder its permissions, a full disk a 64 KB tmpfs."""

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

# Every module a command reaches before it checks its outputs, imported now: while a test runs as an
# unprivileged user, the standard library under /root cannot be read.
import mcq_unsloth.api.answers
import mcq_unsloth.cli.inference  # noqa: F401
import mcq_unsloth.demo  # noqa: F401
import mcq_unsloth.inference.files  # noqa: F401
import mcq_unsloth.model.smollm2_gguf  # noqa: F401
import mcq_unsloth.data.sources  # noqa: F401
import mcq_unsloth.model.tiny_models  # noqa: F401
from mcq_unsloth.cli.errors import user_error_types
from mcq_unsloth.data.questions import write_questions
from mcq_unsloth.data.synthetic import synth_questions
from mcq_unsloth.errors import machine_errno
from mcq_unsloth.training.recipes import shipped_recipes

from helpers import QUICK, error_line, run

user_error_types()  # imports the modules it names

FAST = ["--backend", "hf", "--no-4bit", "--batch-size", "4"]


# --- two writers of one output ---------------------------------------------------------------------------------------

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


def test_a_killed_holder_not_yet_collected_counts_as_gone(tmp_path):
    """kill -9 leaves a zombie until its parent collects it; its pid still answers signals."""
    from mcq_unsloth.outputs import exclusive, lock_path

    zombie = subprocess.Popen(["true"])
    time.sleep(0.5)  # ended, not yet waited for
    lock_path(tmp_path / "a.csv").write_text(f"{zombie.pid} {os.uname().nodename}\n")
    with exclusive(tmp_path / "a.csv"):
        assert lock_path(tmp_path / "a.csv").read_text().split()[0] == str(os.getpid())
    zombie.wait()


def test_a_run_folder_is_locked_too(tmp_path):
    from mcq_unsloth.outputs import exclusive

    with exclusive(tmp_path / "run"):
        line = error_line(run("recipe", "smoke", "--out", tmp_path / "run"))
    assert "is being written by process" in line
    assert not (tmp_path / "run").exists()


# --- outputs that cannot be written ----------------------------------------------------------------------------------

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


# --- full disks: one line naming the output, and no half-written folder left -----------------------------------------

def test_a_full_disk_is_one_line(tmp_path, tiny_model_dir, questions_csv, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "sub.csv"))

    monkeypatch.setattr(mcq_unsloth.api.answers, "predict_file", full)
    line = error_line(run("predict", "--model", tiny_model_dir, "--data", questions_csv, "--out",
                          tmp_path / "sub.csv", *FAST))
    assert line == f"Error: {tmp_path / 'sub.csv'}: no space left on device; free some space, then run again"
    assert not (tmp_path / "sub.csv.lock").exists()


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
