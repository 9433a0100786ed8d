"""The ``predict``, ``eval`` and ``bench`` commands: answering question files and measuring speed."""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from pathlib import Path

import click

from .errors import UserError, libraries_on_stderr, user_errors
from ..model.precision import DTYPES
from ..model.tiny_models import SHAPES


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


def launched(num_processes: int | None, config_file: str | None) -> bool:
    """Run this very command line in ``num_processes`` processes through accelerate's launcher when asked (its
    options taken out); True when it did, having exited with the launch's code on failure."""
    from ..processes import launch_command, run_launch

    if num_processes is None and config_file is None:
        return False
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg in ("--num-processes", "--config-file"):
            skip = True
        elif not arg.startswith(("--num-processes=", "--config-file=")):
            args.append(arg)
    with user_errors():
        command = launch_command(args, num_processes or 1, config_file)
    code = run_launch(command, result_to_stderr=False)  # the main process prints the result line
    if code:
        raise UserError(f"the launch of {num_processes or 1} process(es) ended with exit code {code}; the processes' "
                        f"messages are above")
    return True


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


def _check_ranking(mode: str, top_k: int | None, debias: int | None, circular: bool) -> None:
    if top_k and mode != "score":
        raise UserError("--top-k ranks the letters by their probabilities, which only score mode has: use it with "
                        "--mode score")
    if debias and (mode != "score" or circular):
        raise UserError("--debias divides the letters' probabilities by the positions' prior: use it in score mode, "
                        "without --circular (which it replaces at a fraction of the cost)")


def _batch_size(value: str) -> int | None:
    if value != "auto" and not (value.isdigit() and int(value) > 0):
        raise UserError(f"--batch-size must be a positive number or auto, got {value!r}")
    return None if value == "auto" else int(value)


def _load(model_dir, backend, dtype, load_in_4bit):
    """The model as the benchmark loads it, and its precision (said with the reason)."""
    from ..inference.loading import load

    loaded = load(model_dir, backend=backend, dtype=dtype, load_in_4bit=load_in_4bit)
    return loaded, loaded.precision


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


@click.command()
@_prediction_options
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Submission CSV to write.")
@click.option("--raw", type=click.Path(dir_okay=False), help="Also write each question's raw output as JSONL.")
@click.option("--id-column", default="id", show_default=True, help="Submission column for question ids.")
@click.option("--answer-column", default="answer", show_default=True, help="Submission column for answers.")
def predict(model_dir, base, data_file, mode, batch_size, max_new_tokens, circular, combine, debias, debias_seed,
            top_k, on_long, resume, overwrite, backend, dtype, load_in_4bit, template, num_processes, config_file, out, raw, id_column, answer_column):
    """Answer every question of --data into a submission CSV (id,answer), appending as it goes."""
    from ..api import predict as predict_questions
    from ..processes import is_main

    _check_ranking(mode, top_k, debias, circular)
    if launched(num_processes, config_file):
        return
    out = Path(out)
    with user_errors(*[out] + ([raw] if raw else [])), libraries_on_stderr(), _answering(data_file, out):
        frame = predict_questions(model_dir, data_file, mode=mode, batch_size=_batch_size(batch_size),
                                  circular=circular, combine=combine, top_k=top_k, debias=debias,
                                  debias_seed=debias_seed, max_new_tokens=max_new_tokens,
                                  out=out, raw=raw, resume=resume, overwrite=overwrite, on_long=on_long,
                                  id_column=id_column, answer_column=answer_column, prompt=template, backend=backend, dtype=dtype,
                                  load_in_4bit=load_in_4bit, base=base, progress=is_main())
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
    from ..api import evaluate
    from ..processes import is_main

    _check_ranking(mode, top_k, debias, circular)
    if launched(num_processes, config_file):
        return
    out_dir = Path(out_dir)
    with user_errors(out_dir), libraries_on_stderr(), _answering(data_file, out_dir / "predictions.csv"):
        result = evaluate(model_dir, data_file, mode=mode, batch_size=_batch_size(batch_size), circular=circular,
                          combine=combine, top_k=top_k, debias=debias, debias_seed=debias_seed,
                          max_new_tokens=max_new_tokens, out_dir=out_dir, resume=resume, overwrite=overwrite,
                          on_long=on_long, prompt=template, backend=backend, dtype=dtype, load_in_4bit=load_in_4bit,
                          base=base, progress=is_main(), card=card)
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
    from ..api import ensemble

    try:
        parsed = [float(w) for w in weights.split(",")] if weights else None
    except ValueError:
        raise UserError(f"--weights must be numbers separated by commas, got {weights!r}") from None
    with user_errors(out):
        try:
            frame = ensemble(list(predictions), parsed, out=out, overwrite=overwrite)
        except ValueError as error:
            raise UserError(str(error).replace("weight per prediction", "--weights value per prediction")) from None
    click.echo(json.dumps({"out": str(out), **frame.attrs}, ensure_ascii=False))


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


