"""training/trainer_settings.py: every field of TRL's trainer configuration reachable from a recipe, checked against
the installed TRL and transformers before a run folder exists, and shown as it reaches the trainer."""

import dataclasses
import json
import re

import pytest
import yaml

from mcq_unsloth.config import ConfigError, from_dict, load_config
from mcq_unsloth.training import trainer_settings
from mcq_unsloth.training.recipes import shipped_recipes

from helpers import error_line, ok, run

GRPO_QUICK = ["model.name=tiny:qwen2", "data.train=synth:16", "train.max_steps=1", "train.save_steps=1",
              "train.per_device_train_batch_size=8", "grpo.max_completion_length=4"]
SFT_QUICK = ["train.max_steps=1", "data.train=synth:16", "data.validation=synth-held-out:8"]


def problems(task, overrides):
    config = from_dict({"task": task, "train": {"per_device_train_batch_size": 8}}, overrides)
    with pytest.raises(ConfigError) as raised:
        trainer_settings.check(config)
    return raised.value.problems


MISTAKES = [  # (task, --set, what the one line says)
    ("sft", "train.lr=1e-4", "train.lr: unknown key; did you mean 'train.learning_rate'?"),            # abbreviated
    ("sft", "train.batch_size=4", "did you mean 'train.per_device_train_batch_size'?"),              # partial name
    ("sft", "train.neftune_noise_alfa=5", "did you mean 'train.neftune_noise_alpha'? (not a field of TRL's SFTConfig)"),
    ("grpo", "grpo.loss_typ=dr_grpo", "grpo.loss_typ: unknown key; did you mean 'grpo.loss_type'?"),   # TRL's, misspelt
    ("sft", "train.neftune_noise_alpha=[5]", "train.neftune_noise_alpha: expected a number, got [5]"),  # a list
    ("sft", "train.torch_compile=maybe", "train.torch_compile: expected true or false, got 'maybe'"),  # a bool
    ("grpo", "grpo.num_iterations=1.5", "grpo.num_iterations: expected a whole number, got 1.5"),
    ("grpo", "grpo.loss_type=gspo", "grpo.loss_type: 'gspo' is not one of ['grpo', 'dr_grpo', 'dapo', 'bnpo'"),
    ("grpo", "grpo.importance_sampling_level=seq", "'seq' is not one of ['token', 'sequence']"),
    ("grpo", "grpo.scale_rewards=std", "'std' is not one of ['group', 'batch', 'none', True, False]"),
    ("sft", "train.loss_type=dapo", "train.loss_type: 'dapo' is not one of ['nll', 'dft', 'chunked_nll']"),  # SFT's
    ("sft", "train.optim=adamw_fake", "train.optim: 'adamw_fake' is not an optimizer transformers knows; did you mean"),
    ("sft", "train.lr_scheduler_type=cosinus", "not a learning-rate scheduler transformers knows; did you mean 'cosine"),
    ("sft", "train.output_dir=elsewhere", "train.output_dir: set by mcq-unsloth, not by a recipe: the run folder"),
    ("sft", "train.max_length=64", "train.max_length: set by mcq-unsloth, not by a recipe: the model loader and the "
                                   "trainer share one length: set model.max_seq_length"),
    ("sft", "train.bf16=true", "train.bf16: set by mcq-unsloth, not by a recipe: mixed precision follows model.dtype"),
    ("sft", "train.completion_only_loss=false", "SFT here puts the loss on the answer only"),
    ("grpo", "grpo.use_vllm=true", "grpo.use_vllm: set by mcq-unsloth, not by a recipe: set grpo.fast_inference"),
    ("grpo", "train.loss_type=dr_grpo", "train.loss_type: a GRPO setting (GRPOConfig): write grpo.loss_type"),
    ("grpo", "grpo.learning_rate=1e-4", "grpo.learning_rate: a setting of every trainer (TrainingArguments): write "
                                        "train.learning_rate"),
    ("grpo", "train.packing=true", "train.packing: an SFT setting (SFTConfig), and this recipe's task is grpo"),
    ("sft", "train.group_by_length=true", "write train.train_sampling_strategy=group_by_length (transformers 5)"),
    ("sft", "train.warmup_ratio=0.1", "train.warmup_ratio: not a setting of the installed transformers or TRL; write "
                                      "train.warmup_steps: a value below 1 is a share of the steps"),
    ("sft", "train.parallelism_config=1", "takes a ParallelismConfig object, which a recipe cannot write"),
]


@pytest.mark.parametrize("task, setting, says", MISTAKES)
def test_each_mistake_is_named(task, setting, says):
    found = problems(task, [setting])
    assert len(found) == 1 and says in found[0], found


def test_every_mistake_is_listed_at_once():
    found = problems("grpo", ["train.lr=1", "grpo.loss_type=x", "train.output_dir=y"])
    assert [p.split(":")[0] for p in found] == ["train.lr", "train.output_dir", "grpo.loss_type"]


