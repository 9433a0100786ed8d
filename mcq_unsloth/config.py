"""Typed recipe configuration: one dataclass per concern (``ModelArgs``, ``LoraArgs``, ``DataArgs``, ``TrainArgs``,
``GrpoArgs``; named so that none clashes with the ``LoraConfig``/``GRPOConfig`` of PEFT and TRL they feed), gathered
in :class:`Config` and validated on load.

Precedence is defaults < recipe YAML < ``--set a.b=value``. Unknown keys are errors naming the nearest
valid key, and every problem in a recipe is reported at once in one :class:`ConfigError`. Field names follow
TRL, PEFT and Unsloth (``per_device_train_batch_size``, ``r``, ``lora_alpha``) so their docs apply as is.

The ``train`` and ``grpo`` sections also take any other field of TRL's trainer configuration (``SFTConfig``,
``GRPOConfig`` and transformers' ``TrainingArguments`` under them), kept as given in the section's
``passthrough``: checking those needs TRL, which this module does not import, so
:mod:`mcq_unsloth.training.trainer_settings` checks them against the installed library before a run starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data.synthetic import source_problem
from .errors import ConfigError
from .model.lora import LoraArgs
from .model.precision import DTYPES
from .processes import count
from .prompts import PromptConfig
from .rewards import REWARDS

def _choice(default: str, *choices: str, doc: str = ""):
    return field(default=default, metadata={"choices": choices, "doc": doc})


def _doc(default, doc: str):
    """A field with its help text (the form of ``mcq-unsloth ui`` shows it). Fields named after TRL's or PEFT's
    take the library's own help instead (:func:`mcq_unsloth.training.trainer_settings.setting_help`)."""
    if callable(default):
        return field(default_factory=default, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


def _passthrough():
    """The section's keys that are TRL's rather than ours, as given (checked by ``training.trainer_settings``)."""
    return field(default_factory=dict, metadata={"passthrough": True})


@dataclass
class ModelArgs:
    """Which model to load and how.

    ``name`` is a Hub id, a local folder (a base model, a merged model or a LoRA adapter folder), or
    ``tiny:qwen2`` / ``tiny:llama`` for a tiny random model built on the spot (tests, smoke runs).
    """

    name: str = _doc("Qwen/Qwen2.5-7B-Instruct", "a Hub id, a local folder (a base model, a merged model or a LoRA "
                     "adapter folder), or tiny:qwen2 / tiny:llama for a tiny random model built on the spot")
    backend: str = _choice("auto", "auto", "unsloth", "hf",
                           doc="unsloth: FastLanguageModel; hf: transformers + bitsandbytes + PEFT; auto: "
                               "unsloth when it imports")
    max_seq_length: int = _doc(512, "tokens of prompt and answer (GRPO: the prompt); the loader and the trainer "
                                    "share it, and a longer example stops the run")
    load_in_4bit: bool = _doc(True, "QLoRA: the base model's weights in 4 bits (bitsandbytes NF4), the LoRA adapter "
                                    "trained on top")
    dtype: str = _choice("auto", "auto", *DTYPES, doc="the weights' and the compute's precision; auto: bfloat16 on a "
                                                      "GPU that has it, float16 on older GPUs, float32 on a CPU")

    def problems(self) -> list[str]:
        found = []
        if self.max_seq_length < 16:
            found.append(f"model.max_seq_length: {self.max_seq_length} is too short (at least 16)")
        if self.name.startswith("tiny:") and self.name[5:] not in ("qwen2", "llama"):
            found.append(f"model.name: {self.name!r}: tiny models are 'tiny:qwen2' or 'tiny:llama'")
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

    train: str | None = _doc(None, "the training questions: a file (CSV, TSV, JSON lines, Parquet), shipped:NAME, "
                                   "synth:N or synth-held-out:N")
    validation: str | None = _doc(None, "the validation questions, written as train is; unset: val_fraction of "
                                        "train is held out")
    val_fraction: float = _doc(0.1, "without validation, the seeded share of train held out to validate on (0: none)")
    subset: float = _doc(1.0, "train on a seeded share of train, stratified by answer letter (1: all)")
    seed: int = _doc(42, "the seed of the split, the subset and synthetic questions")
    language: list[str] | None = _doc(None, "the questions' languages as ISO 639 codes ([zh]), for the model card")

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
    """Trainer settings, passed to TRL under the same names: these with the toolkit's defaults, and any other field
    of TRL's ``SFTConfig`` (task sft) or transformers' ``TrainingArguments`` (task grpo) in ``passthrough``."""

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
    passthrough: dict[str, Any] = _passthrough()

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

    ``reward_weights`` names the rewards of :mod:`mcq_unsloth.rewards` to compute, with their weights; a weight
    of 0 logs a reward without training on it (``contest_format``, for comparison with the contest's runs). Any other
    field of ``GRPOConfig`` that is GRPO's own (``loss_type``, ``scale_rewards``, ``epsilon``...) goes in
    ``passthrough``.
    """

    num_generations: int = _doc(8, "replies sampled per question (a group, which GRPO compares within); it must "
                                   "divide per_device_train_batch_size x gradient_accumulation_steps x processes")
    max_completion_length: int = 256
    beta: float = 0.04
    temperature: float = 1.0
    reward_weights: dict[str, float] = _doc(
        lambda: {"correct": 1.0, "format": 0.2, "neutral": 0.1, "contest_format": 0.0},
        "the rewards to compute (correct, format, neutral, contest_format) with their weights; a weight of 0 logs a "
        "reward without training on it")
    fast_inference: bool = _doc(False, "Unsloth's vLLM generation: needs the unsloth backend, a GPU and vLLM")
    gpu_memory_utilization: float = _doc(0.6, "the GPU share vLLM may take, with fast_inference")
    passthrough: dict[str, Any] = _passthrough()

    def problems(self) -> list[str]:
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


FORMAT_VERSION = 1  # the recipe format this code reads; a recipe states the one it was written for


@dataclass
class Config:
    """A whole recipe. ``version`` is the recipe format it was written for: a newer one than this code reads
    (:data:`FORMAT_VERSION`) is refused rather than half understood."""

    task: str = _choice("sft", "sft", "grpo", doc="what running the recipe does: sft, supervised fine-tuning on the "
                                                  "answer letter, or grpo, reinforcement with answer rewards")
    version: int = _doc(FORMAT_VERSION, "the recipe format the recipe is written for; a newer one is refused")
    model: ModelArgs = field(default_factory=ModelArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    data: DataArgs = field(default_factory=DataArgs)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    train: TrainArgs = field(default_factory=TrainArgs)
    grpo: GrpoArgs = field(default_factory=GrpoArgs)

    def problems(self) -> list[str]:
        found = []
        if not 1 <= self.version <= FORMAT_VERSION:
            found.append(f"version: this recipe is written for format {self.version}, and this mcq-unsloth reads "
                         f"format {FORMAT_VERSION}" + (": upgrade mcq-unsloth (pip install -U mcq-unsloth)"
                                                       if self.version > FORMAT_VERSION else ""))
        # TRL's groups span the processes of a launch: a batch is checked in this launch's process count.
        if problem := grpo_batch_problem(self, count()):
            found.append(problem)
        return found


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
    """The configuration as plain data, in field order (what is saved as a run's ``config.yaml``), a section's
    passthrough keys after its own.

    >>> to_dict(from_dict({"train": {"neftune_noise_alpha": 5}}))["train"]["neftune_noise_alpha"]
    5
    """
    data = dataclasses.asdict(config)
    for section, name in passthrough_fields().items():
        data[section].update(data[section].pop(name))
    return data


def passthrough_fields(cls=Config) -> dict[str, str]:
    """The sections that take TRL's own keys besides ours, and the name of the field that holds them."""
    found = {}
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            inner = next((g.name for g in dataclasses.fields(hint) if g.metadata.get("passthrough")), None)
            if inner:
                found[f.name] = inner
    return found


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True)


def valid_keys(cls=Config, prefix: str = "") -> list[str]:
    """Every settable dotted key, e.g. ``lora.r``."""
    keys = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if f.metadata.get("passthrough"):
            continue
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
    passthrough = next((f.name for f in dataclasses.fields(cls) if f.metadata.get("passthrough")), None)
    names = [f.name for f in dataclasses.fields(cls) if f.name != passthrough]
    kwargs: dict[str, Any] = {passthrough: {}} if passthrough else {}
    for key, value in data.items():
        if key not in names and passthrough:  # TRL's, or a misspelling: training.trainer_settings tells which
            kwargs[passthrough][str(key)] = value
            continue
        if key not in names:
            problems.append(unknown_key(prefix + str(key), [prefix + n for n in names]))
            continue
        f = next(f for f in dataclasses.fields(cls) if f.name == key)
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key], found = _build(hint, value, f"{prefix}{key}.")
            problems += found
            continue
        converted, problem = convert_value(value, hint)
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


def convert_value(value: Any, hint) -> tuple[Any, str | None]:
    """Check ``value`` against a field's type, converting where YAML is ambiguous (``2e-4`` is a string); returns
    the value and None, or None and the problem. Our fields' types, and the ones TRL's and transformers' trainer
    configurations use (unions of several, enums, literals, ``Any``).

    >>> convert_value("2e-4", float), convert_value([1], float | None)
    ((0.0002, None), (None, 'expected a number, got [1]'))
    >>> convert_value(True, str | bool), convert_value(3, dict | str | None)
    ((True, None), ('3', None))
    >>> convert_value([1], dict | str)
    (None, 'expected a mapping or text, got [1]')
    """
    origin = typing.get_origin(hint)
    if hint is Any:
        return value, None
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None, None
        # `OptimizerNames | str`: the text is one of the enum's values, so the enum alone says what is valid.
        args = [a for a in args if _is_enum(a)] or args
        for arg in args:
            converted, problem = convert_value(value, arg)
            if problem is None:
                return converted, None
        if len(args) == 1:
            return None, problem
        return None, f"expected {' or '.join(_expected(a) for a in args)}, got {value!r}"
    if origin is typing.Literal or _is_enum(hint):
        allowed = list(typing.get_args(hint)) if origin is typing.Literal else [m.value for m in hint]
        return (value, None) if value in allowed else (None, f"{value!r} is not one of {allowed}")
    if hint is dict:
        return (value, None) if isinstance(value, dict) else (None, f"expected a mapping, got {value!r}")
    if origin is dict:
        if not isinstance(value, dict):
            return None, f"expected a mapping of name: number, got {value!r}"
        out = {}
        for key, item in value.items():
            converted, problem = convert_value(item, typing.get_args(hint)[1])
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
            converted, problem = convert_value(v, item)
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
    # A library field that holds an object (accelerate's ParallelismConfig): built in Python, not written in YAML.
    return None, f"takes a {getattr(hint, '__name__', hint)} object, which a recipe cannot write"


def _is_enum(hint) -> bool:
    return isinstance(hint, type) and issubclass(hint, enum.Enum)


def _expected(hint) -> str:
    """What a value of type ``hint`` is, in words, for a problem that lists the types a field takes."""
    origin = typing.get_origin(hint) or hint
    if origin is typing.Literal or _is_enum(hint):
        return "one of " + str(list(typing.get_args(hint)) if origin is typing.Literal else [m.value for m in hint])
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text", list: "a list",
            dict: "a mapping"}.get(origin, getattr(hint, "__name__", str(hint)))


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
    """Set the dotted ``key`` of the recipe data to ``value``; an unknown key is a problem named with ``label``. A
    ``train.`` or ``grpo.`` key that is not ours is kept for :mod:`~mcq_unsloth.training.trainer_settings` to check."""
    section, _, leaf = key.partition(".")
    if key not in valid_keys() and not (section in passthrough_fields() and leaf and "." not in leaf):
        return [unknown_key(key, valid_keys(), label)]
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[leaf] = value
    return []


def unknown_key(key: str, valid: list[str], label: str | None = None) -> str:
    """The message for an unknown key, naming the nearest valid one.

    >>> unknown_key("train.lr", valid_keys()), unknown_key("train.batch_size", valid_keys())
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