@bench.command("letters")
@click.option("--model", "model_dir", required=True, help="Model folder, adapter or Hub id (or a .gguf file).")
@click.option("--data", "data_file", default="shipped:mcq_zh.csv", show_default=True,
              help="Labelled questions (any file predict reads).")
@click.option("--debias", "sizes", default="16,32", show_default=True,
              help="Comma-separated N for the debiased rows.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which questions estimate the prior.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Default: automatic.")
@BACKEND_OPTION
@PRECISION_OPTIONS[0]
@PRECISION_OPTIONS[1]
def bench_letters(model_dir, data_file, sizes, seed, batch_size, backend, dtype, load_in_4bit):
    """Plain, debiased and circular (vote and mean) letter scoring of one model on one labelled file, side by
    side: accuracy, the predicted letters' shares against the gold ones, agreement with the circular mean's
    answers, prompts asked and seconds, as a Markdown table."""
    from ..bench.letters import compare_letters, letters_table
    from ..data.sources import load_questions

    try:
        chosen = [int(n) for n in sizes.split(",") if n.strip()]
    except ValueError:
        raise UserError(f"--debias takes numbers separated by commas, got {sizes!r}") from None
    if any(n < 1 for n in chosen):
        raise UserError(f"--debias sizes must be at least 1, got {sizes!r}")
    with user_errors(), libraries_on_stderr():
        questions = load_questions(data_file)
        if any(q.answer is None for q in questions):
            raise UserError(f"{data_file}: bench letters needs answers, and this file has none")
        loaded, precision = _load(model_dir, backend, dtype, load_in_4bit)
        rows = compare_letters(loaded.engine, questions, chosen, seed, loaded.plan.prompt, batch_size)
    click.echo(f"model {model_dir}, backend {loaded.backend}, precision {precision}, {len(questions)} questions "
               f"of {data_file}, debias seed {seed}\n")
    click.echo(letters_table(rows, questions))


@bench.command("grpo-variants")
@click.option("--out", type=click.Path(file_okay=False), default="runs/bench-grpo-variants", show_default=True,
              help="Folder for the runs (VARIANT-rR), variants.md and variants.json.")
@click.option("--model", default=None,
              help="Policy to start from (default: the smoke recipe trains one first, into OUT/smoke).")
@click.option("--variants", default="grpo,bnpo,dr_grpo,dapo,gspo", show_default=True,
              help="Comma-separated variants (TRL settings each: see mcq_unsloth/bench/grpo_variants.py).")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Rounds; round r trains every variant with train.seed = SEED + r.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--recipe", default="grpo_smoke", show_default=True, help="The GRPO recipe every variant runs.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a setting of every run.")