def test_trl_refusals_and_settings_an_installed_library_switches_off_are_one_line_each():
    import torch

    # TRL's own __post_init__ check, as a problem of the recipe rather than a traceback.
    found = problems("grpo", ["train.auto_find_batch_size=true"])  # a halved batch would split GRPO's groups
    assert len(found) == 1 and found[0].startswith("train/grpo: TRL's GRPOConfig refuses these settings: ")
    assert "auto_find_batch_size" in found[0] and "\n" not in found[0]
    if not torch.cuda.is_available():  # Unsloth's CPU backend turns these off without an error of its own
        for name in ("padding_free", "packing"):
            (found,) = problems("sft", [f"train.{name}=true"])
            assert found.startswith(f"train.{name}: Unsloth's CPU backend") and "runs on a GPU" in found


def test_fields_the_toolkit_never_names_reach_trls_configuration(tmp_path):
    sft = from_dict({"task": "sft"}, ["train.neftune_noise_alpha=5", "train.lr_scheduler_kwargs={min_lr: 1.0e-6}",
                                      "train.loss_type=dft"])
    args = trainer_settings.trainer_config(sft, tmp_path, evaluating=True)
    assert (args.neftune_noise_alpha, args.lr_scheduler_kwargs, args.loss_type) == (5, {"min_lr": 1e-6}, "dft")
    assert (args.output_dir, args.max_length, args.eval_strategy.value) == (str(tmp_path / "checkpoints"), 512, "steps")
    grpo = from_dict({"task": "grpo", "train": {"per_device_train_batch_size": 8}},
                     ["grpo.loss_type=dr_grpo", "grpo.importance_sampling_level=sequence", "grpo.epsilon_high=0.28",
                      "grpo.scale_rewards=true"])
    args = trainer_settings.trainer_config(grpo, tmp_path, evaluating=False)
    assert (args.loss_type, args.importance_sampling_level, args.epsilon_high) == ("dr_grpo", "sequence", 0.28)
    assert args.scale_rewards == "group"  # TRL's own reading of true
    assert args.reward_weights == list(grpo.grpo.reward_weights.values())


def test_trls_help_text_still_lists_the_grpo_choices():
    """CHOICES copies what TRL keeps in its help text only; a TRL that adds or drops a variant fails here."""
    from trl import GRPOConfig

    help_text = {f.name: f.metadata["help"] for f in dataclasses.fields(GRPOConfig)}
    listed = re.search(r"Supported values are (.*?)\.\s", help_text["loss_type"]).group(1)
    assert sorted(re.findall(r"'(\w+)'", listed)) == sorted(trainer_settings.CHOICES["loss_type"])
    for name in ("scale_rewards", "importance_sampling_level"):
        for choice in trainer_settings.CHOICES[name]:
            assert re.search(rf"[`']{choice}\b", help_text[name]), (name, choice)


def test_owned_and_renamed_fields_are_named_as_the_installed_libraries_have_them():
    from trl import GRPOConfig, SFTConfig

    known = {f.name for cls in (SFTConfig, GRPOConfig) for f in dataclasses.fields(cls)}
    assert set(trainer_settings.OWNED) <= known
    assert not set(trainer_settings.RENAMED) & known


@pytest.mark.parametrize("name", sorted(shipped_recipes()))
def test_every_shipped_recipe_passes_the_trainer_check(name):
    trainer_settings.check(load_config(shipped_recipes()[name]))


def test_grpo_50pct_pins_the_contests_loss_with_where_each_value_came_from():
    path = shipped_recipes()["grpo_50pct"]
    grpo = load_config(path).grpo
    assert (grpo.passthrough["loss_type"], grpo.beta, grpo.passthrough["scale_rewards"],
            grpo.passthrough["epsilon"]) == ("grpo", 0.04, "group", 0.2)
    lines = {line.split(":")[0].strip(): line for line in path.read_text().splitlines() if line.startswith("  ")}
    for key in ("loss_type", "beta", "scale_rewards", "epsilon"):
        assert "# " in lines[key] and "TRL" in lines[key], lines[key]  # each pinned value says where it came from


def test_recipe_show_resolved_lists_what_reaches_the_trainer_and_the_defaults_not_set():
    result = run("recipe", "show", "grpo_smoke", "--resolved", "--set", "grpo.loss_type=dr_grpo")
    assert result.exit_code == 0, result.output
    text = result.stdout
    grpo = text[text.index("\ngrpo:"):]
    assert "\n  loss_type: dr_grpo\n" in grpo
    defaults = grpo[grpo.index("# library defaults, not set by this recipe (trl "):]
    assert "\n  #   importance_sampling_level: token\n" in defaults and "\n  #   epsilon: 0.2\n" in defaults
    train = text[text.index("\ntrain:"):text.index("\ngrpo:")]
    assert "#   adam_beta1: 0.9\n" in train and "#   output_dir: runs/grpo_smoke/checkpoints\n" in train
    assert yaml.safe_load(text)["grpo"]["loss_type"] == "dr_grpo"  # the comments leave a loadable recipe


