"""Which number formats a model runs in: the one place that decides, for training and for inference.

Training: ``model.dtype: auto`` is bfloat16 on a GPU that has it, float16 on older GPUs and float32 on a CPU;
the trainer's mixed precision follows the same choice. Inference defaults never change answers behind the
user's back: on a CPU, float32 and never 4-bit unless asked (NF4 flattens a small model's letter preferences);
on a GPU, an adapter is loaded the way it was trained (its training record: a 4-bit base for a QLoRA adapter,
in the dtype it trained in), and a base or merged model in 16 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

DTYPES = ("float32", "bfloat16", "float16")  # the names model.dtype and --dtype take, besides auto


def resolve_dtype(name: str, *, cuda: bool | None = None, bf16_supported: bool | None = None) -> str:
    """The concrete dtype name for a configured one: ``auto`` is bfloat16 on a GPU that has it, float16 on
    other GPUs, float32 on a CPU.

    >>> resolve_dtype("auto", cuda=False), resolve_dtype("auto", cuda=True, bf16_supported=False)
    ('float32', 'float16')
    >>> resolve_dtype("bfloat16", cuda=False)
    'bfloat16'
    """
    if name != "auto":
        return name
    cuda, bf16_supported = _device(cuda, bf16_supported)
    if not cuda:
        return "float32"
    return "bfloat16" if bf16_supported else "float16"


def torch_dtype(name: str):
    """The torch dtype for a configured dtype name (``auto`` resolved as :func:`resolve_dtype` says)."""
    import torch

    return getattr(torch, resolve_dtype(name))


def mixed_precision(dtype: str) -> dict[str, bool]:
    """The trainer's ``bf16``/``fp16`` flags for a model configured with ``dtype``: mixed precision on a GPU
    in the model's 16-bit format, none on a CPU or in float32."""
    import torch

    resolved = resolve_dtype(dtype)
    cuda = torch.cuda.is_available()
    return {"bf16": cuda and resolved == "bfloat16", "fp16": cuda and resolved == "float16"}


@dataclass(frozen=True)
class Precision:
    """How a model is loaded for inference, and why."""

    dtype: str
    load_in_4bit: bool
    why: str

    @property
    def weights(self) -> str:
        """The precision without the reason: ``float32``, ``4-bit NF4 weights, bfloat16 compute``."""
        return f"4-bit NF4 weights, {self.dtype} compute" if self.load_in_4bit else self.dtype

    def __str__(self) -> str:
        return f"{self.weights} ({self.why})"


def inference_precision(dtype: str = "auto", load_in_4bit: bool | None = None, trained: dict | None = None, *,
                        cuda: bool | None = None, bf16_supported: bool | None = None) -> Precision:
    """The precision to answer questions in. ``dtype`` (``auto`` or a name) and ``load_in_4bit`` (None: not
    asked) are the user's; ``trained`` is an adapter's training record (``load_in_4bit`` and ``dtype``), if any.

    >>> str(inference_precision(cuda=False))
    'float32 (the CPU default: full precision, never 4-bit unless asked)'
    >>> str(inference_precision(trained={"load_in_4bit": True, "dtype": "bfloat16"}, cuda=True))
    '4-bit NF4 weights, bfloat16 compute (as the adapter was trained)'
    >>> str(inference_precision(cuda=True, bf16_supported=True))
    'bfloat16 (the GPU default for a base or merged model: 16 bits)'
    >>> str(inference_precision("float16", True, cuda=False))
    '4-bit NF4 weights, float16 compute (as asked)'
    """
    cuda, bf16_supported = _device(cuda, bf16_supported)
    asked = dtype != "auto" or load_in_4bit is not None
    if not cuda:
        default = Precision("float32", False, "the CPU default: full precision, never 4-bit unless asked")
    elif trained:
        default = Precision(trained["dtype"], trained["load_in_4bit"], "as the adapter was trained")
    else:
        default = Precision(resolve_dtype("auto", cuda=True, bf16_supported=bf16_supported), False,
                            "the GPU default for a base or merged model: 16 bits")
    if not asked:
        return default
    return Precision(default.dtype if dtype == "auto" else dtype,
                     default.load_in_4bit if load_in_4bit is None else load_in_4bit,
                     "as asked" if dtype != "auto" and load_in_4bit is not None else f"as asked, else {default.why}")


def _device(cuda: bool | None, bf16_supported: bool | None) -> tuple[bool, bool]:
    if cuda is None or bf16_supported is None:
        import torch

        cuda = torch.cuda.is_available() if cuda is None else cuda
        bf16_supported = (cuda and torch.cuda.is_bf16_supported()) if bf16_supported is None else bf16_supported
    return cuda, bf16_supported
