"""SFT pipeline on the tiny model, through both backends: the loss falls, LoRA weights move, the run is
recorded, answer-only labels, and --resume continues from the checkpoint's step."""

import json
import shutil

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file

from mcq_unsloth.cli.main import main

# The smoke recipe cut to six steps, on the QLoRA path: 4-bit base, LoRA on the seven projections only.
QUICK = ["data.train=synth:48", "data.validation=synth-held-out:16", "train.max_steps=6", "train.save_steps=3",
         "train.eval_steps=3", "train.logging_steps=1", "train.per_device_train_batch_size=8",
         "model.load_in_4bit=true", "lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"]


@pytest.mark.slow
def test_sft_trains_records_and_resumes(tmp_path, backend, run_recipe):
    out = tmp_path / "run"
    result = run_recipe("smoke", out, QUICK + [f"model.backend={backend}"])
    assert result["backend"] == backend and result["steps"] == 6

    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in history if "loss" in row]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert [row["step"] for row in history if "eval_accuracy" in row] == [0, 3, 6]
    assert 0.0 <= result["eval_accuracy"] <= 1.0

    # LoRA B matrices start at zero; training must have moved them.
    adapter = load_file(out / "adapter" / "adapter_model.safetensors")
    lora_b = [tensor for name, tensor in adapter.items() if "lora_B" in name]
    assert lora_b and all(float(t.abs().sum()) > 0 for t in lora_b)
    assert len({name.split(".lora_")[0].rsplit(".", 1)[-1] for name in adapter}) == 7  # all seven projections

    run = json.loads((out / "run.json").read_text())
    assert run["versions"]["transformers"] and "git_commit" in run
    assert "max_steps: 6" in (out / "config.yaml").read_text()
    assert (out / "train_curves.png").stat().st_size > 10_000

    # Simulate a crash while checkpoint-6 was written (its trainer_state.json cut short), then resume: from
    # checkpoint-3, with a notice, and the train_loss reported is the whole run's, as uninterrupted.
    state_file = out / "checkpoints" / "checkpoint-6" / "trainer_state.json"
    state_file.write_text(state_file.read_text()[:200])
    shutil.rmtree(out / "adapter")
    resumed = run_recipe("smoke", out, QUICK + [f"model.backend={backend}"], "--resume")
    assert resumed["resumed_from"].endswith("checkpoint-3") and resumed["steps"] == 6
    resumed_losses = [json.loads(line).get("loss") for line in (out / "history.jsonl").read_text().splitlines()]
    whole_run = sum(x for x in resumed_losses if x is not None) / 6
    assert resumed["train_loss"] == pytest.approx(whole_run, rel=1e-9)
    # Resumed steps match the uninterrupted ones to about 1e-5 (4-bit CPU arithmetic), not bit for bit.
    assert resumed["train_loss"] == pytest.approx(result["train_loss"], rel=1e-4)
    state = json.loads(state_file.read_text())
    assert [row["step"] for row in state["log_history"] if "loss" in row] == [1, 2, 3, 4, 5, 6]
    assert json.loads((out / "run.json").read_text())["resumed"]
    finished = run_recipe("smoke", out, QUICK + [f"model.backend={backend}"], "--resume")  # nothing left to do
    assert finished["resumed_from"].endswith("checkpoint-6")
    assert finished["train_loss"] == pytest.approx(whole_run, rel=1e-9)


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(tmp_path, run_recipe):
    out = tmp_path / "run"
    run_recipe("smoke", out, QUICK + ["model.backend=hf", "train.max_steps=3"])
    result = CliRunner().invoke(main, ["recipe", "smoke", "--out", str(out), "--resume",
                                       "--set", "train.learning_rate=1e-3"])
    assert result.exit_code == 2 and "different settings" in result.output and "train.learning_rate" in result.output


