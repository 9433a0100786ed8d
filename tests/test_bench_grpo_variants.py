"""bench/grpo_variants.py: each GRPO variant's settings reach TRL's trainer, the table has a row a variant, and a
rerun with --resume keeps the finished runs."""

import json

import pytest

from helpers import error_line, run

QUICK = ["--model", "tiny:qwen2", "--rounds", "1", "--set", "train.max_steps=2", "--set", "data.train=synth:16",
         "--set", "data.validation=synth-held-out:8", "--set", "train.per_device_train_batch_size=8",
         "--set", "grpo.max_completion_length=4"]


@pytest.mark.slow
def test_each_variant_reaches_the_trainer_and_a_resumed_bench_keeps_finished_runs(tmp_path):
    out = tmp_path / "variants"
    result = run("bench", "grpo-variants", "--out", out, "--variants", "dr_grpo,gspo", *QUICK)
    assert result.exit_code == 0, result.output
    rows = [line.split("|")[1].strip() for line in result.stdout.splitlines() if line.startswith("| ")][1:]
    assert rows == ["dr_grpo", "gspo"]
    record = json.loads((out / "variants.json").read_text())
    assert [(r["variant"], r["steps"]) for r in record["runs"]] == [("dr_grpo", 2), ("gspo", 2)]
    assert all(r["eval_accuracy"] is not None and r["seconds_per_step"] > 0 for r in record["runs"])
    trainer = {name: json.loads((out / f"{name}-r0" / "run.json").read_text())["trainer"]["values"]
               for name in ("dr_grpo", "gspo")}  # read back from each trainer's args
    assert (trainer["dr_grpo"]["loss_type"], trainer["dr_grpo"]["scale_rewards"]) == ("dr_grpo", "none")
    assert (trainer["gspo"]["loss_type"], trainer["gspo"]["importance_sampling_level"]) == ("grpo", "sequence")

    assert "already holds a benchmark" in error_line(run("bench", "grpo-variants", "--out", out, *QUICK))
    finished = (out / "gspo-r0" / "run.json").stat().st_mtime_ns
    resumed = run("bench", "grpo-variants", "--out", out, "--variants", "dr_grpo,gspo", "--resume", *QUICK)
    assert resumed.exit_code == 0, resumed.output
    assert (out / "gspo-r0" / "run.json").stat().st_mtime_ns == finished


def test_an_unknown_variant_is_one_line():
    line = error_line(run("bench", "grpo-variants", "--variants", "grpo,ppo", "--model", "tiny:qwen2"))
    assert "variants: ppo not among grpo, bnpo, dr_grpo, dapo, gspo" in line
