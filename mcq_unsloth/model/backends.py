"""Loading a model and tokenizer through one of two backends. The only module that imports Unsloth.

``unsloth``: ``FastLanguageModel.from_pretrained(load_in_4bit=...)`` and ``get_peft_model`` with
``use_gradient_checkpointing="unsloth"`` (fused kernels on GPU; Unsloth's CPU backend elsewhere).
``hf``: transformers + bitsandbytes NF4 double-quant + ``prepare_model_for_kbit_training`` + PEFT LoRA, the
vanilla path the contest scripts use and the baseline of every benchmark. ``auto`` picks unsloth when it
imports. Unsloth must be imported before trl and transformers, so every run calls :func:`resolve_backend`
before it touches either.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import processes
from ..errors import ConfigError, ModelLoadError
from ..prompts import end_of_turn
from .lora import LoraArgs
from .precision import torch_dtype
from .tiny_models import build_tiny_model


# Modules that Unsloth trains in full (a copy saved with the adapter) when named in lora.target_modules.

log = logging.getLogger(__name__)


FULLY_TRAINED = ("embed_tokens", "lm_head")


OFFLINE_HINT = ("Without network access, point to a local copy (recipes: --set model.name=LOCAL_PATH), or try "
                "the CPU recipes 'smoke' and 'grpo_smoke'")


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    backend: str


def unsloth_status() -> str | None:
    """None when Unsloth imports and can run here, else why not. Imports Unsloth (a few seconds)."""
    if "unsloth" in sys.modules:
        return None
    try:
        import unsloth  # noqa: F401  (imported for its patches: it must come before trl/transformers)
    except ImportError as error:
        return f"unsloth is not installed ({error})"
    except (NotImplementedError, RuntimeError) as error:
        # Releases before 2026.10.9 raise when no GPU is present.
        return f"unsloth cannot run here ({error})"
    return None


def resolve_backend(name: str, training: bool = False) -> str:
    """``unsloth`` or ``hf`` for a configured backend name; imports Unsloth when it is the one.

    Training with ``hf`` on a machine without a GPU also imports Unsloth: TRL's trainers compute their loss
    with Triton kernels (GPU only), and Unsloth's CPU backend registers CPU ones. The model is still loaded
    the vanilla way.
    """
    if name == "hf":
        if training and not _has_gpu_kernels():
            reason = unsloth_status()
            if reason is not None:
                raise ModelLoadError(f"training without a GPU needs Unsloth's CPU backend, which supplies the CPU "
                                     f"loss that TRL's Triton kernels cannot: {reason}. Install it as the README says")
        return "hf"
    reason = unsloth_status()
    if reason is None:
        return "unsloth"
    if name == "unsloth":
        raise ModelLoadError(f"backend 'unsloth' is unavailable: {reason}. Install it as the README says, "
                             f"or use --set model.backend=hf")
    return "hf"


def out_of_memory_errors() -> tuple[type[BaseException], ...]:
    """The exception types of running out of accelerator memory, for ``except`` clauses."""
    import torch

    return (torch.cuda.OutOfMemoryError,)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _has_gpu_kernels() -> bool:
    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


def fast_inference_problem(backend: str) -> str | None:
    """None when Unsloth's vLLM generation can run here, else why not."""
    import torch

    if backend != "unsloth":
        return "it is Unsloth's: set model.backend=unsloth"
    if not torch.cuda.is_available():
        return "it needs a GPU and none is present"
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install vllm)"
    return None