@click.option("--resume", is_flag=True, help="Keep the runs of OUT that finished and train the rest.")
@click.option("--overwrite", is_flag=True, help="Replace OUT.")
def bench_grpo_variants(out, model, variants, rounds, seed, recipe, overrides, resume, overwrite):
    """GRPO's loss variants (loss_type grpo, bnpo, dr_grpo, dapo; GSPO) trained on one recipe and one seed
    schedule, in rounds: final eval_accuracy, the correct reward over the last third, frac_reward_zero_std and
    seconds per step, as a Markdown table."""
    from ..bench.grpo_variants import compare_variants

    with user_errors(out), libraries_on_stderr():
        try:
            compare_variants(Path(out), model, [v.strip() for v in variants.split(",") if v.strip()], rounds, seed,
                             list(overrides), recipe, resume=resume, overwrite=overwrite)
        except KeyboardInterrupt:
            again = [a for a in sys.argv[1:] if a != "--overwrite"]
            click.echo(f"\ninterrupted; the finished runs are kept. Finish with:\n  "
                       f"mcq-unsloth {shlex.join(again + ([] if resume else ['--resume']))}", err=True)
            sys.exit(130)
    click.echo(Path(out, "variants.md").read_text(encoding="utf-8"), nl=False)


@bench.command("padding")
@click.option("--model", "model_dir", required=True, help="Model folder (mcq-unsloth smollm2 DIR writes a real one).")
@click.option("--data", "data_files", multiple=True, default=("shipped:mcq_zh.csv", "shipped:reasoning_zh.tsv"),
              show_default=True, help="Labelled questions, whose length mix the batches get (repeatable).")
@click.option("--count", type=click.IntRange(min=2), default=64, show_default=True,
              help="Questions, drawn evenly from the files in a seeded order.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Examples a batch (packed: rows of --pack-length tokens a batch).")
@click.option("--pack-length", type=click.IntRange(min=16), default=512, show_default=True,
              help="Tokens a packed row holds (TRL's max_length with packing).")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@BACKEND_OPTION
@PRECISION_OPTIONS[0]
def bench_padding(model_dir, data_files, count, batch_size, pack_length, rounds, seed, backend, dtype):
    """SFT batches padded, padding-free and packed, side by side: share of padding, seconds a step and real
    (non-pad) tokens per second of a forward and backward pass, and each example's loss against the padded
    batch's (zero when the flattened examples are kept apart), as a Markdown table."""
    from ..bench.padding import compare_files, padding_table

    with user_errors(), libraries_on_stderr():
        result = compare_files(model_dir, list(data_files), count, batch_size, pack_length, rounds, seed,
                               backend=backend, dtype=dtype)
    click.echo(f"model {model_dir}, backend {result['backend']}, {result['dtype']}, {result['questions']} questions of "
               f"{', '.join(data_files)} ({result['tokens']}), batch {batch_size}, packed rows of {pack_length} "
               f"tokens, median of {rounds} rounds\n")
    click.echo(padding_table(result["rows"]), nl=False)


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
    from ..data.synthetic import synth_questions
    from ..inference.scoring import prompt_token_ids
    from ..model.backends import resolve_backend

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
            from ..model.tiny_models import build_shaped_model

            click.echo(f"building a random {shape}-shaped model ...", err=True)
            model_dir = str(build_shaped_model(Path(scratch) / shape, shape))
        elif model_dir is None:
            from ..model.tiny_models import build_tiny_model

            model_dir = str(build_tiny_model(Path(scratch) / "tiny"))
        loaded, precision = _load(model_dir, chosen, dtype, load_in_4bit)
        questions = synth_questions(count, seed=11)
        rows = inference_speed(loaded.model, loaded.tokenizer, questions, batch_size, max_new_tokens, one_at_a_time,
                               repeat)
        tokens = sum(map(len, prompt_token_ids(loaded.tokenizer, questions))) / len(questions)
    device = f"CUDA {torch.cuda.get_device_name()}" if cuda else f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    click.echo(f"{name}, backend {chosen}, precision {precision}, batch {batch_size}, prompts of {tokens:.0f} "
               f"tokens on average, {device}\n")
    click.echo(format_table(rows))
