"""The trainer's settings: a recipe's ``train`` and ``grpo`` sections as TRL's ``SFTConfig`` or ``GRPOConfig``,
checked against the installed library before anything slow, and shown the way they reach the trainer.

A field is one of three kinds. The toolkit's own (:class:`~mcq_unsloth.config.TrainArgs`,
:class:`~mcq_unsloth.config.GrpoArgs`) carry its defaults and go to TRL under the same names. Any other field of
the TRL configuration may be written in the section (its ``passthrough``): the name is checked against the
installed dataclass (a misspelling names the nearest), the value against the field's type, and the choices
against the library's enums, or, where TRL lists them in its help text only (GRPO's ``loss_type``,
``scale_rewards``, ``importance_sampling_level``), against :data:`CHOICES`, which a test compares with that text.
The fields the toolkit sets itself (:data:`OWNED`) are refused with the setting to use instead.

Under ``train`` go the fields of transformers' ``TrainingArguments`` and, for task sft, SFT's own; under ``grpo``
those that ``GRPOConfig`` adds. What the installed libraries then do with the values (Unsloth's CPU backend
turns padding-free batches off, TRL maps ``scale_rewards: true`` to ``group``) is read back from the built
configuration: :func:`resolved_yaml` shows it, and a setting switched off that way is refused.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import typing
from pathlib import Path
from typing import Any

import yaml

from .. import processes
from ..config import Config, ConfigError, convert_value, dump_yaml, to_dict, unknown_key
from ..model.precision import mixed_precision
from ..records import library_version

# The fields the toolkit sets, and what to set instead.
_PRECISION = "mixed precision follows model.dtype (bfloat16 or float16 on a GPU, none on a CPU): set model.dtype"
_LAUNCH = "the launch sets it: train in several processes with --num-processes N (the API's num_processes)"
_SHARDING = ("sharding is the launch's: --num-processes N --config-file fsdp_qlora, zero2 or zero3, or an accelerate "
             "config file of your own")
OWNED: dict[str, str] = {
    "output_dir": "the run folder holds the checkpoints: choose it with --out (the API's out=)",
    "max_length": "the model loader and the trainer share one length: set model.max_seq_length",
    "completion_only_loss": "SFT here puts the loss on the answer only, always",
    "assistant_only_loss": "SFT here puts the loss on the answer only (a prompt-completion dataset), always",
    "eval_strategy": "evaluation runs every train.eval_steps when there are validation questions (data.validation "
                     "or data.val_fraction); set data.val_fraction=0 without data.validation for none",
    "save_strategy": "a checkpoint is written every train.save_steps, so that --resume always has one",
    "bf16": _PRECISION, "fp16": _PRECISION, "bf16_full_eval": _PRECISION, "fp16_full_eval": _PRECISION,
    "gradient_checkpointing_kwargs": "the model loader sets checkpointing up the way each backend wants: set "
                                     "train.gradient_checkpointing",
    "dataloader_num_workers": "the examples are tokenized before training, so workers would only fork the process "
                              "that holds the model",
    "use_cpu": _LAUNCH, "ddp_backend": _LAUNCH,
    "fsdp": _SHARDING, "fsdp_config": _SHARDING, "deepspeed": _SHARDING,
    "resume_from_checkpoint": "pass --resume (the API's resume=True): it continues from the last complete checkpoint",
    "model_init_kwargs": "the toolkit loads the model: set model.dtype, model.load_in_4bit and model.max_seq_length",
    "remove_unused_columns": "the reward functions and the checks read the dataset's answer, options and id columns",
    "use_vllm": "set grpo.fast_inference: Unsloth's vLLM generation (grpo.gpu_memory_utilization its memory share)",
    "vllm_gpu_memory_utilization": "set grpo.gpu_memory_utilization, with grpo.fast_inference",
    "reward_weights": "set grpo.reward_weights, a mapping of reward name to weight",
}

# Names transformers and TRL no longer have, and what replaced them (a nearest name would mislead).
RENAMED: dict[str, str] = {
    "group_by_length": "train.train_sampling_strategy=group_by_length (transformers 5)",
    "warmup_ratio": "train.warmup_steps: a value below 1 is a share of the steps (transformers 5)",
    "evaluation_strategy": "train.eval_steps; evaluation itself follows the validation questions",
    "max_seq_length": "model.max_seq_length",
    "overwrite_output_dir": "--overwrite (the API's overwrite=True)",
}

# GRPO's choices that TRL keeps in its help text only (plain string fields, no metadata): a test reads that text.
CHOICES: dict[str, tuple] = {
    "loss_type": ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"),
    "scale_rewards": ("group", "batch", "none", True, False),
    "importance_sampling_level": ("token", "sequence"),
}

# Settings whose silent change by an installed library changes what is computed: refused, with the reason.
_SWITCHED_OFF = {
    "padding_free": "Unsloth's CPU backend, which training without a GPU needs, turns padding-free batches off "
                    "(it keeps the flattened examples apart only with FlashAttention); it runs on a GPU",
    "packing": "Unsloth's CPU backend, which training without a GPU needs, turns packing off (it keeps the packed "
               "examples apart only with FlashAttention); it runs on a GPU",
}

# What a shown value means where it reads otherwise.
_NOTES = {"gradient_checkpointing": "  (train.gradient_checkpointing is applied by the model loader instead)",
          "eval_strategy": "  (GRPO: letter accuracy every train.eval_steps instead of TRL's sampled evaluation)"}

# Our fields that are read by the toolkit rather than given to TRL's GRPOConfig (letter accuracy every eval_steps).
_GRPO_READS_ITSELF = ("eval_steps", "per_device_eval_batch_size", "load_best_model_at_end", "metric_for_best_model")


def check(config: Config, source: str | None = None) -> None:
    """Raise :class:`ConfigError` listing every problem of the trainer settings: unknown names (with the nearest),
    values of the wrong type, choices the library lacks, toolkit-owned fields, a setting in the other section, and
    what TRL's own configuration refuses or switches off; ``source`` names the recipe in the message. Imports TRL:
    call it once the backend is chosen."""
    problems = _name_and_type_problems(config)
    if problems:
        raise ConfigError(problems, source)
    try:
        trainer_config(config, Path("runs/check"), evaluating=_evaluates(config))  # TRL's own checks, as one line
    except ConfigError as error:
        raise ConfigError(error.problems, source) from None


def trainer_config(config: Config, run_dir: Path, evaluating: bool):
    """TRL's ``SFTConfig`` or ``GRPOConfig`` for ``config``, writing checkpoints under ``run_dir``; ``evaluating``
    says whether there are validation questions. A value TRL refuses, or one an installed library switches off
    silently (:data:`_SWITCHED_OFF`), raises :class:`ConfigError`."""
    return _built(config, run_dir, evaluating)[0]


def _built(config: Config, run_dir: Path, evaluating: bool):
    """:func:`trainer_config`, and the values it was given (:func:`trainer_kwargs`)."""
    cls = trainer_class(config.task)
    kwargs = trainer_kwargs(config, run_dir, evaluating)
    try:
        args = cls(**kwargs)
    except ValueError as error:
        raise ConfigError([f"train/grpo: TRL's {cls.__name__} refuses these settings: "
                           f"{' '.join(str(error).split())}"]) from None
    problems = [f"{_section(config, name)}.{name}: {_switched_off_reason(name)}" for name in _SWITCHED_OFF
                if kwargs.get(name) and not getattr(args, name, True)]
    if problems:
        raise ConfigError(problems)
    return args, kwargs


def _switched_off_reason(name: str) -> str:
    import torch

    if torch.cuda.is_available():
        return "the installed Unsloth or TRL turned it off when the configuration was built (their messages say why)"
    return _SWITCHED_OFF[name]


def trainer_kwargs(config: Config, run_dir: Path, evaluating: bool) -> dict[str, Any]:
    """Every value the toolkit gives TRL's configuration: the fields it owns, then the recipe's own and
    passthrough fields of ``train`` (and, for GRPO, ``grpo``)."""
    owned = owned_values(config, run_dir, evaluating)
    train = {k: v for k, v in to_dict(config)["train"].items() if k != "gradient_checkpointing"}
    if config.task == "sft":
        return {**owned, **train}
    grpo = config.grpo
    train = {k: v for k, v in train.items() if k not in _GRPO_READS_ITSELF}
    ours = {"num_generations": grpo.num_generations, "max_completion_length": grpo.max_completion_length,
            "beta": grpo.beta, "temperature": grpo.temperature,
            "reward_weights": list(grpo.reward_weights.values())}
    return {**owned, **ours, **grpo.passthrough, **train}


def owned_values(config: Config, run_dir: Path, evaluating: bool) -> dict[str, Any]:
    """The values of the fields the toolkit sets itself, for this run."""
    values = {"output_dir": str(run_dir / "checkpoints"), "eval_strategy": "steps" if evaluating else "no",
              "save_strategy": "steps", "gradient_checkpointing": False,  # the loader sets it up per backend
              "dataloader_num_workers": 0, **processes.trainer_args(), **mixed_precision(config.model.dtype)}
    if config.task == "grpo":
        return {**values, "eval_strategy": "no"}  # letter accuracy, every train.eval_steps, replaces TRL's own
    # Padding-free batches are flattened, so TRL cannot cut them to max_length: train_sft checks lengths itself.
    flattened = config.train.passthrough.get("padding_free") and not config.train.passthrough.get("packing")
    return {**values, "completion_only_loss": True, "max_length": None if flattened else config.model.max_seq_length}


def resolved_yaml(config: Config, run_dir: Path, header: str = "") -> str:
    """The recipe as YAML with every value that reaches the trainer: the sections as resolved, then, under
    ``train`` and ``grpo``, commented lines for the fields the toolkit sets and for the library defaults this recipe
    leaves alone (marked with the library's version), and a note wherever the library changes a value it was
    given. Still a recipe: the comments are what a YAML reader skips."""
    evaluating = _evaluates(config)
    args, given = _built(config, run_dir, evaluating)
    owned = owned_values(config, run_dir, evaluating)
    built = plain(args.to_dict())
    defaults = dataclass_defaults(type(args))
    text = dump_yaml(config)
    for section, names in _split_by_section(config, built).items():
        if config.task == "grpo":
            names = [n for n in names if n not in _GRPO_READS_ITSELF]  # shown above as ours, not given to TRL
        unset = [n for n in names if n not in given]
        extra = [f"  # {n}: runs as {inline(built[n])}; the installed libraries change the "
                 f"{inline(plain(given[n]))} given" for n in names
                 if n in given and n not in owned and not _same(n, built[n], given[n])]
        groups = {
            "set by mcq-unsloth for this run (OWNED in training/trainer_settings.py)": [n for n in names if n in owned],
            "derived by the installed libraries when the configuration is built, not given":
                [n for n in unset if not _same(n, built[n], defaults.get(n))],
            f"library defaults, not set by this recipe ({_library_label()})":
                [n for n in unset if _same(n, built[n], defaults.get(n))],
        }
        for title, group in groups.items():
            if group:
                extra += [f"  # {title}:"] + [f"  #   {n}: {inline(built[n])}{_NOTES.get(n, '')}" for n in group]
        text = _append_to_section(text, section, extra)
    return "\n".join(([header] if header else []) + [text.rstrip("\n")]) + "\n"


def library_record(args) -> dict[str, Any]:
    """What ``run.json`` keeps of the trainer's configuration as built: its class, TRL's and transformers'
    versions and every value (tokens masked by transformers)."""
    return {"class": type(args).__name__, "trl": library_version("trl"),
            "transformers": library_version("transformers"), "values": plain(args.to_dict())}


# --- checks -------------------------------------------------------------------------------------------

def _name_and_type_problems(config: Config) -> list[str]:
    problems = []
    data = to_dict(config)
    for section in ("train", "grpo"):
        values = getattr(config, section)
        ours = [f.name for f in dataclasses.fields(values) if not f.metadata.get("passthrough")]
        cls = trainer_class("grpo" if section == "grpo" else config.task)
        hints = typing.get_type_hints(cls)
        choices = {f.name: (f.metadata or {}).get("choices") for f in dataclasses.fields(cls)}
        if section == "grpo":
            choices.update(CHOICES)
        for name, value in data[section].items():
            if problem := _name_problem(config.task, section, name, ours):
                problems.append(problem)
            elif name in hints and name != "reward_weights":  # ours is a mapping; TRL's, the list made from it
                if problem := _value_problem(value, hints[name], choices.get(name)):
                    problems.append(f"{section}.{name}: {problem}")
    return problems


def _name_problem(task: str, section: str, name: str, ours: list[str]) -> str | None:
    """Why ``section.name`` cannot be set, or None: ours, or a field of TRL's configuration that this section takes."""
    key = f"{section}.{name}"
    allowed = section_fields(task, section)
    if name in ours or (name in allowed and name not in OWNED):
        return None
    if name in OWNED:
        return f"{key}: set by mcq-unsloth, not by a recipe: {OWNED[name]}"
    if name in RENAMED:
        return f"{key}: not a setting of the installed transformers or TRL; write {RENAMED[name]}"
    if section == "train" and name in section_fields(task, "grpo"):
        also = ", with task: grpo" if task != "grpo" else ""
        return f"{key}: a GRPO setting (GRPOConfig): write grpo.{name}{also}"
    if section == "grpo" and name in _base_fields():
        return f"{key}: a setting of every trainer (TrainingArguments): write train.{name}"
    if name in _task_fields("sft"):
        return f"{key}: an SFT setting (SFTConfig), and this recipe's task is {task}"
    valid = ours + sorted(allowed - set(ours) - set(OWNED))  # ours first: the nearest of the usual names wins ties
    return (unknown_key(key, [f"{section}.{n}" for n in valid])
            + f" (not a field of TRL's {trainer_class('grpo' if section == 'grpo' else task).__name__})")


def _value_problem(value: Any, hint, choices) -> str | None:
    """What is wrong with ``value`` for a field of type ``hint`` (and ``choices``, where the library lists them)."""
    enums = [a for a in (typing.get_args(hint) or (hint,)) if isinstance(a, type) and issubclass(a, enum.Enum)]
    if enums and value is not None:
        return _choice_problem(value, [m.value for m in enums[0]], _ENUM_WORDS.get(enums[0].__name__))
    if choices and value is not None:
        return _choice_problem(value, list(choices))
    return convert_value(value, hint)[1]


_ENUM_WORDS = {"OptimizerNames": "an optimizer transformers knows",
               "SchedulerType": "a learning-rate scheduler transformers knows"}


def _choice_problem(value: Any, allowed: list, what: str | None = None) -> str | None:
    """None when ``value`` is one of ``allowed``; else the problem, naming the nearest where there are many.

    >>> _choice_problem("adamw_fake", ["adamw_torch", "adamw_8bit", "sgd", "adafactor", "lion", "rmsprop", "lomo"],
    ...                 "an optimizer transformers knows")
    "'adamw_fake' is not an optimizer transformers knows; did you mean 'adamw_8bit', 'adamw_torch' or 'adafactor'?"
    >>> _choice_problem("gspo", ["token", "sequence"])
    "'gspo' is not one of ['token', 'sequence']"
    """
    if value in allowed:
        return None
    texts = [a for a in allowed if isinstance(a, str)]
    if what is None and len(allowed) <= 8:
        return f"{value!r} is not one of {allowed}"
    close = difflib.get_close_matches(str(value), texts, n=3, cutoff=0.4) or texts[:3]
    listed = ", ".join(repr(n) for n in close[:-1]) + f" or {close[-1]!r}" if len(close) > 1 else repr(close[0])
    return f"{value!r} is not {what or 'a value the library knows'}; did you mean {listed}?"


def _evaluates(config: Config) -> bool:
    """Whether the run will have validation questions, from the recipe alone (the data decides at run time)."""
    return bool(config.data.validation) or config.data.val_fraction > 0


# --- the libraries' fields ------------------------------------------------------------------------------

def trainer_class(task: str):
    from trl import GRPOConfig, SFTConfig

    return GRPOConfig if task == "grpo" else SFTConfig


def _base_fields() -> set[str]:
    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments)}


