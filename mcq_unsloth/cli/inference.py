"""The ``predict``, ``eval`` and ``bench`` commands: answering question files and measuring speed."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from .errors import UserError, libraries_on_stderr, user_errors
from ..api import ensemble, evaluate, predict as predict_questions
from ..errors import LongQuestions
from ..model.precision import DTYPES
from ..processes import is_main


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

LAUNCH_OPTIONS = [
    click.option("--num-processes", type=click.IntRange(min=1), default=None,
                 help="Answer in N processes (one per GPU), each its share into part files that are merged in "
                      "order: starts accelerate launch, printing its command."),
    click.option("--config-file", default=None, metavar="FILE|NAME",
                 help="With --num-processes: an accelerate config file, or a shipped one (ddp, ...)."),
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
                     help="Also ask every question with its options rotated; the answer is the letter of the highest "
                          "probability averaged over the rotations (generate mode: their vote)."),
        click.option("--combine", type=click.Choice(["mean", "vote"]), default="mean", show_default=True,
                     help="With --circular in score mode: average the rotations' probabilities, or take their vote."),
        click.option("--debias", type=click.IntRange(min=1), default=None, metavar="N",
                     help="score mode: estimate the model's prior over answer positions on N questions of each option "
                          "count (asked in every rotation) and divide it out of the others' probabilities (about "
                          "N x options extra questions; instead of --circular)."),
        click.option("--debias-seed", type=int, default=0, show_default=True, help="Which questions --debias asks."),
        click.option("--top-k", "top_k", type=click.IntRange(min=1), default=None,
                     help="score mode: also write the K most probable letters per question, best first (a 'ranked' "
                          "column); eval then reports MAP@K."),
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
        *LAUNCH_OPTIONS,
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _batch_size(value: str) -> int | None:
    if value != "auto" and not (value.isdigit() and int(value) > 0):
        raise UserError(f"--batch-size must be a positive number or auto, got {value!r}")
    return None if value == "auto" else int(value)


@contextlib.contextmanager
def _answering(data_file: str, answers: Path):
    """Around answering a file: questions too long for the model are named with the file, and Ctrl-C says where
    the answers so far are and how to finish."""
    try:
        yield
    except LongQuestions as error:
        raise UserError(f"{data_file}: {error}") from None
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted; {answers} holds the answers so far. Finish with the same command and --resume.",
                   err=True)
        sys.exit(130)


@click.command()
@_prediction_options
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Submission CSV to write.")
@click.option("--raw", type=click.Path(dir_okay=False), help="Also write each question's raw output as JSONL.")
@click.option("--id-column", default="id", show_default=True, help="Submission column for question ids.")
@click.option("--answer-column", default="answer", show_default=True, help="Submission column for answers.")
def predict(model_dir, base, data_file, mode, batch_size, max_new_tokens, circular, combine, debias, debias_seed,
            top_k, on_long, resume, overwrite, backend, dtype, load_in_4bit, template, num_processes, config_file, out, raw, id_column, answer_column):
    """Answer every question of --data into a submission CSV (id,answer), appending as it goes."""
    out = Path(out)
    with user_errors(*[out] + ([raw] if raw else [])), libraries_on_stderr(), _answering(data_file, out):
        frame = predict_questions(model_dir, data_file, mode=mode, batch_size=_batch_size(batch_size),
                                  circular=circular, combine=combine, top_k=top_k, debias=debias,
                                  debias_seed=debias_seed, max_new_tokens=max_new_tokens,
                                  out=out, raw=raw, resume=resume, overwrite=overwrite, on_long=on_long,
                                  id_column=id_column, answer_column=answer_column, prompt=template, backend=backend, dtype=dtype,
                                  load_in_4bit=load_in_4bit, base=base, progress=is_main(),
                                  num_processes=num_processes, accelerate_config=config_file,
                                  answers=False)  # the counts alone are printed
    if is_main():
        click.echo(json.dumps(frame.attrs, ensure_ascii=False))


@click.command("eval")
@_prediction_options
@click.option("--out-dir", required=True, type=click.Path(file_okay=False),
              help="Folder for predictions.csv, predictions.jsonl, metrics.json and confusion.png.")
@click.option("--card", is_flag=True,
              help="Also put the results, with this command, into the model card (README.md) of the --model folder.")
def eval_command(model_dir, base, data_file, mode, batch_size, max_new_tokens, circular, combine, debias,
                 debias_seed, top_k, on_long, resume, overwrite, backend, dtype, load_in_4bit, template, num_processes,
                 config_file, out_dir, card):
    """Answer labelled questions and write metrics.json (accuracy, unparseable share, distributions, confusion
    matrix, speed) and confusion.png."""
    out_dir = Path(out_dir)
    with user_errors(out_dir), libraries_on_stderr(), _answering(data_file, out_dir / "predictions.csv"):
        result = evaluate(model_dir, data_file, mode=mode, batch_size=_batch_size(batch_size), circular=circular,
                          combine=combine, top_k=top_k, debias=debias, debias_seed=debias_seed,
                          max_new_tokens=max_new_tokens, out_dir=out_dir, resume=resume, overwrite=overwrite,
                          on_long=on_long, prompt=template, backend=backend, dtype=dtype, load_in_4bit=load_in_4bit,
                          base=base, progress=is_main(), card=card, num_processes=num_processes,
                          accelerate_config=config_file, answers=False)  # the metrics alone are printed
    if not is_main():
        return
    summary = {k: result[k] for k in ("accuracy", "unparseable", "questions", "questions_per_second", "seconds")}
    for key in ("ties", "circular_accuracy", "position_bias", "vote_accuracy", "debias",
                *[k for k in result if k.startswith("map@")]):
        if key in result:
            summary[key] = result[key]
    if result["shortened"]:
        summary["shortened"] = result["shortened"]
    click.echo(json.dumps({"out_dir": str(out_dir), **summary}, ensure_ascii=False))


@click.command("ensemble")
@click.argument("predictions", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Submission CSV to write (id,answer).")
@click.option("--weights", default=None, help="Comma-separated weights, one per prediction (default: equal).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def ensemble_command(predictions, out, weights, overwrite):
    """Combine several models' PREDICTIONS of the same questions into one submission: the weighted mean of their
    letter probabilities when every input has them (raw JSON-lines files, eval folders, saved DataFrames), else a
    weighted vote of their letters. Ends with one JSON line."""
    try:
        parsed = [float(w) for w in weights.split(",")] if weights else None
    except ValueError:
        raise UserError(f"--weights must be numbers separated by commas, got {weights!r}") from None
    with user_errors(out):
        frame = ensemble(list(predictions), parsed, out=out, overwrite=overwrite)
    click.echo(json.dumps({"out": str(out), **frame.attrs}, ensure_ascii=False))