def load_model(source: str | Path, *, backend: str = "auto", dtype: str = "auto", load_in_4bit: bool = False,
               max_seq_length: int = 2048, lora: LoraArgs | None = None, seed: int = 3407,
               gradient_checkpointing: bool = True, vllm_memory: float | None = None, base: str | None = None
               ) -> Loaded:
    """Load ``source`` (a folder or Hub id) with LoRA adapters ready to train, or for inference if ``lora`` is
    None. A folder holding ``adapter_config.json`` is loaded as its base model plus that adapter; ``base``
    replaces the base model it names (a local copy where the original is out of reach). ``dtype`` is a name
    or ``auto`` (:func:`mcq_unsloth.model.precision.resolve_dtype`); new LoRA weights are initialised from ``seed``.
    ``vllm_memory`` (unsloth backend only) turns on Unsloth's vLLM generation with that share of GPU memory.

    The tokenizer's end token is set to the one its chat template ends a turn with, when they differ (said once).
    """
    backend = resolve_backend(backend)
    source = str(source)
    local_only = _check_reachable(source)
    settings = _Settings(torch_dtype(dtype), load_in_4bit, max_seq_length, lora, seed, gradient_checkpointing)
    named = adapter_base(source)
    if base is not None and named is None:
        raise ModelLoadError(f"--base replaces a LoRA adapter's base model, and {source} is not an adapter "
                             f"folder (it has no adapter_config.json)")
    if base is not None:
        named = str(Path(base).resolve()) if Path(base).exists() else base
    if named is not None:
        try:
            local_only = _check_reachable(named)
        except ModelLoadError as error:
            raise ModelLoadError(f"{source} is a LoRA adapter whose base model (adapter_config.json's "
                                 f"base_model_name_or_path) cannot be loaded: {error}\npredict and eval take a "
                                 f"local copy of it with --base PATH") from None
    try:
        if backend == "unsloth":
            loaded = _load_unsloth(source, settings, vllm_memory, local_only, base=base and named)
        else:
            loaded = _load_hf(source, settings, local_only, base=named)
    except OSError as error:
        # What transformers raises for a Hub id it can neither find in the cache nor download.
        raise ModelLoadError(f"cannot load model {source!r}: {error}\n{OFFLINE_HINT}") from None
    if lora is not None and load_in_4bit:
        _no_cpu_repacking(loaded.model)
    tokenizer = loaded.tokenizer
    _use_the_templates_end_of_turn(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return loaded


def model_source(name: str, run_dir: Path) -> str:
    """The folder or Hub id to load for a configured model name; ``tiny:ARCH`` builds a tiny random model in
    ``run_dir/tiny-base`` (once: a resumed run reuses it)."""
    if not name.startswith("tiny:"):
        return name

    folder = (run_dir / "tiny-base").resolve()  # absolute: the adapter records it as its base
    if not (folder / "model.safetensors").is_file():
        shutil.rmtree(folder, ignore_errors=True)  # half written by an earlier version on a full disk
        build_tiny_model(folder, name[5:])
    return str(folder)


def adapter_base(folder: str | Path) -> str | None:
    """The base model an adapter folder was trained from, or None if ``folder`` is not an adapter."""
    config = Path(folder) / "adapter_config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text(encoding="utf-8"))["base_model_name_or_path"]


@dataclass
class _Settings:
    dtype: Any  # a torch dtype
    load_in_4bit: bool
    max_seq_length: int
    lora: LoraArgs | None
    seed: int
    checkpointing: bool


def _load_unsloth(source: str, settings: _Settings, vllm_memory: float | None, local_only: bool,
                  base: str | None = None) -> Loaded:
    """``base``: the model to put the adapter folder ``source`` on, instead of the one its config names. Unsloth
    loads an adapter folder only onto the base it names, so then Unsloth loads ``base`` (with the adapter's
    tokenizer where it has one, as it would) and PEFT puts the adapter on it."""
    from peft import PeftModel
    from unsloth import FastLanguageModel

    lora = settings.lora
    checkpointing = "unsloth" if settings.checkpointing else False
    vllm = {"fast_inference": True, "gpu_memory_utilization": vllm_memory,
            "max_lora_rank": lora.r if lora else 64} if vllm_memory else {}
    tokenizer_from = {"tokenizer_name": source} if base is not None and _has_tokenizer(source) else {}
    # In a launch, each process's model on its own GPU (Unsloth's default would be the same; said, not guessed).
    placed = {"device_map": processes.device_map(True)} if processes.count() > 1 and _has_cuda() else {}
    # The dtype is always given: left to itself, Unsloth picks bfloat16 on a CPU too.
    net, tokenizer = FastLanguageModel.from_pretrained(
        model_name=base or source, max_seq_length=settings.max_seq_length, load_in_4bit=settings.load_in_4bit,
        dtype=settings.dtype, use_gradient_checkpointing=checkpointing, **vllm, **_cache_only(local_only),
        **tokenizer_from, **placed,
    )
    if base is not None:
        net = PeftModel.from_pretrained(net, source, is_trainable=lora is not None)
    is_adapter = adapter_base(source) is not None
    if lora is not None and not is_adapter:
        _check_targets(net, lora.target_modules, source)
        net = FastLanguageModel.get_peft_model(
            net, r=lora.r, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout,
            target_modules=lora.target_modules, bias=lora.bias, use_rslora=lora.use_rslora,
            use_gradient_checkpointing=checkpointing, random_state=settings.seed,
        )
    if lora is None:
        FastLanguageModel.for_inference(net)
    return Loaded(net, tokenizer, "unsloth")


def _load_hf(source: str, settings: _Settings, local_only: bool, base: str | None) -> Loaded:
    """``base``: for an adapter folder ``source``, the model PEFT puts it on (the one its config names, or a
    replacement); None for a whole model."""
    import torch
    from peft import LoraConfig
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, set_seed

    lora = settings.lora
    # Under FSDP or DeepSpeed the packed 4-bit weights are stored in the compute dtype, so they can be sharded.
    sharded = {"bnb_4bit_quant_storage": settings.dtype} if processes.strategy() != "ddp" else {}
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=settings.dtype, **sharded,
    ) if settings.load_in_4bit else None
    net = AutoModelForCausalLM.from_pretrained(base or source, quantization_config=quantization, dtype=settings.dtype,
                                               device_map=processes.device_map(torch.cuda.is_available()),
                                               **_cache_only(local_only))
    tokenizer = AutoTokenizer.from_pretrained(source if base is None or _has_tokenizer(source) else base,
                                              local_files_only=local_only)
    training = lora is not None
    if training and quantization is not None:
        net = prepare_model_for_kbit_training(net, use_gradient_checkpointing=settings.checkpointing,
                                              gradient_checkpointing_kwargs={"use_reentrant": False})
    elif training and settings.checkpointing:
        net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        net.enable_input_require_grads()
    if base is not None:
        net = PeftModel.from_pretrained(net, source, is_trainable=training)
    elif training:
        _check_targets(net, lora.target_modules, source)
        set_seed(settings.seed)  # LoRA's initial weights, as Unsloth's random_state does
        # As Unsloth does: embed_tokens / lm_head in target_modules are trained in full, not through LoRA.
        full = [m for m in lora.target_modules if m in FULLY_TRAINED]
        net = get_peft_model(net, LoraConfig(
            r=lora.r, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout,
            target_modules=[m for m in lora.target_modules if m not in FULLY_TRAINED], modules_to_save=full or None,
            bias=lora.bias, use_rslora=lora.use_rslora, task_type="CAUSAL_LM",
        ))
    if not training:
        net.eval()
    return Loaded(net, tokenizer, "hf")