def test_labels_cover_only_the_answer(tiny_model_dir, tmp_path):
    """Our prompt-completion rows through TRL's own preparation: only the letter and the end of the turn are
    labelled, every prompt token is -100."""
    from trl import SFTConfig, SFTTrainer

    from mcq_unsloth.model.lora import LoraArgs
    from mcq_unsloth.model.backends import load_model
    from mcq_unsloth.training.sft import prompt_completion_dataset
    from mcq_unsloth.data.synthetic import synth_questions

    loaded = load_model(str(tiny_model_dir), backend="hf", load_in_4bit=False, lora=LoraArgs(r=2))
    questions = synth_questions(4, seed=2)
    trainer = SFTTrainer(model=loaded.model, processing_class=loaded.tokenizer,
                         args=SFTConfig(output_dir=str(tmp_path), completion_only_loss=True, report_to=[]),
                         train_dataset=prompt_completion_dataset(questions))
    for question, row in zip(questions, sorted(trainer.train_dataset, key=lambda r: int(r["id"].rsplit("-", 1)[1]))):
        answer = [token for token, label in zip(row["input_ids"], row["labels"]) if label != -100]
        assert loaded.tokenizer.decode(answer) == f"{question.answer}<|im_end|>\n"
        assert row["labels"][: -len(answer)] == [-100] * (len(row["labels"]) - len(answer))


@pytest.mark.slow
def test_truncated_answers_stop_the_run(tmp_path):
    """With max_seq_length shorter than the prompt, TRL would drop every example; we stop and say so."""
    result = CliRunner().invoke(main, ["recipe", "smoke", "--out", str(tmp_path / "run"), "--set", "model.backend=hf",
                                       "--set", "model.max_seq_length=16"] + [a for o in QUICK for a in ("--set", o)])
    assert result.exit_code == 2 and "no answer token left" in result.output and "max_seq_length" in result.output


@pytest.mark.slow
def test_demo_learns_held_out_questions(tmp_path):
    """The demo's promise: the shipped smoke recipe lifts held-out accuracy by at least 0.25, and the q8_0 GGUF
    export answers like the model in llama.cpp."""
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary) == {"accuracy_before", "accuracy_after", "gguf_agreement", "seconds", "run_dir"}
    assert summary["gguf_agreement"] >= 0.98
    gguf = json.loads((tmp_path / "demo" / "metrics.json").read_text())["gguf"]
    assert gguf["questions"] == 200 and gguf["tokenization_identical"] == 200
    assert summary["accuracy_before"] <= 0.35
    assert summary["accuracy_after"] - summary["accuracy_before"] >= 0.25
    assert (tmp_path / "demo" / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "demo" / "train_curves.png").is_file()


