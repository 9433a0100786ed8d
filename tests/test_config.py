"""Typed recipe configuration: defaults < YAML < --set, every problem reported at once."""

from pathlib import Path

import pytest

from mcq_unsloth.config import Config, from_dict, load_config, valid_keys
from mcq_unsloth.errors import ConfigError

from helpers import error_line, run


def problems(data, overrides=()):
    with pytest.raises(ConfigError) as error:
        from_dict(data, list(overrides))
    return error.value.problems


def test_defaults_match_the_contest_lora():
    config = Config()
    assert (config.lora.r, config.lora.lora_alpha, config.lora.lora_dropout) == (16, 32, 0.05)
    assert config.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert config.train.report_to == ["none"]  # nothing is sent anywhere by default


def test_precedence_defaults_then_yaml_then_set(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("lora:\n  r: 8\ntrain:\n  learning_rate: 2e-4\n  seed: 1\n")
    config = load_config(path, ["train.seed=9", "lora.target_modules=[q_proj, v_proj]"])
    assert config.lora.r == 8                              # from YAML
    assert config.train.learning_rate == 2e-4              # YAML's "2e-4" is a string to PyYAML: converted
    assert config.train.seed == 9                          # --set beats YAML
    assert config.lora.target_modules == ["q_proj", "v_proj"]
    assert config.lora.lora_alpha == 32                    # default


# (data, overrides, the problem expected) -- one per kind of mistake
MISTAKES = [
    ({"lora": {"rank": 8}}, [], "lora.rank: unknown key; did you mean 'lora.r'?"),                 # misspelt key
    ({"trian": {}}, [], "trian: unknown key; did you mean 'train'?"),                             # misspelt section
    ({}, ["lora.rnak=4"], "--set lora.rnak: unknown key; did you mean 'lora.r'?"),                # --set, misspelt
    ({}, ["trian.seed=1"], "--set trian.seed: unknown key; did you mean 'train.seed'?"),            # section misspelt
    ({"model": {"backend": "vllm"}}, [], "model.backend: 'vllm' is not one of ['auto', 'unsloth', 'hf']"),
    ({"train": {"learning_rate": "fast"}}, [], "train.learning_rate: expected a number, got 'fast'"),
    ({"lora": {"r": 0}}, [], "lora.r: must be at least 1, got 0"),                                 # value check
    ({"data": {"subset": 1.5}}, [], "data.subset: must be in (0, 1], got 1.5"),
    ({"data": {"train": "synth:many"}}, [], "write synth:N"),
    ({"model": {"name": "tiny:gpt2"}}, [], "tiny models are 'tiny:qwen2' or 'tiny:llama'"),
    ({"train": {"load_best_model_at_end": True, "eval_steps": 30, "save_steps": 100}}, [], "multiple of eval_steps"),
    ({}, ["lora.r"], "write --set section.key=value"),                                              # no '='
    ({"lora": 5}, [], "lora: expected a mapping"),
    ({"version": 2}, [], "version: this recipe is written for format 2, and this mcq-unsloth reads format 1: upgrade"),
    ({"version": 0}, [], "version: this recipe is written for format 0, and this mcq-unsloth reads format 1"),
]


@pytest.mark.parametrize("data,overrides,expected", MISTAKES)
def test_mistakes_are_named(data, overrides, expected):
    assert any(expected in problem for problem in problems(data, overrides))


def test_all_problems_are_reported_together():
    found = problems({"lora": {"rank": 8}, "train": {"learning_rate": "x"}, "modle": {}}, ["data.seed=abc"])
    assert len(found) == 4


def test_valid_keys_lists_every_field():
    keys = valid_keys()
    assert {"model.name", "lora.r", "train.per_device_train_batch_size", "prompt.user", "data.subset"} <= set(keys)


def test_bad_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("lora: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


# --- a recipe that is not UTF-8 --------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["recipe"], ["recipe", "show"]])
def test_a_recipe_in_another_encoding_is_one_line(tmp_path, command):
    recipe = tmp_path / "mine.yaml"
    recipe.write_bytes("# 我的配方\ntrain:\n  max_steps: 3\n".encode("gbk"))
    line = error_line(run(*command, recipe))
    assert line == f"Error: {recipe}: line 1: byte 0xce is not UTF-8; save the file as UTF-8"
    assert not Path("runs/mine").exists()
