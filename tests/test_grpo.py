"""GRPO on the tiny model through both backends: every reward logged, LoRA weights move, resume from the
checkpoint's step, and batch sizes that do not hold whole groups are config errors."""

import json
import shutil

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file

from mcq_unsloth.cli.main import main

# The contest's reward varies even over a random policy's replies, so groups have a learning signal.
QUICK = ["model.name=tiny:qwen2", "model.load_in_4bit=true", "data.train=synth:16", "train.max_steps=4",
         "train.save_steps=2", "train.logging_steps=1", "train.per_device_train_batch_size=8",
         "grpo.reward_weights={contest_format: 1.0, correct: 1.0, format: 0.0, neutral: 0.0}"]


@pytest.mark.slow
def test_grpo_logs_every_reward_trains_and_resumes(tmp_path, backend, run_recipe):
    out = tmp_path / "run"
    overrides = QUICK + [f"model.backend={backend}"]
    result = run_recipe("grpo_smoke", out, overrides)
    assert result["steps"] == 4 and result["backend"] == backend

    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    logged = {key for row in history for key in row}
    for name in ("contest_format", "correct", "format", "neutral"):
        assert {f"rewards/{name}/mean", f"rewards/{name}/std"} <= logged
    assert {"kl", "frac_reward_zero_std", "completions/mean_length"} <= logged
    assert (out / "reward_curves.png").stat().st_size > 10_000

    adapter = load_file(out / "adapter" / "adapter_model.safetensors")
    assert any(float(t.abs().sum()) > 0 for name, t in adapter.items() if "lora_B" in name)

    shutil.rmtree(out / "checkpoints" / "checkpoint-4")
    shutil.rmtree(out / "adapter")
    resumed = run_recipe("grpo_smoke", out, overrides, "--resume")
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["steps"] == 4
    state = json.loads((out / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert [row["step"] for row in state["log_history"] if "loss" in row] == [1, 2, 3, 4]


def test_groups_must_fit_the_batch(tmp_path):
    result = CliRunner().invoke(main, ["recipe", "grpo_smoke", "--out", str(tmp_path / "run"),
                                       "--set", "train.per_device_train_batch_size=6"])
    assert result.exit_code == 2 and "values that work: 2, 3, 6" in result.output
    assert not (tmp_path / "run").exists()


def test_out_of_memory_names_the_settings_and_the_checkpoint(tmp_path, monkeypatch):
    import torch

    import mcq_unsloth.training.run

    def oom(config, run_dir, resume=False):
        (run_dir / "checkpoints" / "checkpoint-200").mkdir(parents=True)
        (run_dir / "checkpoints" / "checkpoint-200" / "trainer_state.json").write_text("{}")
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(mcq_unsloth.training.run, "train_grpo", oom)
    result = CliRunner().invoke(main, ["recipe", "grpo_smoke", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    for words in ("out of GPU memory", "checkpoint-200", "per_device_train_batch_size", "grpo.num_generations",
                  "--resume"):
        assert words in result.output
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-200").is_dir()  # the checkpoint is kept


def test_missing_sft_adapter_says_to_train_it_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["recipe", "grpo_smoke", "--set", "model.backend=hf"])
    assert result.exit_code == 2 and "mcq-unsloth recipe smoke" in result.output


def test_fast_inference_is_reported_unavailable_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = CliRunner().invoke(main, ["recipe", "grpo_smoke", "--out", str(tmp_path / "run"),
                                       "--set", "grpo.fast_inference=true"])
    assert result.exit_code == 2
    assert "grpo.fast_inference is unavailable here" in result.output and "GPU" in result.output


@pytest.mark.slow
def test_grpo_measures_validation_accuracy_as_eval_does(tmp_path, run_recipe, learnt_model_dir):
    """GRPO's trainer is not asked to evaluate; letter accuracy on the validation questions is measured every
    train.eval_steps anyway, logged and drawn beside the rewards, and eval reproduces the last value."""
    import shlex

    out = tmp_path / "run"
    result = run_recipe("grpo_smoke", out, QUICK + [f"model.name={learnt_model_dir}", "model.backend=hf",
                                                    "data.validation=synth-held-out:64", "train.eval_steps=2",
                                                    "train.max_steps=3"])
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [row["step"] for row in history if "eval_accuracy" in row] == [0, 2, 3]  # step 3: the saved model
    assert result["eval_accuracy"] > 0.4
    command = shlex.split(result["eval_command"])
    evaluated = CliRunner().invoke(main, command[1:])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout.strip().splitlines()[-1])["accuracy"] == result["eval_accuracy"]


def test_grpo_without_validation_says_accuracy_is_not_measured(tmp_path, monkeypatch, capsys):
    """A recipe without validation questions trains on rewards alone, and says so instead of staying silent."""
    import mcq_unsloth.training.grpo
    import mcq_unsloth.training.steps
    from mcq_unsloth.config import from_dict

    def stop(*args, **kwargs):
        raise KeyboardInterrupt  # the note comes before the model loads

    monkeypatch.setattr(mcq_unsloth.training.steps, "load_model", stop)
    config = from_dict({"task": "grpo", "data": {"train": "synth:16", "val_fraction": 0.0},
                        "train": {"per_device_train_batch_size": 8}})
    with pytest.raises(KeyboardInterrupt):
        mcq_unsloth.training.grpo.train_grpo(config, tmp_path)
    assert "letter accuracy is not measured" in capsys.readouterr().err