def test_ctrl_c_names_the_checkpoint_and_the_resume_command(tmp_path, monkeypatch):
    import mcq_unsloth.training.run

    def interrupted(config, run_dir, resume=False):
        (run_dir / "checkpoints" / "checkpoint-3").mkdir(parents=True)
        (run_dir / "checkpoints" / "checkpoint-3" / "trainer_state.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(mcq_unsloth.training.run, "train_sft", interrupted)
    result = CliRunner().invoke(main, ["recipe", "smoke", "--out", str(tmp_path / "run"), "--set", "lora.r=4"])
    assert result.exit_code == 130
    assert "checkpoint-3" in result.output
    assert f"mcq-unsloth recipe smoke --resume --out {tmp_path / 'run'} --set lora.r=4" in result.output


def eval_accuracy_of(args) -> float:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])["accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("four_bit", [False, True], ids=["16-bit", "QLoRA"])
def test_the_last_logged_accuracy_is_what_eval_reports_for_the_adapter(tmp_path, backend, run_recipe, four_bit,
                                                                       learnt_model_dir):
    """eval_accuracy is logged by the function eval uses, on the same prompts, in the same precision; the run ends
    by measuring the saved model when training went on after the last evaluation (step 5 here, evaluations at
    3). The run's eval_command reproduces it anywhere; on a CPU, a 16-bit run's adapter also at eval's defaults.
    The model already answers well, so the accuracy compared is not chance level."""
    import shlex

    out = tmp_path / "run"
    result = run_recipe("smoke", out, QUICK + [f"model.name={learnt_model_dir}", f"model.backend={backend}",
                                               f"model.load_in_4bit={four_bit}", "data.validation=synth-held-out:64",
                                               "train.max_steps=5", "train.learning_rate=1e-2"])
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [row["step"] for row in history if "eval_accuracy" in row] == [0, 3, 5]
    logged = result["eval_accuracy"]
    assert logged == [row for row in history if "eval_accuracy" in row][-1]["eval_accuracy"] > 0.4
    command = shlex.split(result["eval_command"])
    assert command[:2] == ["mcq-unsloth", "eval"] and ("--4bit" in command) == four_bit
    assert eval_accuracy_of(command[1:] + ["--backend", backend]) == logged
    if not four_bit:
        assert eval_accuracy_of(["eval", "--model", str(out / "adapter"), "--data", str(out / "validation.jsonl"),
                                 "--out-dir", str(tmp_path / "defaults")]) == logged


@pytest.mark.slow
def test_the_same_seed_gives_the_same_adapter(tmp_path, backend, run_recipe):
    """LoRA's initial weights follow train.seed on both backends: the same recipe and seed twice give the same
    adapter, another seed another one."""
    import torch

    def adapter(name, seed):
        run_recipe("smoke", tmp_path / name, QUICK + [f"model.backend={backend}", "train.max_steps=2",
                                                      f"train.seed={seed}"])
        return load_file(tmp_path / name / "adapter" / "adapter_model.safetensors")

    first, second, other = adapter("a", 5), adapter("b", 5), adapter("c", 6)
    assert first.keys() == second.keys() == other.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first if "lora_A" in name)


@pytest.mark.slow
def test_eval_asks_an_adapter_with_the_prompt_it_was_trained_on(tmp_path, run_recipe):
    """The adapter's training record holds the recipe's prompt: eval uses it unless --prompt says otherwise."""
    from mcq_unsloth.data.questions import write_questions
    from mcq_unsloth.inference.scoring import score_questions
    from mcq_unsloth.model.backends import load_model
    from mcq_unsloth.prompts import PromptConfig
    from mcq_unsloth.records import training_record
    from mcq_unsloth.data.synthetic import synth_questions

    out = tmp_path / "run"
    system = "只回答一个字母。"
    run_recipe("smoke", out, QUICK + ["model.backend=hf", "model.load_in_4bit=false", "train.max_steps=2",
                                      f"prompt.system={system}"])
    assert training_record(out / "adapter")["prompt"] == {"template": "zh", "system": system, "user": None}
    data = tmp_path / "q.jsonl"
    questions = synth_questions(6, seed=3)
    write_questions(questions, data)

    def probabilities(*flags):
        result = CliRunner().invoke(main, ["eval", "--model", str(out / "adapter"), "--data", str(data), "--out-dir",
                                           str(tmp_path / f"eval{len(flags)}"), "--backend", "hf", *flags])
        assert result.exit_code == 0, result.output
        lines = (tmp_path / f"eval{len(flags)}" / "predictions.jsonl").read_text().splitlines()
        return result.output, [json.loads(line)["probabilities"] for line in lines]

    output, own = probabilities()
    assert "prompt: template zh with the adapter's own texts (the adapter's training record)" in output
    loaded = load_model(str(out / "adapter"), backend="hf")
    expected = score_questions(loaded.model, loaded.tokenizer, questions, PromptConfig(system=system))
    for got, scored in zip(own, expected):
        assert list(got.values()) == pytest.approx(list(scored.probabilities.values()), abs=1e-5)
    _, default_prompt = probabilities("--prompt", "zh")
    assert default_prompt != own  # --prompt zh is the built-in system prompt, not the adapter's
