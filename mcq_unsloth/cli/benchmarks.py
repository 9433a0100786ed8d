"""The ``bench`` commands: each a call of the benchmark behind it (:func:`mcq_unsloth.bench` and its siblings),
printing the table it returns."""

from __future__ import annotations

import shlex
import sys

import click

from .errors import UserError, libraries_on_stderr, user_errors
from .inference import BACKEND_OPTION, PRECISION_OPTIONS
from ..benchmarks.backends import bench as run_backends
from ..benchmarks.grpo_variants import bench_grpo_variants
from ..benchmarks.letters import bench_letters
from ..benchmarks.modes import bench_inference
from ..benchmarks.padding import bench_padding
from ..model.tiny_models import SHAPES


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
    with user_errors(out), libraries_on_stderr():
        table = run_backends(model, tasks=tasks, seq_len=seq_len, batch_size=batch_size, steps=steps, quick=quick,
                             load_in_4bit=load_in_4bit, sft_questions=sft_questions, out=out, overwrite=overwrite)
    click.echo(table.attrs["table"])
    failed = [f"{row.task}/{row.backend}" for row in table.itertuples() if isinstance(getattr(row, "error", None), str)]
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
def bench_letters_command(model_dir, data_file, sizes, seed, batch_size, backend, dtype, load_in_4bit):
    """Plain, debiased and circular (vote and mean) letter scoring of one model on one labelled file, side by
    side: accuracy, the predicted letters' shares against the gold ones, agreement with the circular mean's
    answers, prompts asked and seconds, as a Markdown table."""
    try:
        chosen = [int(n) for n in sizes.split(",") if n.strip()]
    except ValueError:
        raise UserError(f"--debias takes numbers separated by commas, got {sizes!r}") from None
    with user_errors(), libraries_on_stderr():
        table = bench_letters(model_dir, data_file, debias=chosen, seed=seed, batch_size=batch_size, backend=backend,
                              dtype=dtype, load_in_4bit=load_in_4bit)
    click.echo(table.attrs["about"] + "\n")
    click.echo(table.attrs["table"])


@bench.command("grpo-variants")
@click.option("--out", type=click.Path(file_okay=False), default="runs/bench-grpo-variants", show_default=True,
              help="Folder for the runs (VARIANT-rR), variants.md and variants.json.")
@click.option("--model", default=None,
              help="Policy to start from (default: the smoke recipe trains one first, into OUT/smoke).")
@click.option("--variants", default="grpo,bnpo,dr_grpo,dapo,gspo", show_default=True,
              help="Comma-separated variants (TRL settings each: see mcq_unsloth/benchmarks/grpo_variants.py).")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Rounds; round r trains every variant with train.seed = SEED + r.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--recipe", default="grpo_smoke", show_default=True, help="The GRPO recipe every variant runs.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a setting of every run.")
@click.option("--resume", is_flag=True, help="Keep the runs of OUT that finished and train the rest.")
@click.option("--overwrite", is_flag=True, help="Replace OUT.")
def bench_grpo_variants_command(out, model, variants, rounds, seed, recipe, overrides, resume, overwrite):
    """GRPO's loss variants (loss_type grpo, bnpo, dr_grpo, dapo; GSPO) trained on one recipe and one seed
    schedule, in rounds: final eval_accuracy, the correct reward over the last third, frac_reward_zero_std and
    seconds per step, as a Markdown table."""
    with user_errors(out), libraries_on_stderr():
        try:
            table = bench_grpo_variants(out, model=model, variants=variants, rounds=rounds, seed=seed, recipe=recipe,
                                        overrides=list(overrides), resume=resume, overwrite=overwrite)
        except KeyboardInterrupt:
            again = [a for a in sys.argv[1:] if a != "--overwrite"]
            click.echo(f"\ninterrupted; the finished runs are kept. Finish with:\n  "
                       f"mcq-unsloth {shlex.join(again + ([] if resume else ['--resume']))}", err=True)
            sys.exit(130)
    click.echo(table.attrs["table"], nl=False)


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
def bench_padding_command(model_dir, data_files, count, batch_size, pack_length, rounds, seed, backend, dtype):
    """SFT batches padded, padding-free and packed, side by side: share of padding, seconds a step and real
    (non-pad) tokens per second of a forward and backward pass, and each example's loss against the padded
    batch's (zero when the flattened examples are kept apart), as a Markdown table."""
    with user_errors(), libraries_on_stderr():
        table = bench_padding(model_dir, list(data_files), count=count, batch_size=batch_size, pack_length=pack_length,
                              rounds=rounds, seed=seed, backend=backend, dtype=dtype)
    click.echo(table.attrs["about"] + "\n")
    click.echo(table.attrs["table"], nl=False)


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
def bench_inference_command(model_dir, shape, count, batch_size, max_new_tokens, one_at_a_time, repeat, backend,
                            dtype, load_in_4bit):
    """Questions/s of score mode, batched generation and one-at-a-time generation, as a Markdown table."""
    with user_errors(), libraries_on_stderr():
        table = bench_inference(model_dir, shape=shape, n=count, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                one_at_a_time=one_at_a_time, repeat=repeat, backend=backend, dtype=dtype,
                                load_in_4bit=load_in_4bit)
    click.echo(table.attrs["about"] + "\n")
    click.echo(table.attrs["table"])