def test_the_apis_overrides_reach_trl_fields_and_are_checked_the_same_way():
    import mcq_unsloth as mu

    shown = mu.show_recipe("smoke", overrides={"train.neftune_noise_alpha": 5}, resolved=False)
    assert yaml.safe_load(shown)["train"]["neftune_noise_alpha"] == 5
    with pytest.raises(mu.ConfigError, match=r"train\.neftune_noise_alpha: expected a number, got \[5\]"):
        mu.show_recipe("smoke", overrides={"train.neftune_noise_alpha": [5]})


@pytest.mark.parametrize("setting, says", [
    ("train.neftune_noise_alfa=5", "train.neftune_noise_alfa: unknown key; did you mean 'train.neftune_noise_alpha'?"),
    ("train.neftune_noise_alpha=loud", "train.neftune_noise_alpha: expected a number, got 'loud'"),
    ("train.output_dir=elsewhere", "train.output_dir: set by mcq-unsloth, not by a recipe"),
])
def test_a_refused_field_stops_the_run_in_one_line_and_leaves_no_run_folder(tmp_path, setting, says):
    out = tmp_path / "run"
    line = error_line(run("recipe", "smoke", "--out", out, "--set", setting, *[a for o in SFT_QUICK
                                                                              for a in ("--set", o)]))
    assert says in line, line
    assert not out.exists()


def test_a_trl_field_reaches_the_trainers_args_and_the_run_record(tmp_path):
    out = tmp_path / "sft"
    assert ok(run("recipe", "smoke", "--out", out, "--set", "train.neftune_noise_alpha=5",
                  *[a for o in SFT_QUICK for a in ("--set", o)]))["steps"] == 1
    record = json.loads((out / "run.json").read_text())
    assert record["trainer"]["class"] == "SFTConfig" and record["trainer"]["trl"]
    assert record["trainer"]["values"]["neftune_noise_alpha"] == 5  # read back from the trainer's args
    saved = (out / "config.yaml").read_text()
    assert yaml.safe_load(saved)["train"]["neftune_noise_alpha"] == 5 and "# library defaults" in saved

    out = tmp_path / "grpo"
    assert ok(run("recipe", "grpo_smoke", "--out", out, "--set", "grpo.loss_type=dr_grpo",
                  *[a for o in GRPO_QUICK for a in ("--set", o)]))["steps"] == 1
    values = json.loads((out / "run.json").read_text())["trainer"]["values"]
    assert (values["loss_type"], values["beta"]) == ("dr_grpo", 0.04)


def test_resuming_without_a_trl_field_the_run_started_with_is_refused(tmp_path):
    from mcq_unsloth.errors import RunExists
    from mcq_unsloth.training.folders import _check_same_config

    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"task": "sft", "train": {"neftune_noise_alpha": 5}}))
    with pytest.raises(RunExists, match=r"train\.neftune_noise_alpha"):
        _check_same_config(tmp_path, from_dict({"task": "sft"}))


def test_an_example_longer_than_max_seq_length_stops_padding_free_and_packed_runs(tiny_tokenizer):
    from datasets import Dataset

    from mcq_unsloth.data.questions import Question
    from mcq_unsloth.errors import DataError
    from mcq_unsloth.prompts import PromptConfig
    from mcq_unsloth.training.sft import _Lengths

    short = Question(id="s", question="1+1?", options={"A": "2", "B": "3"}, answer="A", row=2)
    long = Question(id="l", question="很长的问题" * 60, options={"A": "是", "B": "否"}, answer="B", row=3)
    lengths = _Lengths(tiny_tokenizer, PromptConfig(), 256)  # the template alone is about 170 tokens
    flattened = Dataset.from_list([{"id": "s", "input_ids": [1] * 60}, {"id": "l", "input_ids": [1] * 300}])
    with pytest.raises(DataError, match=r"1 example\(s\) are longer than model.max_seq_length=256 tokens.*'l' \(300"):
        lengths.check(flattened, [short, long], "q.csv")
    packed = Dataset.from_list([{"input_ids": [1] * 256}])  # TRL's packed rows: token columns only
    with pytest.raises(DataError, match=r"first id 'l'") as raised:
        lengths.check(packed, [short, long], "q.csv")
    assert "row 3" in str(raised.value)
    lengths.check(packed, [short], "q.csv")  # a short example passes


def test_every_setting_the_page_shows_has_its_help_and_default_and_the_form_round_trips():
    from mcq_unsloth.config import Config, valid_keys
    from mcq_unsloth.training.recipe_fields import library_fields, recipe_fields

    fields = recipe_fields(Config(task="grpo"))
    assert [f.key for f in fields] == valid_keys()  # the form is the configuration, key for key
    assert [f.key for f in fields if not f.help] == []
    assert {f.key: f.kind for f in fields}["train.optim"] == "choice"  # TRL's enum, as a list to pick from
    learning_rate = next(f for f in fields if f.key == "train.learning_rate")
    assert learning_rate.override(2e-4) is None and learning_rate.override(1e-3) == "train.learning_rate=0.001"
    names = {f.key for f in library_fields("grpo")}
    assert "grpo.loss_type" in names and "train.neftune_noise_alpha" in names
    assert not names & {"train.output_dir", "train.bf16", "grpo.use_vllm"}  # the toolkit's own: not offered
