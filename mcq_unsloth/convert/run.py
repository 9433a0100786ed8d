"""``mcq-unsloth export``: one straight-line function from a run, adapter or model folder to the asked formats.

A run folder means its final adapter (or ``checkpoints/checkpoint-N``). ``lora`` copies the adapter; ``merged``
merges it into its base's 16-bit weights; ``gguf`` merges it in the base's own dtype (nothing rounded twice) into
a scratch folder, writes every asked quantization from one conversion, each with its Modelfile, and with
``verify`` checks each against the merged model in llama.cpp.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from ..cards import export_card, write_card
from ..data.questions import read_questions
from ..errors import ExportError
from ..inference.llamacpp import llama_cpp
from ..model.backends import adapter_base
from ..outputs import check_writable, empty_folder, exclusive, refuse_overlap
from ..prompts import PromptConfig, build_messages
from ..records import VALIDATION_FILE, checkpoint_problem, training_record
from ..resources import shipped_file
from .gguf_writer import GGUF_PY_QUANTS, write_gguf
from .merge import merge_adapter
from .modelfile import write_modelfile
from .quantize import LLAMA_CPP_QUANTS, fallbacks, quantize_gguf
from .verify import check_targets, verify_gguf

log = logging.getLogger(__name__)


QUANTS = (*GGUF_PY_QUANTS, *LLAMA_CPP_QUANTS)
# The one format that answered as the float32 model on SmolLM2 (98.3% of 60 shipped questions, all beyond
# near-ties); q8_0, half the size, changed 13% of its answers (docs/export.md).
GGUF_DEFAULT = "f16"
SAMPLE = 64  # questions compared by the merge check and by --verify


def run_export(source: str, fmt: str, out: Path, *, quants: tuple[str, ...] = ("f16",), base: str | None = None,
               checkpoint: int | None = None, dtype: str = "bfloat16", verify: bool = False,
               progress: bool = True) -> dict:
    """Export ``source`` as ``fmt`` (``lora``, ``merged`` or ``gguf``) into the folder ``out`` (created here,
    empty). Returns what was written and the checks' figures."""
    from transformers import AutoTokenizer

    adapter, model, run_dir = resolve_source(source, checkpoint)
    record = training_record(adapter) if adapter else None
    prompt = PromptConfig(**record["prompt"]) if record else PromptConfig()
    questions = sample_questions(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"source": str(adapter or model), "format": fmt, "out": str(out)}
    if fmt == "lora":
        if adapter is None:
            raise ExportError(f"{source} is a full model, not a LoRA adapter; export it with --format gguf")
        shutil.copytree(adapter, out, dirs_exist_ok=True)
        return {**result, "files": sorted(p.name for p in out.iterdir())}
    if fmt == "merged":
        if adapter is None:
            raise ExportError(f"{source} is already a full model; export it with --format gguf")

        result.update(merge_adapter(adapter, out, questions, prompt, base=base, dtype=dtype))
        write_card(out, export_card(out, fmt, Path(source), adapter, result))
        return result
    with tempfile.TemporaryDirectory(dir=out, prefix=".merged-") as scratch:
        if adapter is not None:
            model = Path(scratch) / "merged"
            merge = merge_adapter(adapter, model, questions, prompt, base=base, dtype=_saved_dtype(adapter, base))
            result["merge"] = {k: v for k, v in merge.items() if k != "merged"}  # a scratch folder, deleted below
        tokenizer = AutoTokenizer.from_pretrained(model)
        system = next((m["content"] for m in build_messages(questions[0], prompt) if m["role"] == "system"), None)
        result["gguf"] = []
        for quant, path in _write_quants(model, out, Path(scratch), quants, progress, record):
            entry = {"quant": quant, "file": str(path), "bytes": path.stat().st_size}
            if quant in LLAMA_CPP_QUANTS and (kept := fallbacks(path, quant)) is not None:
                log.warning(f"note: {kept}")
            if (modelfile := _modelfile(path, tokenizer, system)) is not None:
                entry["modelfile"] = str(modelfile)
            if verify:
                entry["verify"] = verify_gguf(path, model, questions, prompt, progress=progress)
                if (warning := check_targets(entry["verify"], quant)) is not None:
                    log.warning(f"warning: {warning}")
            result["gguf"].append(entry)
    write_card(out, export_card(out, fmt, Path(source), adapter, result))
    return result


def export_model(source: str, fmt: str, out: Path, *, quants: tuple[str, ...] = (GGUF_DEFAULT,), base: str | None = None,
                 checkpoint: int | None = None, dtype: str = "bfloat16", verify: bool = False,
                 overwrite: bool = False, progress: bool = True) -> dict:
    """The whole ``mcq-unsloth export``: refuse an ``out`` that could destroy the source and a llama.cpp that is
    needed but cannot run, before ``out`` is touched; then one writer at a time, ``out`` emptied only with
    ``overwrite``, :func:`run_export`, and on any failure ``out`` removed (no half export is left)."""
    if fmt not in ("lora", "merged", "gguf"):
        raise ExportError(f"format must be lora, merged or gguf, not {fmt!r}")
    if unknown := [q for q in quants if q not in QUANTS]:
        raise ExportError(f"unknown quantization {unknown[0]!r}; choose among {', '.join(QUANTS)}")
    if verify and fmt != "gguf":
        raise ExportError("--verify checks GGUF files; for --format merged the merge is always checked")
    out = Path(out)
    refuse_overlap(out, source_folders(source, checkpoint, base), "the export's source")
    needs_llama_cpp(fmt, tuple(quants), verify)
    check_writable(out, folder=True)
    with exclusive(out):
        empty_folder(out, overwrite)
        try:
            return run_export(source, fmt, out, quants=tuple(quants), base=base, checkpoint=checkpoint, dtype=dtype,
                              verify=verify, progress=progress)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)  # ours, emptied or made above
            raise


