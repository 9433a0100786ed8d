"""Typed recipe configuration: one dataclass per concern (``ModelArgs``, ``LoraArgs``, ``DataArgs``, ``TrainArgs``,
``GrpoArgs``; named so that none clashes with the ``LoraConfig``/``GRPOConfig`` of PEFT and TRL they feed), gathered
in :class:`Config` and validated on load.

Precedence is defaults < recipe YAML < ``--set a.b=value``. Unknown keys are errors naming the nearest
valid key, and every problem in a recipe is reported at once in one :class:`ConfigError`. Field names follow
TRL, PEFT and Unsloth (``per_device_train_batch_size``, ``r``, ``lora_alpha``) so their docs apply as is.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data.synth import source_problem
from .errors import ConfigError
from .model.precision import DTYPES
from .prompts import PromptConfig

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _choice(default: str, *choices: str, doc: str = ""):
    return field(default=default, metadata={"choices": choices, "doc": doc})


@dataclass
class ModelArgs:
    """Which model to load and how.

    ``name`` is a Hub id, a local folder (a base model, a merged model or a LoRA adapter folder), or
    ``tiny:qwen2`` / ``tiny:llama`` for a tiny random model built on the spot (tests, smoke runs).
    """

    name: str = "Qwen/Qwen2.5-7B-Instruct"
    backend: str = _choice("auto", "auto", "unsloth", "hf",
                           doc="unsloth: FastLanguageModel; hf: transformers + bitsandbytes + PEFT; auto: "
                               "unsloth when it imports")
    max_seq_length: int = 512
    load_in_4bit: bool = True
    dtype: str = _choice("auto", "auto", *DTYPES)

    def problems(self) -> list[str]:
        found = []
        if self.max_seq_length < 16:
            found.append(f"model.max_seq_length: {self.max_seq_length} is too short (at least 16)")
        if self.name.startswith("tiny:") and self.name[5:] not in ("qwen2", "llama"):
            found.append(f"model.name: {self.name!r}: tiny models are 'tiny:qwen2' or 'tiny:llama'")
        return found


@dataclass
class LoraArgs:
    """LoRA adapter settings, with PEFT's field names."""

    r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    bias: str = _choice("none", "none", "all", "lora_only")
    use_rslora: bool = False

    def problems(self) -> list[str]:
        found = []
        if self.r < 1:
            found.append(f"lora.r: must be at least 1, got {self.r}")
        if self.lora_alpha <= 0:
            found.append(f"lora.lora_alpha: must be positive (LoRA scales its update by lora_alpha / r), got "
                         f"{self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            found.append(f"lora.lora_dropout: must be in [0, 1), got {self.lora_dropout}")
        if not self.target_modules:
            found.append("lora.target_modules: name at least one module, e.g. q_proj")
        return found


@dataclass
class DataArgs:
    """Where questions come from and how they are split.

    ``train`` is a file path, ``shipped:NAME`` for a file in the package's ``data/`` folder, ``synth:N`` for
    N generated synthetic questions (seeded by ``seed``), or ``synth-held-out:N`` for synthetic questions in
    phrasings and characters that ``synth:N`` never uses. Without ``validation``, a seeded
    ``val_fraction`` of ``train`` is held out. ``subset`` keeps a seeded, answer-stratified share of train.
    ``language``: the questions' languages as ISO 639 codes (``[zh]``), for the model card's metadata; unset,
    the card takes the base model's, when its card says them.
    """

    train: str | None = None
    validation: str | None = None
    val_fraction: float = 0.1
    subset: float = 1.0
    seed: int = 42
    language: list[str] | None = None

    def problems(self) -> list[str]:
        found = []
        if not 0.0 <= self.val_fraction < 1.0:
            found.append(f"data.val_fraction: must be in [0, 1), got {self.val_fraction}")
        if not 0.0 < self.subset <= 1.0:
            found.append(f"data.subset: must be in (0, 1], got {self.subset}")
        for name in ("train", "validation"):
            value = getattr(self, name)
            if value and (problem := source_problem(value)):
                found.append(f"data.{name}: {value!r}: {problem}")
        for code in self.language or ():
            if not re.fullmatch(r"[a-z]{2,3}", str(code)):
                found.append(f"data.language: {code!r} is not an ISO 639 code; write a list of codes such as "
                             f"[zh] or [zh, en]")
        return found


@dataclass
class TrainArgs:
    """Trainer settings, passed to TRL under the same names."""

    learning_rate: float = 2e-4
    num_train_epochs: float = 3.0
    max_steps: int = -1
    per_device_train_batch_size: int = 4
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = 0.03  # below 1: a fraction of all steps (transformers 5 semantics)
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    logging_steps: int = 10
    eval_steps: int = 100
    save_steps: int = 100
    save_total_limit: int | None = 3
    load_best_model_at_end: bool = False
    metric_for_best_model: str = "eval_loss"
    gradient_checkpointing: bool = True
    report_to: list[str] = field(default_factory=lambda: ["none"])
    seed: int = 42
    ddp_timeout: int = 1800  # seconds any collective of a launch waits before the launch stops

    def effective_batch(self, processes: int = 1) -> int:
        """Examples (GRPO: completions) per optimizer step: per device x accumulation x processes."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * processes

    def problems(self) -> list[str]:
        found = []
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                     "logging_steps", "eval_steps", "save_steps"):
            if getattr(self, name) < 1:
                found.append(f"train.{name}: must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            found.append(f"train.learning_rate: must be positive, got {self.learning_rate}")
        if self.warmup_steps < 0:
            found.append(f"train.warmup_steps: must be 0 or more (below 1 a fraction of all steps), got "
                         f"{self.warmup_steps:g}")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            found.append("train: set num_train_epochs > 0 or max_steps > 0")
        if self.load_best_model_at_end and self.save_steps % self.eval_steps:
            found.append(f"train.save_steps ({self.save_steps}) must be a multiple of eval_steps "
                         f"({self.eval_steps}) when load_best_model_at_end is true")
        return found


@dataclass
class GrpoArgs:
    """GRPO settings, passed to TRL's ``GRPOConfig`` under the same names.

    ``reward_weights`` names the rewards of :mod:`mcq_unsloth.training.rewards` to compute, with their weights; a weight
    of 0 logs a reward without training on it (``contest_format``, for comparison with the contest's runs).
    """

    num_generations: int = 8
    max_completion_length: int = 256
    beta: float = 0.04
    temperature: float = 1.0
    reward_weights: dict[str, float] = field(default_factory=lambda: {
        "correct": 1.0, "format": 0.2, "neutral": 0.1, "contest_format": 0.0})
    fast_inference: bool = False  # Unsloth's vLLM generation: needs the unsloth backend, a GPU and vLLM
    gpu_memory_utilization: float = 0.6  # the GPU share vLLM may take, with fast_inference

    def problems(self) -> list[str]:
        from .training.rewards import REWARDS

        found = []
        if self.num_generations < 2:
            found.append(f"grpo.num_generations: at least 2 (a group needs something to compare), got "
                         f"{self.num_generations}")
        unknown = [name for name in self.reward_weights if name not in REWARDS]
        if unknown:
            found.append(f"grpo.reward_weights: unknown reward(s) {unknown}; choose from {sorted(REWARDS)}")
        if not any(weight > 0 for weight in self.reward_weights.values()):
            found.append("grpo.reward_weights: give at least one reward a positive weight")
        return found


@dataclass
class Config:
    """A whole recipe."""

    task: str = _choice("sft", "sft", "grpo", doc="what running the recipe does")
    version: int = 1
    model: ModelArgs = field(default_factory=ModelArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    data: DataArgs = field(default_factory=DataArgs)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    train: TrainArgs = field(default_factory=TrainArgs)
    grpo: GrpoArgs = field(default_factory=GrpoArgs)

    def problems(self) -> list[str]:
        from .processes import count

        # TRL's groups span the processes of a launch: a batch is checked in this launch's process count.
        problem = grpo_batch_problem(self, count())
        return [problem] if problem else []


def grpo_batch_problem(config: Config, processes: int) -> str | None:
    """Why a GRPO batch cannot hold whole groups of ``grpo.num_generations`` completions in a launch of
    ``processes`` processes (TRL generates per device x accumulation x processes completions per step, in whole
    groups), listing values that work; None when it can, or for SFT.

    >>> grpo_batch_problem(Config(task="grpo", train=TrainArgs(per_device_train_batch_size=2),
    ...                           grpo=GrpoArgs(num_generations=4)), processes=2) is None
    True
    >>> print(grpo_batch_problem(Config(task="grpo", train=TrainArgs(per_device_train_batch_size=3),
    ...                                 grpo=GrpoArgs(num_generations=4)), processes=2))
    grpo.num_generations (4) must divide train.per_device_train_batch_size x train.gradient_accumulation_steps x processes = 3 x 1 x 2 = 6 (TRL generates whole groups per batch); values that work: 2, 3, 6
    """
    train = config.train
    batch = train.effective_batch(processes)
    if config.task != "grpo" or batch % config.grpo.num_generations == 0:
        return None
    working = [n for n in range(2, batch + 1) if batch % n == 0]
    return (f"grpo.num_generations ({config.grpo.num_generations}) must divide train.per_device_train_batch_size x "
            f"train.gradient_accumulation_steps x processes = {train.per_device_train_batch_size} x "
            f"{train.gradient_accumulation_steps} x {processes} = {batch} (TRL generates whole groups per batch); "
            f"values that work: {', '.join(map(str, working))}")


def check_trainer_names(train: TrainArgs) -> None:
    """Raise :class:`ConfigError` for a ``train.optim`` or ``train.lr_scheduler_type`` that transformers does not
    know, naming the nearest ones. It imports transformers: call it once the backend is chosen (Unsloth first).

    >>> check_trainer_names(TrainArgs(optim="adamw_fake"))
    Traceback (most recent call last):
    ...
    mcq_unsloth.errors.ConfigError: train.optim: 'adamw_fake' is not an optimizer transformers knows; did you mean 'adamw_8bit', 'adamw_torch_fused' or 'adamw_torch'?
    """
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    problems = []
    for key, what, names in (("optim", "an optimizer", [o.value for o in OptimizerNames]),
                             ("lr_scheduler_type", "a learning-rate scheduler", [s.value for s in SchedulerType])):
        value = getattr(train, key)
        if value not in names:
            close = difflib.get_close_matches(value, names, n=3, cutoff=0.4) or names[:3]
            listed = ", ".join(repr(n) for n in close[:-1]) + f" or {close[-1]!r}" if len(close) > 1 else repr(close[0])
            problems.append(f"train.{key}: {value!r} is not {what} transformers knows; did you mean {listed}?")
    if problems:
        raise ConfigError(problems)


def load_config(path: str | Path, overrides: list[str] = (), typed: dict[str, Any] | None = None) -> Config:
    """Read a recipe YAML, apply ``a.b=value`` overrides (and ``typed``, a dict of dotted keys to values), and
    validate. Raises :class:`ConfigError`."""
    path = Path(path)
    try:
        data = yaml.safe_load(recipe_text(path)) or {}
    except yaml.YAMLError as error:
        raise ConfigError([f"not valid YAML: {error}"], str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError([f"a recipe is a mapping of sections, got {type(data).__name__}"], str(path))
    return from_dict(data, overrides, source=str(path), typed=typed)


def recipe_text(path: Path) -> str:
    """A recipe file's text. Raises :class:`ConfigError` for a file that is not UTF-8, naming the line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ConfigError([f"line {line}: byte 0x{raw[error.start]:02x} is not UTF-8; save the file as UTF-8"],
                          str(path)) from None


def from_dict(data: dict[str, Any], overrides: list[str] = (), source: str | None = None,
              typed: dict[str, Any] | None = None) -> Config:
    """Build and validate a :class:`Config` from plain data plus ``a.b=value`` overrides, then ``typed`` ones (a
    dict of dotted keys to values, as Python gives them).

    >>> from_dict({"lora": {"r": 8}}, ["train.learning_rate=1e-4"]).lora.r
    8
    >>> from_dict({}, typed={"lora.target_modules": ["q_proj"], "train.max_steps": 5}).lora.target_modules
    ['q_proj']
    >>> from_dict({"lora": {"rank": 8}})
    Traceback (most recent call last):
    ...
    mcq_unsloth.errors.ConfigError: lora.rank: unknown key; did you mean 'lora.r'?
    """
    problems: list[str] = []
    data = _deep_copy(data)
    for override in overrides:
        problems += _apply_override(data, override)
    for key, value in (typed or {}).items():
        problems += _set_key(data, key, value, f"overrides[{key!r}]")
    config, found = _build(Config, data, "")
    problems += found
    if problems:
        raise ConfigError(problems, source)
    return config


def to_dict(config: Config) -> dict[str, Any]:
    """The configuration as plain data, in field order (what is saved as a run's ``config.yaml``)."""
    return dataclasses.asdict(config)


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True)


