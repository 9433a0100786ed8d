"""The ``export`` and ``verify-gguf`` commands: a trained model as a LoRA adapter, a merged 16-bit model or GGUF
files for llama.cpp and Ollama."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .errors import libraries_on_stderr, user_errors
from ..api import export as export_model, verify_gguf
from ..convert.run import GGUF_DEFAULT, QUANTS


@click.command()
@click.argument("source")
@click.option("--format", "fmt", type=click.Choice(["lora", "merged", "gguf"]), required=True,
              help="lora: the adapter as it is; merged: LoRA merged into the base's 16-bit weights; gguf: one file "
                   "per --quant for llama.cpp and Ollama, each with a Modelfile.")
@click.option("--quant", "quants", type=click.Choice(QUANTS), multiple=True,
              help=f"gguf: quantization, repeatable (default {GGUF_DEFAULT}: the one that answered as the float32 "
                   f"model in docs/export.md's checks). f32/f16/bf16/q8_0 are written by gguf-py; the K-quants by "
                   f"llama.cpp's quantizer (needs llama-cpp-python).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write.")
@click.option("--base", default=None, help="The adapter's base model, instead of the one adapter_config.json names "
                                           "(e.g. a local copy; nothing is downloaded).")
@click.option("--checkpoint", type=int, default=None, help="For a run folder: export checkpoint-N instead of the "
                                                           "final adapter.")
@click.option("--dtype", type=click.Choice(["bfloat16", "float16", "float32"]), default="bfloat16",
              show_default=True, help="merged: the weights' dtype.")
@click.option("--verify", is_flag=True, help="gguf: check each file in llama.cpp against the merged model "
                                             "(tokenization and letter answers); needs llama-cpp-python.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it holds files.")
def export(source, fmt, quants, out, base, checkpoint, dtype, verify, overwrite):
    """Export SOURCE (a run folder, a LoRA adapter folder or a model folder) as --format into --out.

    Ends with one JSON line: what was written, the merge check's largest probability difference, and with
    --verify each file's agreement with the merged model."""
    out = Path(out)
    with user_errors(out), libraries_on_stderr():
        written = export_model(source, out, format=fmt, quant=quants or None,
                               verify=verify, overwrite=overwrite, base=base, checkpoint=checkpoint, dtype=dtype)
    click.echo(json.dumps(written.summary, ensure_ascii=False))


@click.command("verify-gguf")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--reference", required=True, type=click.Path(file_okay=False),
              help="The Hugging Face model folder the GGUF file was made from.")
@click.option("--data", "data_file", default="shipped:mcq_zh.csv", show_default=True,
              help="Questions to compare on (a file or shipped:NAME).")
@click.option("--n", "count", type=click.IntRange(min=1), default=64, show_default=True,
              help="How many of them.")
def verify_gguf_command(file, reference, data_file, count):
    """Check FILE in llama.cpp against --reference: identical tokenization of the rendered prompts, and the same
    letter chosen at the answer position. Prints one JSON line."""
    with user_errors(), libraries_on_stderr():
        result = verify_gguf(file, reference, data_file, n=count)
    click.echo(json.dumps(result, ensure_ascii=False))
