"""The ``mcq-unsloth`` command line. Only click is imported at start-up, so ``--help`` is instant; each
command imports what it needs. User mistakes (bad files, bad recipes, existing outputs) end with one readable
line and exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from pathlib import Path

import click

from .tiny import SHAPES


class UserError(click.ClickException):
    """A mistake the user can fix: printed as one line, exit code 2."""

    exit_code = 2


def _user_error_types() -> tuple[type[Exception], ...]:
    """The exceptions that are the user's to fix, imported only when a command needs them."""
    from .config import ConfigError
    from .data import DataError
    from .models import ModelLoadError
    from .recipes import RecipeNotFound

    return DataError, ConfigError, RecipeNotFound, ModelLoadError, FileExistsError, FileNotFoundError


@contextlib.contextmanager
def _user_errors():
    """Turn the exceptions that are the user's to fix into :class:`UserError` (one line, exit code 2)."""
    try:
        yield
    except _user_error_types() as error:
        raise UserError(str(error)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mcq-unsloth")
def main():
    """Fine-tune LLMs on multiple-choice questions: recipes, fast scoring, export."""


# --- data -------------------------------------------------------------------------------------------

@main.group()
def data():
    """Check question files and make synthetic ones."""


@data.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line: rows, labelled, answers.")
def data_check(file, as_json):
    """Validate FILE (CSV, TSV, JSONL or Parquet) and summarize it."""
    from .data import load_questions, summarize

    with _user_errors():
        questions = load_questions(file)
    summary = summarize(questions)
    option_counts = sorted({len(q.options) for q in questions})
    click.echo(f"{file}: {summary['rows']} questions, {'/'.join(map(str, option_counts))} options each, "
               f"{'labelled' if summary['labelled'] else 'unlabelled (a set to predict)'}")
    if summary["labelled"]:
        total = summary["rows"]
        click.echo("answers: " + "  ".join(f"{k} {v} ({v / total:.0%})" for k, v in summary["answers"].items()))
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))


@data.command("synth")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--n", "count", type=click.IntRange(min=1), default=400, show_default=True,
              help="Number of questions.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--kinds", default=None, help="Comma-separated kinds (match,lookup,arith,compare,count); "
                                            "default all.")
