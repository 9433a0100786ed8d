"""``mcq-unsloth bench``: Unsloth against transformers + PEFT + bitsandbytes for SFT, GRPO, scoring and generation,
side by side. Each job (a dict from :func:`bench_jobs`: task, backend and the settings both backends share) runs in
a process of its own (:mod:`mcq_unsloth.benchmarks.worker`); the rows, the unsloth/hf ratios and the contest
projections go to bench.json, bench.md and bench.png.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from ..errors import ConfigError
from ..model.tiny_models import SHAPES, build_shaped_model, build_tiny_model
from ..outputs import check_writable, empty_folder, exclusive, write_text
from ..plots import plot_bench
from ..records import git_commit, library_versions


TASKS = ("sft", "grpo", "score", "generate")
BACKENDS = ("unsloth", "hf")
# The contest's runs, for projections: 3 SFT epochs of the 14B, 5,506 GRPO steps of the 7B.
CONTEST = {"sft_epochs": 3, "grpo_steps": 5506, "one_at_a_time_tokens": 48}


def bench(model: str = "tiny", *, tasks=TASKS, seq_len: int = 512, batch_size: int = 4, steps: int | None = None,
          quick: bool = False, load_in_4bit: bool = True, sft_questions: int = 10_000, out: str | Path = "runs/bench",
          overwrite: bool = False):
    """Unsloth against vanilla transformers + PEFT + bitsandbytes, side by side: SFT and GRPO steps, letter scoring
    and generation (``tasks``, a list or a comma-separated string), each backend in a process of its own with the
    same settings. ``model``: ``tiny`` (built now), ``qwen2.5-7b`` or ``qwen2.5-14b`` (the real layers and
    vocabulary, random weights, built on a CUDA GPU), or a model folder. ``steps`` timed steps (or inference rounds)
    after the warm-up, default 10 (3 with ``quick``: fewer steps, shorter GRPO replies, fewer questions). Writes
    bench.json, bench.md (with the contest's runs projected at the rates measured, ``sft_questions`` questions for
    its 3 SFT epochs) and bench.png into ``out``, which is replaced only with ``overwrite``.

    Returns the rows as a ``pandas.DataFrame`` (a failed job's row has an ``error``); ``attrs``: ``ratios``,
    ``projections``, ``env`` (as bench.json holds them) and ``table`` (bench.md's text).

    >>> table = mu.bench(tasks="score,generate", quick=True, out="runs/bench-cpu")     # doctest: +SKIP
    """
    import pandas as pd
    import torch

    chosen = tuple(t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip())
    if unknown := [t for t in chosen if t not in TASKS]:
        raise ConfigError([f"tasks: unknown {', '.join(unknown)}; choose among {', '.join(TASKS)}"])
    if model in SHAPES and not torch.cuda.is_available():
        raise ConfigError([f"model={model} builds and trains a real-sized model, which needs a CUDA GPU; without "
                           f"one, use model=tiny"])
    command = ["mcq-unsloth", "bench", "--model", model, "--tasks", ",".join(chosen), "--seq-len", str(seq_len),
               "--batch-size", str(batch_size), *(["--steps", str(steps)] if steps else []), *(["--quick"] * quick),
               "--4bit" if load_in_4bit else "--no-4bit", "--sft-questions", str(sft_questions), "--out", str(out)]
    check_writable(out, folder=True)
    with exclusive(out):
        empty_folder(out, overwrite)
        result = run_bench(model, out, chosen, seq_len, batch_size, steps, quick, load_in_4bit, sft_questions,
                           command=shlex.join(command))
    frame = pd.DataFrame(result["rows"])
    frame.attrs.update({key: result[key] for key in ("ratios", "projections", "env")},
                       table=bench_markdown(result))
    return frame



def bench_jobs(model: str, tasks: tuple[str, ...], seq_len: int, batch_size: int, steps: int, quick: bool,
               load_in_4bit: bool) -> list[dict]:
    """One job per task, backend and variant (generation: batched, and one at a time as the contest did), each
    with the same data, lengths, batch, LoRA, 4-bit and checkpointing settings for both backends."""
    common = {"model": model, "seq_len": seq_len, "batch_size": batch_size, "steps": steps,
              "warmup": 1 if quick else 3, "load_in_4bit": load_in_4bit, "gradient_checkpointing": True,
              "num_generations": 4 if quick else 8, "completion_length": 16 if quick else 64,
              "questions": 32 if quick else 256, "max_new_tokens": 8, "inference_batch": 16}
    jobs = []
    for task in tasks:
        variants = [{}]
        if task == "generate":
            variants.append({"one_at_a_time": True, "max_new_tokens": CONTEST["one_at_a_time_tokens"],
                             "questions": 4 if quick else 32})
        jobs += [{**common, **variant, "task": task, "backend": backend} for variant in variants for backend in BACKENDS]
    return jobs


def run_job(job: dict) -> dict:
    """Run one job in a fresh Python process (see :mod:`mcq_unsloth.benchmarks.worker`); a failure becomes a row
    that says why."""
    done = subprocess.run([sys.executable, "-m", "mcq_unsloth.benchmarks.worker", json.dumps(job)], capture_output=True,
                          text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return json.loads(lines[-1])
    error = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"task": job["task"], "backend": job["backend"], "error": error[:500]}


def ratios(rows: list[dict]) -> list[dict]:
    """unsloth / hf for each task and variant both backends ran: speed (samples/s) and peak memory."""
    by_key = {(r["task"], r.get("variant"), r["backend"]): r for r in rows if "error" not in r}
    found = []
    for (task, variant, backend), unsloth in by_key.items():
        hf = by_key.get((task, variant, "hf"))
        if backend == "unsloth" and hf is not None:
            found.append({"task": task, "variant": variant,
                          "speed": round(unsloth["samples_per_s"] / hf["samples_per_s"], 2),
                          "memory": round(unsloth["peak_mem_mb"] / max(hf["peak_mem_mb"], 1), 2)})
    return found


def projections(rows: list[dict], sft_questions: int) -> list[dict]:
    """The contest's runs at the measured rates: 3 SFT epochs of ``sft_questions`` questions, 5,506 GRPO steps."""
    found = []
    for row in rows:
        if "error" in row:
            continue
        if row["task"] == "sft":
            hours = CONTEST["sft_epochs"] * sft_questions / row["samples_per_s"] / 3600
            found.append({"run": f"SFT, {CONTEST['sft_epochs']} epochs of {sft_questions} questions",
                          "backend": row["backend"], "hours": round(hours, 2)})
        if row["task"] == "grpo":
            found.append({"run": f"GRPO, {CONTEST['grpo_steps']} steps", "backend": row["backend"],
                          "hours": round(CONTEST["grpo_steps"] * row["median_step_s"] / 3600, 2)})
    return found


def bench_markdown(result: dict) -> str:
    """bench.md: what ran where, the rows, the ratios and the projections."""
    env = result["env"]
    lines = [f"# mcq-unsloth bench: {env['model']}", "",
             f"`{env['command']}` on {env['device']}; torch {env['versions'].get('torch')}, transformers "
             f"{env['versions'].get('transformers')}, trl {env['versions'].get('trl')}, peft "
             f"{env['versions'].get('peft')}, unsloth {env['versions'].get('unsloth')}; commit {env['git_commit']}.",
             "", "| task | variant | backend | Unsloth imported | samples/s | tokens/s | step s (median, min-max) | "
             "peak memory MB | steps |", "| --- " * 9 + "|"]
    for row in result["rows"]:
        if "error" in row:
            lines.append(f"| {row['task']} | | {row['backend']} | | failed: {row['error']} | | | | |")
            continue
        lines.append(f"| {row['task']} | {row.get('variant', '')} | {row['backend']} | "
                     f"{'yes' if row['unsloth_imported'] else 'no'} | {row['samples_per_s']} | {row['tokens_per_s']} | "
                     f"{row['median_step_s']} ({row['min_step_s']}-{row['max_step_s']}) | {row['peak_mem_mb']} | "
                     f"{row['steps']} |")
    notes = sorted({row["note"] for row in result["rows"] if "note" in row})
    lines += [""] + [f"- hf rows: {note}." for note in notes]
    lines += ["", "| task | variant | unsloth/hf speed | unsloth/hf peak memory |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['task']} | {r['variant'] or ''} | {r['speed']}x | {r['memory']}x |" for r in result["ratios"]]
    lines += ["", f"Projected wall time of the contest's runs at these rates (model: {env['model']}; a projection "
              "only when it is the model the contest ran):", "", "| run | backend | hours |", "| --- | --- | --- |"]
    lines += [f"| {p['run']} | {p['backend']} | {p['hours']} |" for p in result["projections"]]
    return "\n".join(lines) + "\n"


def run_bench(model: str, out, tasks: tuple[str, ...] = TASKS, seq_len: int = 512, batch_size: int = 4,
              steps: int | None = None, quick: bool = False, load_in_4bit: bool = True,
              sft_questions: int = 10_000, command: str = "") -> dict:
    """Benchmark ``model`` (``tiny``, a preset of :data:`mcq_unsloth.model.tiny_models.SHAPES` or a folder) for ``tasks`` on
    both backends, each job in its own process; write bench.json, bench.md and bench.png into ``out``."""
    import torch
    from tqdm.auto import tqdm

    out = Path(out)
    if model == "tiny":
        model_dir = str(build_tiny_model(out / "model"))
    elif model in SHAPES:
        model_dir = str(build_shaped_model(out / "model", model, real_vocabulary=True))
    else:
        model_dir = model
    jobs = bench_jobs(model_dir, tasks, seq_len, batch_size, steps or (3 if quick else 10), quick, load_in_4bit)
    rows = [run_job(job) for job in tqdm(jobs, desc="bench", unit="job")]
    cuda = torch.cuda.is_available()
    result = {"rows": rows, "ratios": ratios(rows), "projections": projections(rows, sft_questions),
              "env": {"model": model, "device": torch.cuda.get_device_name() if cuda else "CPU",
                      "versions": library_versions(), "git_commit": git_commit(), "command": command,
                      "settings": {"seq_len": seq_len, "batch_size": batch_size, "quick": quick,
                                   "load_in_4bit": load_in_4bit, "gradient_checkpointing": True, "lora_r": 16,
                                   "sft_questions": sft_questions}}}
    write_text(out / "bench.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    write_text(out / "bench.md", bench_markdown(result))
    plot_bench(rows, out / "bench.png", title=f"{model}: unsloth vs hf")
    return result
