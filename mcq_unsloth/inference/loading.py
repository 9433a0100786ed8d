"""Loading a model to answer questions with, once, the way ``predict --model`` takes it: a base, merged or
adapter folder, a cached Hub id, or a GGUF file run by llama.cpp. What is decided before anything loads (the
training record, the precision, the prompt) is a :class:`Plan`: a resumed output is checked against it first.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from ..model.backends import load_model, out_of_memory_errors
from ..model.precision import inference_precision
from ..prompts import PromptConfig
from ..records import training_record
from .llamacpp import GgufModel, gguf_facts
from .transformers_model import TransformersModel

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """How a model will answer, known without loading it: ``trained`` is its training record (an adapter's, or
    the one inside a GGUF file), ``precision`` what it runs in (said with the reason), ``prompt`` how questions
    are put, and ``produced_by`` what a prediction file records of all that (see
    :meth:`mcq_unsloth.inference.answering.PredictSettings.record`)."""

    source: str
    base: str | None
    trained: dict | None
    precision: Any  # a Precision, or for a GGUF file its weights' type as text
    prompt: PromptConfig
    prompt_given: bool
    produced_by: dict

    @property
    def gguf(self) -> bool:
        return self.source.endswith(".gguf")


@dataclass
class Model:
    """A model loaded once, to answer as many question sets as asked: what :func:`mcq_unsloth.predict` and
    :func:`mcq_unsloth.evaluate` take. ``model`` and ``tokenizer`` are the backend's own objects (transformers
    or Unsloth, or for a GGUF file llama.cpp's), ``backend`` names it (``unsloth``, ``hf``, ``llama.cpp``)."""

    model: Any
    tokenizer: Any
    backend: str
    plan: Plan

    @property
    def prompt(self) -> PromptConfig:
        return self.plan.prompt

    @functools.cached_property
    def engine(self):
        """What answering asks questions of: the GGUF model itself, or the transformers model with its tokenizer
        (:class:`~mcq_unsloth.inference.transformers_model.TransformersModel`); both have the same methods."""
        if self.backend == "llama.cpp":
            return self.model

        return TransformersModel(self.model, self.tokenizer)

    @property
    def precision(self) -> str:
        return str(self.plan.precision)


def plan(model: str, *, base: str | None = None, dtype: str = "auto", load_in_4bit: bool | None = None,
         prompt: str | PromptConfig | None = None) -> Plan:
    """What loading ``model`` will give, decided without loading it (a bad GGUF file stops here): the precision
    of :func:`mcq_unsloth.model.precision.inference_precision` from ``dtype`` and ``load_in_4bit`` (a GGUF file
    runs in its own), and the prompt: ``prompt`` (a template name or a :class:`PromptConfig`), else the training
    record's, else the default."""
    model = str(model)
    if model.endswith(".gguf"):
        kind, trained = gguf_facts(model)
        precision, weights = f"{kind} (the GGUF file's)", kind
    else:
        trained = training_record(model)
        precision = inference_precision(dtype, load_in_4bit, trained)
        weights = precision.weights
    if isinstance(prompt, str):
        prompt = PromptConfig(prompt)
    chosen = prompt or (PromptConfig(**trained["prompt"]) if trained else PromptConfig())
    produced_by = {"model": _identity(model), **({"base": _identity(base)} if base else {}), "precision": weights,
                   "prompt": asdict(chosen)}
    return Plan(model, base, trained, precision, chosen, prompt is not None, produced_by)


def load(model: str | Path, *, base: str | None = None, backend: str = "auto", dtype: str = "auto",
         load_in_4bit: bool | None = None, prompt: str | PromptConfig | None = None) -> Model:
    """Load ``model`` to answer questions: a base or merged model folder, a LoRA adapter folder (on the base its
    ``adapter_config.json`` names, or ``base``), a Hub id in the local cache, or a ``.gguf`` file (llama.cpp).
    Precision and prompt as :func:`plan` decides; nothing is downloaded.

    >>> from mcq_unsloth import load                      # doctest: +SKIP
    >>> model = load("runs/smoke/adapter")                # doctest: +SKIP
    >>> model.precision, model.prompt.template            # doctest: +SKIP
    ('float32 (the CPU default: full precision, never 4-bit unless asked)', 'zh')
    """
    return load_planned(plan(model, base=base, dtype=dtype, load_in_4bit=load_in_4bit, prompt=prompt), backend)


def load_planned(decided: Plan, backend: str = "auto") -> Model:
    """Load the model as ``decided``, saying (INFO) what it runs in and which prompt it is asked with."""
    if decided.gguf:
        engine = GgufModel(decided.source)
        loaded = Model(engine, engine.tokenizer, "llama.cpp", decided)
        log.info(f"model: {decided.source}, llama.cpp, weights {decided.produced_by['precision']}")
    else:
        precision = decided.precision
        try:
            inner = load_model(decided.source, backend=backend, dtype=precision.dtype,
                               load_in_4bit=precision.load_in_4bit, base=decided.base)
        except out_of_memory_errors():
            raise ModelLoadError(f"out of GPU memory loading {decided.source} in {precision}; load it in 4-bit "
                                 f"(--4bit, or load_in_4bit=True) or use a larger GPU") from None
        loaded = Model(inner.model, inner.tokenizer, inner.backend, decided)
        log.info(f"model: {decided.source}, backend {inner.backend}, precision {precision}")
    prompt = decided.prompt
    own_texts = " with the adapter's own texts" if prompt.system is not None or prompt.user is not None else ""
    source = " (the adapter's training record)" if decided.trained and not decided.prompt_given else ""
    log.info(f"prompt: template {prompt.template}{own_texts}{source}")
    return loaded


def _identity(model: str) -> str:
    """A model as a prediction's record names it: a local path made absolute (the same model however it was
    written), a Hub id as it is."""
    return str(Path(model).resolve()) if Path(model).exists() else model