def valid_keys(cls=Config, prefix: str = "") -> list[str]:
    """Every settable dotted key, e.g. ``lora.r``."""
    keys = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            keys += valid_keys(hint, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


# --- building and checking ----------------------------------------------------------------------------

def _build(cls, data: Any, prefix: str):
    if not isinstance(data, dict):
        return cls(), [f"{prefix.rstrip('.') or 'recipe'}: expected a mapping of keys, got {data!r}"]
    problems: list[str] = []
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            problems.append(_unknown(prefix + str(key), [prefix + n for n in names]))
            continue
        f = next(f for f in dataclasses.fields(cls) if f.name == key)
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key], found = _build(hint, value, f"{prefix}{key}.")
            problems += found
            continue
        converted, problem = _convert(value, hint)
        if problem:
            problems.append(f"{prefix}{key}: {problem}")
            continue
        choices = f.metadata.get("choices")
        if choices and converted not in choices:
            problems.append(f"{prefix}{key}: {converted!r} is not one of {list(choices)}")
            continue
        kwargs[key] = converted
    instance = cls(**kwargs)
    if not problems:
        problems += instance.problems()
    return instance, problems


def _convert(value: Any, hint) -> tuple[Any, str | None]:
    """Check ``value`` against a field's type, converting where YAML is ambiguous (``2e-4`` is a string)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None, None
        return _convert(value, args[0])
    if origin is dict:
        if not isinstance(value, dict):
            return None, f"expected a mapping of name: number, got {value!r}"
        out = {}
        for key, item in value.items():
            converted, problem = _convert(item, typing.get_args(hint)[1])
            if problem:
                return None, f"{key}: {problem}"
            out[str(key)] = converted
        return out, None
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            return None, f"expected a list, got {value!r}"
        (item,) = typing.get_args(hint)
        out = []
        for v in value:
            converted, problem = _convert(v, item)
            if problem:
                return None, problem
            out.append(converted)
        return out, None
    if hint is bool:
        if isinstance(value, bool):
            return value, None
        return None, f"expected true or false, got {value!r}"
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value, None
        if isinstance(value, float) and value.is_integer():
            return int(value), None
        return None, f"expected a whole number, got {value!r}"
    if hint is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and not math.isfinite(number):
            return None, f"expected a finite number, got {value!r}"  # nan or inf: no setting takes them
        return (number, None) if number is not None else (None, f"expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value), None
        return None, f"expected text, got {value!r}"
    raise TypeError(f"unsupported config type {hint}")


def _apply_override(data: dict[str, Any], override: str) -> list[str]:
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        return [f"--set {override!r}: write --set section.key=value, e.g. --set train.learning_rate=1e-4"]
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return _set_key(data, key, value, f"--set {key}")


def _set_key(data: dict[str, Any], key: str, value: Any, label: str) -> list[str]:
    """Set the dotted ``key`` of the recipe data to ``value``; an unknown key is a problem named with ``label``."""
    if key not in valid_keys():
        return [_unknown(key, valid_keys(), label)]
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[leaf] = value
    return []


def _unknown(key: str, valid: list[str], label: str | None = None) -> str:
    """The message for an unknown key, naming the nearest valid one.

    >>> _unknown("train.lr", valid_keys()), _unknown("train.batch_size", valid_keys())
    ("train.lr: unknown key; did you mean 'train.learning_rate'?", "train.batch_size: unknown key; did you mean 'train.per_device_train_batch_size'?")
    """
    section, _, leaf = key.rpartition(".")
    siblings = [k for k in valid if k.rpartition(".")[0] == section]
    close = (
        # An abbreviation (lr -> learning_rate), then a key that contains it (batch_size), then spelling.
        [k for k in siblings if "".join(w[0] for w in k.rpartition(".")[2].split("_")) == leaf]
        or [k for k in siblings if leaf and leaf in k.rpartition(".")[2]]
        or difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    )
    return f"{label or key}: unknown key" + (f"; did you mean '{close[0]}'?" if close else "")


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data
