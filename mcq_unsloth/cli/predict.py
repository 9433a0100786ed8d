"""The ``predict``, ``eval`` and ``bench`` commands: answering question files and measuring speed."""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import click

from .errors import UserError, libraries_on_stderr, user_errors
from ..model.precision import DTYPES
from ..model.tiny import SHAPES


# --- predictions ------------------------------------------------------------------------------------

BACKEND_OPTION = click.option(
    "--backend", type=click.Choice(["auto", "unsloth", "hf"]), default="auto", show_default=True,
    help="unsloth: FastLanguageModel; hf: transformers + PEFT + bitsandbytes; auto: unsloth when it imports.")
PRECISION_OPTIONS = [
    click.option("--dtype", type=click.Choice(["auto", *DTYPES]), default="auto",
                 show_default=True,
                 help="Weights' (or, with --4bit, compute) dtype. auto: float32 on a CPU; on a GPU an adapter's "
                      "training dtype, else bfloat16 (float16 where the GPU lacks it)."),
    click.option("--4bit/--no-4bit", "load_in_4bit", default=None,
                 help="Load the base model in 4-bit (bitsandbytes NF4). Default: never on a CPU; on a GPU, as an "
                      "adapter was trained, and not for a base or merged model."),
]

def _prediction_options(command):
    """Options shared by predict and eval."""
    options = [
        click.option("--model", "model_dir", required=True,
                     help="A base model, a LoRA adapter folder (its base is read from adapter_config.json) or a "
                          "merged model: a folder or a Hub id; or a .gguf file, run by llama.cpp."),
        click.option("--base", default=None,
                     help="For an adapter --model: the base model to load instead of the one its "
                          "adapter_config.json names (e.g. a local copy on a machine without network)."),
        click.option("--data", "data_file", required=True, type=click.Path(dir_okay=False),
                     help="Questions: CSV, TSV, JSONL or Parquet, or shipped:NAME (a file shipped with the "
                          "package)."),
        click.option("--mode", type=click.Choice(["score", "generate"]), default="score", show_default=True,
                     help="score: one forward pass, softmax over the option letters; generate: greedy decoding, "
                          "then answer extraction."),
        click.option("--batch-size", default="auto", show_default=True,
                     help="Prompts per forward pass, or auto (from free GPU memory, halved on out-of-memory; 16 "
                          "on CPU)."),
        click.option("--max-new-tokens", type=click.IntRange(1, 4096), default=8, show_default=True,
                     help="generate mode: tokens to generate per question."),
        click.option("--circular", is_flag=True,
                     help="Also ask every question with its options rotated; the answer is the rotations' vote."),
        click.option("--on-long", type=click.Choice(["shorten", "error"]), default="shorten", show_default=True,
                     help="A question whose prompt exceeds the model's context: shorten its text from the middle "
                          "(named in a warning), or stop before answering anything."),
        click.option("--resume", is_flag=True, help="Keep the answers already written and do the rest."),
        click.option("--overwrite", is_flag=True, help="Replace existing output."),
        BACKEND_OPTION,
        *PRECISION_OPTIONS,
        click.option("--prompt", "template", type=click.Choice(["zh", "en"]), default=None,
                     help="Prompt template. Default: an adapter's own prompt from its training record, else zh "
                          "(the contest's Chinese one)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _settings_and_questions(data_file, mode, batch_size, max_new_tokens, circular, on_long, **columns):
    """Parse the shared options and read the questions: bad input fails before anything slow."""
    from ..data.sources import load_questions
    from ..inference.answering import PredictSettings

    if batch_size != "auto" and not (batch_size.isdigit() and int(batch_size) > 0):
        raise UserError(f"--batch-size must be a positive number or auto, got {batch_size!r}")
    settings = PredictSettings(mode, None if batch_size == "auto" else int(batch_size), max_new_tokens, circular,
                               on_long=on_long, **columns)
    return settings, load_questions(data_file)


def _plan(model_dir, base, dtype, load_in_4bit, template) -> dict:
    """What will answer and how it is asked, decided before anything loads (a bad GGUF file stops here): the
    training record (an adapter's, or the one inside a GGUF file), the precision, the prompt, and what a resumed
    output must have been produced by (``produced_by``)."""
    from dataclasses import asdict

    from ..model.precision import inference_precision
    from ..prompts import PromptConfig
    from ..training.folders import training_record

    if model_dir.endswith(".gguf"):
        from ..inference.llamacpp import gguf_facts

        kind, trained = gguf_facts(model_dir)
        precision, weights = f"{kind} (the GGUF file's)", kind
    else:
        trained = training_record(model_dir)
        precision = inference_precision(dtype, load_in_4bit, trained)
        weights = precision.weights
    prompt = PromptConfig(template) if template else PromptConfig(**trained["prompt"]) if trained else PromptConfig()
    produced_by = {"model": _identity(model_dir), **({"base": _identity(base)} if base else {}),
                   "precision": weights, "prompt": asdict(prompt)}
    return {"trained": trained, "precision": precision, "prompt": prompt, "produced_by": produced_by,
            "template_given": bool(template)}


def _identity(model: str) -> str:
    """A model as the record names it: a local path made absolute (the same model however it was written), a
    Hub id as it is."""
    return str(Path(model).resolve()) if Path(model).exists() else model


def _load_planned(model_dir, base, backend, plan):
    """Load the model as :func:`_plan` decided, saying on stderr which prompt it is asked with."""
    prompt = plan["prompt"]
    if model_dir.endswith(".gguf"):
        loaded = _load_gguf(model_dir, plan["produced_by"]["precision"])
    else:
        loaded = _load_precision(model_dir, backend, plan["precision"], base=base)
    own_texts = " with the adapter's own texts" if prompt.system is not None or prompt.user is not None else ""
    source = " (the adapter's training record)" if plan["trained"] and not plan["template_given"] else ""
    click.echo(f"prompt: template {prompt.template}{own_texts}{source}", err=True)
    return loaded


def _refuse_overwriting_input(data_file: str, outputs: list[Path]) -> None:
    from ..outputs import same_file

    for out in outputs:
        if same_file(out, data_file):
            raise UserError(f"{out} is the --data file; writing there would destroy the questions: choose another "
                            f"output")


def _load(model_dir, backend, dtype, load_in_4bit, trained=None, base=None):
    """Load a model for inference in the precision :func:`mcq_unsloth.model.precision.inference_precision` picks,
    saying which on stderr."""
    from ..model.precision import inference_precision

    precision = inference_precision(dtype, load_in_4bit, trained)
    return _load_precision(model_dir, backend, precision, base), precision


def _load_precision(model_dir, backend, precision, base=None):
    from ..model.backends import load_model, out_of_memory_errors

    try:
        loaded = load_model(model_dir, backend=backend, dtype=precision.dtype, load_in_4bit=precision.load_in_4bit,
                            base=base)
    except out_of_memory_errors():
        raise UserError(f"out of GPU memory loading {model_dir} in {precision}; load it in 4-bit (--4bit) or "
                        f"use a larger GPU") from None
    click.echo(f"model: {model_dir}, backend {loaded.backend}, precision {precision}", err=True)
    return loaded


def _load_gguf(path: str, weights: str):
    """A GGUF file in llama.cpp, with the tokenizer view prompts are rendered with."""
    from ..inference.llamacpp import GgufModel, GgufTokenizer
    from ..model.backends import Loaded

    model = GgufModel(path)
    click.echo(f"model: {path}, llama.cpp, weights {weights}", err=True)
    return Loaded(model, GgufTokenizer(model), "llama.cpp")


@contextlib.contextmanager
def _answering(data_file: str, answers: Path):
    """Around answering a file: questions too long for the model are named with the file, and Ctrl-C says where
    the answers so far are and how to finish."""
    from ..errors import LongQuestions

    try:
        yield
    except LongQuestions as error:
        raise UserError(f"{data_file}: {error}") from None
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted; {answers} holds the answers so far. Finish with the same command and --resume.",
                   err=True)
        sys.exit(130)


def _refuse_existing(path: Path, resume: bool, overwrite: bool) -> None:
    if path.exists() and not (resume or overwrite):
        raise UserError(f"{path} exists; pass --resume to finish it or --overwrite to replace it")


@click.command()
@_prediction_options
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Submission CSV to write.")
@click.option("--raw", type=click.Path(dir_okay=False), help="Also write each question's raw output as JSONL.")
@click.option("--id-column", default="id", show_default=True, help="Submission column for question ids.")
@click.option("--answer-column", default="answer", show_default=True, help="Submission column for answers.")
def predict(model_dir, base, data_file, mode, batch_size, max_new_tokens, circular, on_long, resume, overwrite,
            backend, dtype, load_in_4bit, template, out, raw, id_column, answer_column):
    """Answer every question of --data into a submission CSV (id,answer), appending as it goes."""
    from ..inference.files import answered, predict_file
    from ..outputs import check_writable, exclusive, same_file

    out, raw = Path(out), Path(raw) if raw else None
    _refuse_overwriting_input(data_file, [out] + ([raw] if raw else []))
    if raw and same_file(raw, out):
        raise UserError("--raw and --out name the same file; give --raw a file of its own (e.g. answers.jsonl)")
    _refuse_existing(out, resume, overwrite)
    with user_errors(*[out] + ([raw] if raw else [])), libraries_on_stderr():
        for path in [out] + ([raw] if raw else []):
            check_writable(path)
        settings, questions = _settings_and_questions(data_file, mode, batch_size, max_new_tokens, circular, on_long,
                                                      id_column=id_column, answer_column=answer_column, raw=raw)
        plan = _plan(model_dir, base, dtype, load_in_4bit, template)
        settings = replace(settings, produced_by=plan["produced_by"])
        with exclusive(out):
            if resume:
                answered(out, settings, questions)  # a partial file from another run stops us before loading
            loaded = _load_planned(model_dir, base, backend, plan)
            with _answering(data_file, out):
                result = predict_file(loaded.model, loaded.tokenizer, questions, out, settings, plan["prompt"],
                                      resume=resume)
    click.echo(json.dumps({"out": str(out), **result, "precision": str(plan["precision"])}, ensure_ascii=False))


@click.command("eval")
@_prediction_options
@click.option("--out-dir", required=True, type=click.Path(file_okay=False),
              help="Folder for predictions.csv, predictions.jsonl, metrics.json and confusion.png.")
def eval_command(model_dir, base, data_file, mode, batch_size, max_new_tokens, circular, on_long, resume, overwrite,
                 backend, dtype, load_in_4bit, template, out_dir):
    """Answer labelled questions and write metrics.json (accuracy, unparseable share, distributions, confusion
    matrix, speed) and confusion.png."""
    from ..errors import DataError
    from ..inference.files import EVAL_FILES, answered, evaluate_file
    from ..outputs import check_writable, exclusive

    out_dir = Path(out_dir)
    _refuse_overwriting_input(data_file, [out_dir / name for name in EVAL_FILES])
    _refuse_existing(out_dir / "predictions.csv", resume, overwrite)
    with user_errors(out_dir), libraries_on_stderr():
        check_writable(out_dir, folder=True)
        settings, questions = _settings_and_questions(data_file, mode, batch_size, max_new_tokens, circular, on_long,
                                                      raw=out_dir / "predictions.jsonl")
        if any(q.answer is None for q in questions):
            raise DataError(data_file, "eval needs answers and this file has none", column="answer",
                            fix="add an answer column, or use predict")
        plan = _plan(model_dir, base, dtype, load_in_4bit, template)
        settings = replace(settings, produced_by=plan["produced_by"])
        with exclusive(out_dir):
            if resume:
                answered(out_dir / "predictions.csv", settings, questions)
            loaded = _load_planned(model_dir, base, backend, plan)
            out_dir.mkdir(parents=True, exist_ok=True)
            with _answering(data_file, out_dir / "predictions.csv"):
                result = evaluate_file(loaded.model, loaded.tokenizer, questions, out_dir, settings, plan["prompt"],
                                       resume=resume, about={"model": model_dir, "backend": loaded.backend,
                                                             "precision": str(plan["precision"])})
    summary = {k: result[k] for k in ("accuracy", "unparseable", "questions", "questions_per_second", "seconds")}
    for key in ("ties", "circular_accuracy", "position_bias"):
        if key in result:
            summary[key] = result[key]
    if result["shortened"]:
        summary["shortened"] = result["shortened"]
    click.echo(json.dumps({"out_dir": str(out_dir), **summary}, ensure_ascii=False))


# --- benchmarks -------------------------------------------------------------------------------------

@click.group(invoke_without_command=True)
@click.option("--model", default="tiny", show_default=True,
              help="tiny (built now), qwen2.5-7b or qwen2.5-14b (the real layers and vocabulary, random weights, "
                   "built on the GPU), or a model folder.")
@click.option("--tasks", default="sft,grpo,score,generate", show_default=True,
              help="Comma-separated: sft, grpo, score, generate.")
@click.option("--seq-len", type=click.IntRange(min=16), default=512, show_default=True,
              help="SFT sequence length (tokens), and the models' maximum length.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True,
              help="SFT sequences per step (the contest's 4); inference batches hold 16 prompts.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Timed steps (or inference rounds) after the warm-up: default 10, or 3 with --quick.")
@click.option("--quick", is_flag=True, help="Fewer steps, shorter GRPO replies, fewer questions: a check that it "
                                            "runs, minutes on a CPU.")
@click.option("--4bit/--no-4bit", "load_in_4bit", default=True, show_default=True,
              help="Both backends load the base in 4-bit NF4 with double quantization, as the contest did.")
@click.option("--sft-questions", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Training questions for the projected time of the contest's 3 SFT epochs.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/bench", show_default=True,
              help="Folder for bench.json, bench.md and bench.png.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it holds files.")
@click.pass_context
def bench(ctx, model, tasks, seq_len, batch_size, steps, quick, load_in_4bit, sft_questions, out, overwrite):
    """Unsloth against vanilla transformers + PEFT + bitsandbytes, side by side: SFT and GRPO steps, letter
    scoring and generation, each backend in its own process with the same settings. Writes bench.json,
    bench.md (with the contest's runs projected) and bench.png. `bench inference` is the quick in-process
    table of one backend's inference modes."""
    if ctx.invoked_subcommand is not None:
        return
    import shlex

    import torch

    from ..bench.runner import TASKS, run_bench
    from ..outputs import check_writable, empty_folder, exclusive

    chosen = tuple(t.strip() for t in tasks.split(",") if t.strip())
    if unknown := [t for t in chosen if t not in TASKS]:
        raise UserError(f"--tasks: unknown {', '.join(unknown)}; choose among {', '.join(TASKS)}")
    if model in SHAPES and not torch.cuda.is_available():
        raise UserError(f"--model {model} builds and trains a real-sized model, which needs a CUDA GPU; without one, "
                        "use --model tiny")
    with user_errors(out), libraries_on_stderr():
        check_writable(out, folder=True)
        with exclusive(out):
            empty_folder(out, overwrite)
            result = run_bench(model, out, chosen, seq_len, batch_size, steps, quick, load_in_4bit, sft_questions,
                               command=shlex.join(["mcq-unsloth", *sys.argv[1:]]))
    click.echo(Path(out, "bench.md").read_text(encoding="utf-8"))
    failed = [f"{r['task']}/{r['backend']}" for r in result["rows"] if "error" in r]
    if failed:
        raise UserError(f"{len(failed)} job(s) failed ({', '.join(failed)}); bench.md says why")


@bench.command("inference")
@click.option("--model", "model_dir", default=None, help="Model folder or Hub id (default: a tiny model built now).")
@click.option("--shape", type=click.Choice(sorted(SHAPES)), default=None,
              help="Instead of --model: a random model with these layers, built now (speed and memory only).")
@click.option("--n", "count", type=click.IntRange(min=8), default=256, show_default=True,
              help="Synthetic questions to answer.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--one-at-a-time", type=click.IntRange(min=1), default=64, show_default=True,
              help="Questions for the one-at-a-time generation run.")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True,
              help="Rounds (each runs every mode once); the table shows the medians.")
