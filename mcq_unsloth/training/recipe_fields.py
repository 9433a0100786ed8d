"""Every setting a recipe takes, as a form shows it: the key, the recipe's value, the default, the help text and the
kind of input. Read from the typed configuration (:mod:`mcq_unsloth.config`) and, for the names that are TRL's or
PEFT's, from the library's own field help, so the form of ``mcq-unsloth ui`` cannot drift from either. The TRL
fields a recipe may add to ``train`` or ``grpo`` are listed apart (:func:`library_fields`), for a search rather
than hundreds of inputs. Imports TRL: call it once the backend is chosen.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from dataclasses import dataclass
from typing import Any

import yaml

from ..config import Config, to_dict, valid_keys
from . import trainer_settings


@dataclass(frozen=True)
class RecipeField:
    """One setting: ``kind`` is ``bool``, ``int``, ``float``, ``choice`` (one of ``choices``), ``text``, or ``yaml``
    (a list, a mapping or an optional value, written as YAML, as ``--set`` takes it)."""

    key: str
    value: Any
    default: Any
    help: str
    kind: str
    choices: tuple = ()

    def override(self, value: Any) -> str | None:
        """The ``--set`` for ``value`` given in the form, or None when it is the recipe's own value."""
        if _same(self.kind, value, self.value):
            return None
        return f"{self.key}={as_yaml(value)}"


def recipe_fields(config: Config) -> list[RecipeField]:
    """The toolkit's own settings with the values ``config`` gives them (``grpo`` only for task grpo)."""
    defaults, values = to_dict(Config()), to_dict(config)
    fields = []
    for key in valid_keys():
        section, _, name = key.partition(".")
        if section == "grpo" and config.task != "grpo":
            continue
        declared, hint = _declared(key)
        kind, choices = _kind(hint, declared.metadata.get("choices", ()) or _library_choices(config.task, key))
        fields.append(RecipeField(key, _get(values, key), _get(defaults, key), setting_help(key), kind, choices))
    return fields


def library_fields(task: str) -> list[RecipeField]:
    """The TRL (and transformers) fields a ``task`` recipe may add to ``train`` and ``grpo`` beyond the toolkit's
    own, with the library's default and help; the fields the toolkit sets itself are left out."""
    ours = set(valid_keys())
    found = []
    cls = trainer_settings.trainer_class(task)
    defaults = trainer_settings.dataclass_defaults(cls)
    sections = ["train"] + (["grpo"] if task == "grpo" else [])
    for section in sections:
        for name in sorted(trainer_settings.section_fields(task, section)):
            key = f"{section}.{name}"
            if key in ours or name in trainer_settings.OWNED or name.startswith("_"):
                continue
            help_text = " ".join(_library_field(cls, name).metadata.get("help", "").split())
            found.append(RecipeField(key, None, trainer_settings.plain(defaults.get(name)), help_text, "yaml"))
    return found


def setting_help(key: str) -> str:
    """A setting's help text: the toolkit's own (a field's ``doc``) or, for a name TRL or PEFT define, theirs."""
    declared, _ = _declared(key)
    if declared.metadata.get("doc"):
        return declared.metadata["doc"]
    section, _, name = key.partition(".")
    if section == "lora":
        # PEFT: the heavy library LoRA's names come from, imported only here (the package does not need it)
        from peft import LoraConfig

        cls = LoraConfig
    else:
        cls = trainer_settings.trainer_class("grpo" if section == "grpo" else "sft")
    return " ".join(_library_field(cls, name).metadata.get("help", "").split())


def as_yaml(value: Any) -> str:
    """A value as ``--set`` takes it (YAML, on one line).

    >>> as_yaml(["zh"]), as_yaml("yes"), as_yaml(None), as_yaml(0.0002)
    ('[zh]', "'yes'", 'null', '0.0002')
    """
    return trainer_settings.inline(value)


def parse_yaml(text: str) -> Any:
    """What a ``yaml`` field's text means (an empty text is unset)."""
    return yaml.safe_load(text) if text.strip() else None


# --- helpers ------------------------------------------------------------------------------------------

def _declared(key: str):
    """The dataclass field behind a dotted key, and its type."""
    cls, declared, hint = Config, None, Config
    for part in key.split("."):
        hints = typing.get_type_hints(cls)
        declared, hint = next(f for f in dataclasses.fields(cls) if f.name == part), hints[part]
        cls = hint
    return declared, hint


def _library_field(cls, name: str):
    found = {f.name: f for f in dataclasses.fields(cls)}
    return found.get(name) or dataclasses.field()


def _library_choices(task: str, key: str) -> tuple:
    """The values of the enum a TRL field of ours takes (``lr_scheduler_type``, ``optim``), or none."""
    section, _, name = key.partition(".")
    if section not in ("train", "grpo"):
        return ()
    cls = trainer_settings.trainer_class(task)
    hint = typing.get_type_hints(cls).get(name)
    for arg in (typing.get_args(hint) or (hint,)):
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return tuple(member.value for member in arg)
    return ()


def _kind(hint, choices: tuple) -> tuple[str, tuple]:
    if choices:
        return "choice", tuple(choices)
    return {bool: "bool", int: "int", float: "float", str: "text"}.get(hint, "yaml"), ()


def _get(data: dict, key: str):
    for part in key.split("."):
        data = data[part]
    return data


def _same(kind: str, a, b) -> bool:
    if kind == "float" and a is not None and b is not None:
        return float(a) == float(b)
    if kind == "int" and a is not None and b is not None:
        return int(a) == int(b)
    return a == b