@click.option("--held-out", is_flag=True, help="Use the phrasings and characters that training questions never use.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def data_synth(out, count, seed, kinds, held_out, overwrite):
    """Write COUNT synthetic, learnable Chinese questions to OUT (.csv, .tsv or .jsonl)."""
    from .data import write_questions
    from .synth import synth_questions

    if Path(out).exists() and not overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it")
    try:
        questions = synth_questions(count, seed, kinds.split(",") if kinds else None, held_out)
    except ValueError as error:
        raise UserError(str(error)) from None
    write_questions(questions, out)
    click.echo(f"wrote {len(questions)} questions to {out}")


# --- recipes ----------------------------------------------------------------------------------------

class _RecipeGroup(click.Group):
    """``recipe NAME ...`` is short for ``recipe run NAME ...``."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)

    def format_usage(self, ctx, formatter):
        formatter.write_usage(ctx.command_path, "NAME [--set KEY=VALUE ...] [--out DIR] | COMMAND ...")


@main.group(cls=_RecipeGroup)
def recipe():
    """Run a named recipe (recipe NAME), or list, show and copy recipes."""


@recipe.command("list")
def recipe_list():
    """List the shipped recipes."""
    from .recipes import describe, shipped_recipes

    recipes = shipped_recipes()
    width = max(map(len, recipes), default=0)
    for name, path in recipes.items():
        click.echo(f"{name:<{width}}  {describe(path).removeprefix(name + ':').strip()}")


@recipe.command("show")
@click.argument("name")
@click.option("--resolved", is_flag=True, help="Print the full configuration with defaults filled in.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a setting.")
def recipe_show(name, resolved, overrides):
    """Print recipe NAME (a shipped name or a path)."""
    from .config import dump_yaml, load_config
    from .recipes import find_recipe

    with _user_errors():
        path = find_recipe(name)
        if resolved or overrides:
            click.echo(dump_yaml(load_config(path, list(overrides))), nl=False)
        else:
            click.echo(path.read_text(encoding="utf-8"), nl=False)


@recipe.command("cp")
@click.argument("name")
@click.argument("dest", type=click.Path())
@click.option("--overwrite", is_flag=True, help="Replace DEST if it exists.")
def recipe_cp(name, dest, overwrite):
    """Copy recipe NAME to DEST to edit it."""
    from .recipes import copy_recipe

    with _user_errors():
        click.echo(f"copied to {copy_recipe(name, dest, overwrite)}")


@recipe.command("run")
@click.argument("name")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a setting, e.g. --set train.learning_rate=1e-4 (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default runs/NAME).")
@click.option("--resume", is_flag=True, help="Continue the run in the run folder from its latest checkpoint.")
@click.option("--overwrite", is_flag=True, help="Delete an existing run folder first.")
def recipe_run(name, overrides, out, resume, overwrite):
    """Run recipe NAME: defaults < recipe YAML < --set."""
    from .config import dump_yaml, load_config
    from .recipes import find_recipe
    from .models import out_of_memory_errors
    from .runs import latest_checkpoint, prepare_run_dir, record_run

    with _user_errors():
        path = find_recipe(name)
        config = load_config(path, list(overrides))
        run_dir = prepare_run_dir(out or Path("runs") / path.stem, overwrite=overwrite, resume=resume)
        record_run(run_dir, config, str(path), resume=resume)
        click.echo(dump_yaml(config), err=True)
        start = time.perf_counter()
        try:
            result = _run_task(config, run_dir, resume)
        except _user_error_types() if not resume else ():
            # A run that stopped on bad input before its first checkpoint leaves no folder to --overwrite.
            if latest_checkpoint(run_dir / "checkpoints") is None:
                shutil.rmtree(run_dir)
            raise
        except KeyboardInterrupt:
            last = latest_checkpoint(run_dir / "checkpoints")
            click.echo(f"\ninterrupted; last complete checkpoint: {last or 'none yet'}. Continue with:\n"
                       f"  mcq-unsloth recipe {name} --resume --out {run_dir}"
                       + "".join(f" --set {o}" for o in overrides), err=True)
            sys.exit(130)
        except out_of_memory_errors() as error:
            last = latest_checkpoint(run_dir / "checkpoints")
            raise UserError(
                f"out of GPU memory ({str(error).splitlines()[0]}); last complete checkpoint: {last or 'none yet'}. "
                f"Lower train.per_device_train_batch_size (raising train.gradient_accumulation_steps to keep the "
                f"batch), model.max_seq_length" + (", grpo.num_generations or grpo.max_completion_length"
                                                   if config.task == "grpo" else "")
                + ", then continue with --resume") from None
    result["seconds"] = round(time.perf_counter() - start, 1)
    click.echo(json.dumps(result, ensure_ascii=False))


def _run_task(config, run_dir: Path, resume: bool) -> dict:
    if config.task == "sft":
        from .sft import train_sft

        return train_sft(config, run_dir, resume=resume)
    if config.task == "grpo":
        from .grpo import train_grpo

        return train_grpo(config, run_dir, resume=resume)
    raise UserError(f"task {config.task!r} has no runner")


# --- predictions ------------------------------------------------------------------------------------

def _prediction_options(command):
    """Options shared by predict and eval."""
    options = [
        click.option("--model", "model_dir", required=True,
                     help="A base model, a LoRA adapter folder (its base is read from adapter_config.json) or a "
                          "merged model: a folder or a Hub id."),
        click.option("--base", default=None,
                     help="For an adapter --model: the base model to load instead of the one its "
                          "adapter_config.json names (e.g. a local copy on a machine without network)."),
        click.option("--data", "data_file", required=True, type=click.Path(dir_okay=False),
                     help="Questions: CSV, TSV, JSONL or Parquet."),
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
        click.option("--resume", is_flag=True, help="Keep the answers already written and do the rest."),
        click.option("--overwrite", is_flag=True, help="Replace existing output."),
        click.option("--backend", type=click.Choice(["auto", "unsloth", "hf"]), default="auto", show_default=True),
        click.option("--4bit/--no-4bit", "load_in_4bit", default=True, show_default=True,
                     help="Load the base model in 4-bit (bitsandbytes NF4)."),
        click.option("--prompt", "template", type=click.Choice(["zh", "en"]), default="zh", show_default=True,
                     help="Prompt template (the contest's Chinese one by default)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _settings_and_model(model_dir, base, data_file, mode, batch_size, max_new_tokens, circular, backend,
                        load_in_4bit, **columns):
    """Parse the shared options, read the questions and load the model (in that order: bad input fails fast)."""
    from .config import ModelConfig
    from .data import load_questions
    from .models import load_model
    from .predict import PredictSettings

    if batch_size != "auto" and not (batch_size.isdigit() and int(batch_size) > 0):
        raise UserError(f"--batch-size must be a positive number or auto, got {batch_size!r}")
    settings = PredictSettings(mode, None if batch_size == "auto" else int(batch_size), max_new_tokens, circular,
                               **columns)
    questions = load_questions(data_file)
    loaded = load_model(ModelConfig(name=model_dir, backend=backend, load_in_4bit=load_in_4bit), lora=None,
                        base=base)
    return settings, questions, loaded


def _refuse_existing(path: Path, resume: bool, overwrite: bool) -> None:
    if path.exists() and not (resume or overwrite):
        raise UserError(f"{path} exists; pass --resume to finish it or --overwrite to replace it")


@main.command()
@_prediction_options
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Submission CSV to write.")
@click.option("--raw", type=click.Path(dir_okay=False), help="Also write each question's raw output as JSONL.")
@click.option("--id-column", default="id", show_default=True, help="Submission column for question ids.")
@click.option("--answer-column", default="answer", show_default=True, help="Submission column for answers.")
def predict(model_dir, base, data_file, mode, batch_size, max_new_tokens, circular, resume, overwrite, backend,
            load_in_4bit, template, out, raw, id_column, answer_column):
    """Answer every question of --data into a submission CSV (id,answer), appending as it goes."""
    from .predict import predict_file
    from .prompts import PromptConfig

    _refuse_existing(Path(out), resume, overwrite)
    with _user_errors():
        settings, questions, loaded = _settings_and_model(
            model_dir, base, data_file, mode, batch_size, max_new_tokens, circular, backend, load_in_4bit,
            id_column=id_column, answer_column=answer_column, raw=Path(raw) if raw else None)
        try:
            result = predict_file(loaded.model, loaded.tokenizer, questions, Path(out), settings,
                                  PromptConfig(template), resume=resume)
        except KeyboardInterrupt:
            click.echo(f"\ninterrupted; {out} holds the answers so far. Finish with the same command and --resume.",
                       err=True)
            sys.exit(130)
    click.echo(json.dumps({"out": out, **result}))


@main.command("eval")
@_prediction_options
@click.option("--out-dir", required=True, type=click.Path(file_okay=False),
              help="Folder for predictions.csv, predictions.jsonl, metrics.json and confusion.png.")
def eval_command(model_dir, base, data_file, mode, batch_size, max_new_tokens, circular, resume, overwrite,
                 backend, load_in_4bit, template, out_dir):
    """Answer labelled questions and write metrics.json (accuracy, unparseable share, distributions, confusion
    matrix, speed) and confusion.png."""
    from .data import DataError
    from .predict import evaluate_file
    from .prompts import PromptConfig

    out_dir = Path(out_dir)
    _refuse_existing(out_dir / "predictions.csv", resume, overwrite)
    with _user_errors():
        settings, questions, loaded = _settings_and_model(model_dir, base, data_file, mode, batch_size,
                                                          max_new_tokens, circular, backend, load_in_4bit)
        if any(q.answer is None for q in questions):
            raise DataError(data_file, "eval needs answers and this file has none", column="answer",
                            fix="add an answer column, or use predict")
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = evaluate_file(loaded.model, loaded.tokenizer, questions, out_dir, settings,
                                   PromptConfig(template), resume=resume)
        except KeyboardInterrupt:
            click.echo(f"\ninterrupted; {out_dir}/predictions.csv holds the answers so far. Finish with --resume.",
                       err=True)
            sys.exit(130)
    summary = {k: result[k] for k in ("accuracy", "unparseable", "questions", "questions_per_second", "seconds")}
    for key in ("circular_accuracy", "position_bias"):
        if key in result:
            summary[key] = result[key]
    click.echo(json.dumps({"out_dir": str(out_dir), **summary}, ensure_ascii=False))


# --- benchmarks -------------------------------------------------------------------------------------

@main.group()
def bench():
    """Benchmarks that print speed figures."""


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
@click.option("--backend", type=click.Choice(["auto", "unsloth", "hf"]), default="auto", show_default=True)
@click.option("--4bit/--no-4bit", "load_in_4bit", default=True, show_default=True)
def bench_inference(model_dir, shape, count, batch_size, max_new_tokens, one_at_a_time, repeat, backend,
                    load_in_4bit):
    """Questions/s of score mode, batched generation and one-at-a-time generation, as a Markdown table."""
    import platform
    import tempfile

    from .bench import format_table, inference_speed
    from .config import ModelConfig
    from .inference import prompt_token_ids
    from .models import load_model, resolve_backend
    from .synth import synth_questions

    if model_dir and shape:
        raise UserError("give --model or --shape, not both")
    if shape and not __import__("torch").cuda.is_available():
        raise UserError(f"--shape {shape} builds and runs a real-sized model, which needs a CUDA GPU; "
                        "without one, leave --shape out to benchmark the tiny model")
    chosen = resolve_backend(backend)  # before the tiny model is built: Unsloth must precede transformers
    with tempfile.TemporaryDirectory() as scratch, _user_errors():
        if shape:
            from .tiny import build_shaped_model

            click.echo(f"building a random {shape}-shaped model ...", err=True)
            model_dir = str(build_shaped_model(Path(scratch) / shape, shape))
        elif model_dir is None:
            from .tiny import build_tiny_model

            model_dir = str(build_tiny_model(Path(scratch) / "tiny"))
        loaded = load_model(ModelConfig(name=model_dir, backend=chosen, load_in_4bit=load_in_4bit), None,
                            backend=chosen)
        questions = synth_questions(count, seed=11)
        rows = inference_speed(loaded.model, loaded.tokenizer, questions, batch_size, max_new_tokens, one_at_a_time,
                               repeat)
        tokens = sum(map(len, prompt_token_ids(loaded.tokenizer, questions))) / len(questions)
    device = "CUDA " + __import__("torch").cuda.get_device_name() if __import__("torch").cuda.is_available() \
        else f"CPU ({platform.machine()}, {__import__('os').cpu_count()} cores)"
    name = f"random {shape}-shaped model" if shape else f"model {model_dir}"
    click.echo(f"{name}, backend {chosen}, 4-bit {load_in_4bit}, batch {batch_size}, prompts of {tokens:.0f} tokens "
               f"on average, {device}\n")
    click.echo(format_table(rows))


# --- models -----------------------------------------------------------------------------------------

@main.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--arch", type=click.Choice(["qwen2", "llama"]), default="qwen2", show_default=True)
@click.option("--layers", type=click.IntRange(1, 12), default=2, show_default=True)
@click.option("--hidden", type=click.IntRange(64, 1024), default=64, show_default=True,
              help="Hidden size (a multiple of 16).")
@click.option("--shape", type=click.Choice(sorted(SHAPES)), default=None,
              help="Instead: a random Qwen2 model with these layers, in bfloat16, for speed and memory checks.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it holds files.")
def tiny(out, arch, layers, hidden, shape, seed, overwrite):
    """Write a tiny random model and tokenizer to OUT (an HF folder, seconds on CPU)."""
    from .runs import prepare_run_dir
    from .tiny import build_shaped_model, build_tiny_model

    if hidden % 16:
        raise UserError(f"--hidden {hidden} is not a multiple of 16")
    with _user_errors():
        prepare_run_dir(out, overwrite=overwrite)
    if shape:
        build_shaped_model(out, shape, seed=seed)
        click.echo(f"wrote a random {shape}-shaped model to {out}")
        return
    build_tiny_model(out, arch, layers=layers, hidden=hidden, seed=seed)
    click.echo(f"wrote a tiny {arch} model ({layers} layers, hidden {hidden}) to {out}")


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace the run folder if it holds an earlier demo.")
def demo(out, overwrite):
    """The main job on the embedded default: build a tiny model, score it on held-out questions, fine-tune it
    with the smoke recipe, score it again.

    Ends with one JSON line: accuracy_before, accuracy_after, seconds, run_dir."""
    from .demo import run_demo

    with _user_errors():
        result = run_demo(Path(out), overwrite)
    click.echo(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