@BACKEND_OPTION
@PRECISION_OPTIONS[0]
@PRECISION_OPTIONS[1]
def bench_inference(model_dir, shape, count, batch_size, max_new_tokens, one_at_a_time, repeat, backend, dtype,
                    load_in_4bit):
    """Questions/s of score mode, batched generation and one-at-a-time generation, as a Markdown table."""
    import os
    import platform
    import tempfile

    import torch

    from ..bench.runner import format_table, inference_speed
    from ..data.synth import synth_questions
    from ..inference.scoring import prompt_token_ids
    from ..model.backends import resolve_backend
    from ..training.folders import training_record

    if model_dir and shape:
        raise UserError("give --model or --shape, not both")
    cuda = torch.cuda.is_available()
    if shape and not cuda:
        raise UserError(f"--shape {shape} builds and runs a real-sized model, which needs a CUDA GPU; "
                        "without one, leave --shape out to benchmark the tiny model")
    chosen = resolve_backend(backend)  # before the tiny model is built: Unsloth must precede transformers
    name = f"random {shape}-shaped model" if shape else f"model {model_dir}" if model_dir else "tiny model"
    with tempfile.TemporaryDirectory() as scratch, user_errors(), libraries_on_stderr():
        if shape:
            from ..model.tiny import build_shaped_model

            click.echo(f"building a random {shape}-shaped model ...", err=True)
            model_dir = str(build_shaped_model(Path(scratch) / shape, shape))
        elif model_dir is None:
            from ..model.tiny import build_tiny_model

            model_dir = str(build_tiny_model(Path(scratch) / "tiny"))
        loaded, precision = _load(model_dir, chosen, dtype, load_in_4bit, training_record(model_dir))
        questions = synth_questions(count, seed=11)
        rows = inference_speed(loaded.model, loaded.tokenizer, questions, batch_size, max_new_tokens, one_at_a_time,
                               repeat)
        tokens = sum(map(len, prompt_token_ids(loaded.tokenizer, questions))) / len(questions)
    device = f"CUDA {torch.cuda.get_device_name()}" if cuda else f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    click.echo(f"{name}, backend {chosen}, precision {precision}, batch {batch_size}, prompts of {tokens:.0f} "
               f"tokens on average, {device}\n")
    click.echo(format_table(rows))