def needs_llama_cpp(fmt: str, quants: tuple[str, ...], verify: bool) -> None:
    """Stop at once when the export asks for llama.cpp (``verify``, a K-quant) and it is missing or cannot run on
    this machine: before the slow merge, and before the output folder is touched."""
    kquants = [q for q in quants if q in LLAMA_CPP_QUANTS]
    if fmt == "gguf" and (verify or kquants):
        llama_cpp("--verify" if verify else f"--quant {kquants[0]}")


def source_folders(source: str, checkpoint: int | None, base: str | None) -> list[Path]:
    """Every folder an export of ``source`` reads: the folder given, its run folder, adapter or model, and the
    adapter's base model when that is a local folder. None of them may be an output's place."""
    adapter, model, run_dir = resolve_source(source, checkpoint)
    folders = [Path(source), *(p for p in (adapter, model, run_dir) if p is not None)]
    named = base or (adapter_base(adapter) if adapter is not None else None)
    if named is not None and Path(named).is_dir():
        folders.append(Path(named))
    return folders


def resolve_source(source: str, checkpoint: int | None) -> tuple[Path | None, Path | None, Path | None]:
    """(adapter folder, model folder, run folder) for an export source; exactly one of the first two is set."""
    path = Path(source)
    if (path / "run.json").is_file():
        adapter = path / "checkpoints" / f"checkpoint-{checkpoint}" if checkpoint is not None else path / "adapter"
        if not adapter.is_dir():
            raise ExportError(f"{source} has no {adapter.relative_to(path)}: " + (
                "name a checkpoint that exists" if checkpoint is not None else
                "the run has not finished; pass checkpoint=N to export a checkpoint"))
        if checkpoint is not None and (problem := checkpoint_problem(adapter)):
            raise ExportError(f"{adapter} is not complete ({problem}); name another --checkpoint")
        return adapter, None, path
    if checkpoint is not None:
        raise ExportError("--checkpoint picks a checkpoint of a run folder, and SOURCE is not one")
    if (path / "adapter_config.json").is_file():
        return path, None, None
    if (path / "config.json").is_file():
        return None, path, None
    raise ExportError(f"{source} is neither a run folder, a LoRA adapter folder nor a model folder")


def sample_questions(run_dir: Path | None):
    """The questions the checks compare answers on: a run's validation questions when it has them, else the
    shipped Chinese ones."""
    if run_dir is not None and (run_dir / VALIDATION_FILE).is_file():
        return read_questions(run_dir / VALIDATION_FILE)[:SAMPLE]
    return read_questions(shipped_file("mcq_zh.csv"))[:SAMPLE]


def _write_quants(model: Path, out: Path, scratch: Path, quants: tuple[str, ...], progress: bool,
                  record: dict | None):
    """(quant, file) for each asked quantization, named after the ``out`` folder, converting the model once:
    gguf-py's types directly, llama.cpp's from one float GGUF file (the asked f32/bf16/f16 one when there is
    one)."""
    name = out.resolve().name
    written: dict[str, Path] = {}
    for quant in dict.fromkeys(quants):
        if quant in GGUF_PY_QUANTS:
            written[quant] = write_gguf(model, out / f"{name}-{quant}.gguf", quant, progress, record)
            yield quant, written[quant]
    for quant in dict.fromkeys(q for q in quants if q in LLAMA_CPP_QUANTS):
        source = next((written[q] for q in ("f32", "bf16", "f16") if q in written), None)
        if source is None:
            source = written["f32"] = write_gguf(model, scratch / f"{name}-f32.gguf", "f32", progress, record)
        yield quant, quantize_gguf(source, out / f"{name}-{quant}.gguf", quant)


def _modelfile(path: Path, tokenizer, system: str | None) -> Path | None:
    try:
        return write_modelfile(path, tokenizer, system)
    except ExportError as error:
        log.warning(f"note: no Modelfile for {path.name}: {error}")
        return None


def _saved_dtype(adapter: Path, base: str | None) -> str:
    """The dtype the adapter's base model was saved in (float32 when it does not say): a merge for GGUF keeps
    it, so the GGUF's own rounding is the only one."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(base or adapter_base(adapter), local_files_only=True)
    except OSError:
        return "float32"  # the merge's own loading says what is missing
    dtype = str(getattr(config.get_text_config(), "dtype", None) or "float32").removeprefix("torch.")
    return dtype if dtype in ("float32", "bfloat16", "float16") else "float32"