def _check_targets(net, targets: list[str], source: str) -> None:
    """Raise :class:`~mcq_unsloth.errors.ConfigError` when ``lora.target_modules`` names a module the model does
    not have, listing the linear layers it does have (PEFT would stop with a traceback, or train nothing)."""
    import torch

    names = {name.rpartition(".")[2] for name, _ in net.named_modules()}
    if unknown := [t for t in targets if t not in names]:
        linear = sorted({name.rpartition(".")[2] for name, module in net.named_modules()
                         if isinstance(module, torch.nn.Linear)})
        raise ConfigError([f"lora.target_modules: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a "
                           f"module of {source}; its linear layers are {', '.join(linear)}"])


def _no_cpu_repacking(model) -> None:
    """On a CPU, bitsandbytes repacks a 4-bit layer's weights for faster inference at its first eval-mode forward
    pass, and does not undo it when training resumes: the next training step then fails ("a view of a leaf
    Variable that requires grad is being used in an in-place operation"). A model being trained is evaluated
    between steps (eval loss, eval_accuracy, GRPO's sampling), so its layers are told not to repack."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


_warned_end_of_turn: set[tuple[str, str]] = set()


def _use_the_templates_end_of_turn(tokenizer) -> None:
    """Make the tokenizer's end token the one its chat template closes a turn with (``<|im_end|>`` for
    ChatML), so training teaches it, generation stops on it and saved tokenizers carry it. Some converted
    tokenizers name another (SmolLM2's GGUF conversion says ``<|im_start|>``); say so once per pair."""
    end = end_of_turn(tokenizer)
    if end is None or end == tokenizer.eos_token:
        return
    if (pair := (str(tokenizer.eos_token), end)) not in _warned_end_of_turn:
        _warned_end_of_turn.add(pair)
        log.warning(f"note: the tokenizer's end token is {tokenizer.eos_token!r} but its chat template ends a turn "
                    f"with {end!r}; using {end!r} (the answer ends with it in training, and generation stops on it)")
    tokenizer.eos_token = end


def _cache_only(local_only: bool) -> dict:
    """from_pretrained arguments that keep transformers off the network (its adapter lookup needs its own)."""
    return {"local_files_only": True, "adapter_kwargs": {"local_files_only": True}} if local_only else {}


def _has_tokenizer(folder: str) -> bool:
    return any((Path(folder) / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))


def _from_cache_only(repo: str) -> bool:
    """Whether the Hub model ``repo`` must be read from the local cache alone: True when the Hub cannot be
    reached but the cache holds the model. Without that flag transformers spends 100-150 s in download retries
    on a machine with no network, before it fails or falls back to the cache. Raises ModelLoadError at once
    when neither can serve the model."""
    import httpx
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled, RepositoryNotFoundError

    try:
        cached = isinstance(try_to_load_from_cache(repo, "config.json"), str)
    except HFValidationError as error:
        raise ModelLoadError(f"model {repo!r} is neither a local folder nor a valid Hub id: {error}") from None
    try:
        HfApi().model_info(repo, timeout=10)
    except (httpx.TransportError, OfflineModeIsEnabled):
        if cached:
            return True
        raise ModelLoadError(f"cannot load model {repo!r}: it is not in the local Hugging Face cache and the Hub "
                             f"cannot be reached.\n{OFFLINE_HINT}") from None
    except RepositoryNotFoundError:
        if cached:
            return False
        raise ModelLoadError(f"there is no model {repo!r} on the Hugging Face Hub (a private or gated one needs "
                             f"`hf auth login`).\n{OFFLINE_HINT}") from None
    except HfHubHTTPError:
        pass  # the Hub answered with an error of its own: loading will retry and report it
    return False


def _check_reachable(source: str) -> bool:
    """Fail early, and clearly, for a name that is neither a model folder nor a Hub id that the local cache or
    the Hub can serve. True when a Hub model must be read from the local cache alone."""
    if Path(source).is_file():
        raise ModelLoadError(f"{source} is a file; a model is a folder holding config.json (or a LoRA adapter's "
                             f"adapter_config.json), or a Hub id (owner/name)")
    if Path(source).exists():
        if not (Path(source) / "config.json").is_file() and adapter_base(source) is None:
            raise ModelLoadError(f"{source} is a folder but not a model: it has no config.json or "
                                 f"adapter_config.json")
        return False
    if source.count("/") != 1 or source.startswith((".", "/")):
        hint = (" (an adapter a run writes: run that recipe first, e.g. mcq-unsloth recipe smoke)"
                if Path(source).name == "adapter" else "")
        raise ModelLoadError(f"model {source!r} is neither a local folder nor a Hub id (owner/name){hint}")
    return _from_cache_only(source)