def _task_fields(task: str) -> list[str]:
    return [f.name for f in dataclasses.fields(trainer_class(task))]


def section_fields(task: str, section: str) -> set[str]:
    """The TRL fields a section takes: ``train`` those of every trainer (and SFT's own, for task sft), ``grpo``
    those that GRPOConfig adds."""
    if section == "grpo":
        return set(_task_fields("grpo")) - _base_fields()
    return set(_task_fields("sft")) if task == "sft" else _base_fields()


def _section(config: Config, name: str) -> str:
    return "grpo" if config.task == "grpo" and name not in _base_fields() else "train"


def _split_by_section(config: Config, built: dict) -> dict[str, list[str]]:
    base = _base_fields()
    if config.task == "sft":
        return {"train": list(built), "grpo": []}
    return {"train": [n for n in built if n in base], "grpo": [n for n in built if n not in base]}


# --- showing values -------------------------------------------------------------------------------------

def plain(value):
    """Enums as their values, tuples as lists: what YAML and JSON write."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _same(name: str, a, b) -> bool:
    """Whether two values of field ``name`` are the same setting (``report_to: [none]`` is transformers' ``[]``)."""
    a, b = plain(a), plain(b)
    if name == "report_to":
        a, b = ([] if v in (None, "none", ["none"]) else v for v in (a, b))
    return a == b


def dataclass_defaults(cls) -> dict[str, Any]:
    """Each field's default as the class declares it (before any ``__post_init__``)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def inline(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip().removesuffix(
        "\n...").strip()


def _append_to_section(text: str, section: str, extra: list[str]) -> str:
    """``text`` (top-level YAML sections) with ``extra`` lines at the end of ``section``."""
    if not extra:
        return text
    lines = text.splitlines()
    start = lines.index(f"{section}:")
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith(" ")), len(lines))
    return "\n".join(lines[:end] + extra + lines[end:]) + "\n"


def _library_label() -> str:
    return f"trl {library_version('trl')}, transformers {library_version('transformers')}"
