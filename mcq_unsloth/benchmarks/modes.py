"""``mcq-unsloth bench inference``: the answering modes on one loaded model and the same questions, side by side:
``score`` (one forward pass per batch), batched ``generate`` and one-at-a-time ``generate`` (how the contest
scripts answered)."""

from __future__ import annotations

import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from ..data.questions import Question
from ..data.synthetic import synth_questions
from ..errors import ConfigError
from ..inference.loading import load
from ..inference.scoring import generate_answers, prompt_token_ids, score_questions
from ..model.backends import resolve_backend
from ..model.tiny_models import build_shaped_model, build_tiny_model

log = logging.getLogger(__name__)


def bench_inference(model: str | None = None, *, shape: str | None = None, n: int = 256, batch_size: int = 16,
                    max_new_tokens: int = 8, one_at_a_time: int = 64, repeat: int = 3, backend: str = "auto",
                    dtype: str = "auto", load_in_4bit: bool | None = None):
    """Questions per second of score mode, batched generation and one-at-a-time generation of one model on ``n``
    synthetic questions, the medians of ``repeat`` rounds, as a ``pandas.DataFrame`` (one row a mode; with a GPU,
    its peak memory); ``attrs``: ``about`` (the model, backend, precision and device, as one line) and ``table``
    (the Markdown table ``mcq-unsloth bench inference`` prints). ``model``: a folder or Hub id (default: a tiny
    model built now), or ``shape`` instead: a random model with a real model's layers, built on a CUDA GPU.

    >>> mu.bench_inference(n=64, repeat=1).attrs["table"]                     # doctest: +SKIP
    """
    import pandas as pd
    import torch

    if model and shape:
        raise ConfigError(["give model= or shape=, not both"])
    cuda = torch.cuda.is_available()
    if shape and not cuda:
        raise ConfigError([f"shape={shape} builds and runs a real-sized model, which needs a CUDA GPU; without one, "
                           f"leave shape out to benchmark the tiny model"])
    chosen = resolve_backend(backend)  # before the tiny model is built: Unsloth must precede transformers
    name = f"random {shape}-shaped model" if shape else f"model {model}" if model else "tiny model"
    with tempfile.TemporaryDirectory() as scratch:
        if shape:
            log.info(f"building a random {shape}-shaped model ...")
            model = str(build_shaped_model(Path(scratch) / shape, shape))
        elif model is None:
            model = str(build_tiny_model(Path(scratch) / "tiny"))
        loaded = load(model, backend=chosen, dtype=dtype, load_in_4bit=load_in_4bit)
        questions = synth_questions(n, seed=11)
        rows = inference_speed(loaded.model, loaded.tokenizer, questions, batch_size, max_new_tokens, one_at_a_time,
                               repeat)
        tokens = sum(map(len, prompt_token_ids(loaded.tokenizer, questions))) / len(questions)
    device = f"CUDA {torch.cuda.get_device_name()}" if cuda else f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    frame = pd.DataFrame(rows)
    frame.attrs.update(about=f"{name}, backend {chosen}, precision {loaded.precision}, batch {batch_size}, prompts of "
                             f"{tokens:.0f} tokens on average, {device}", table=format_table(rows))
    return frame


def inference_speed(model, tokenizer, questions: list[Question], batch_size: int, max_new_tokens: int,
                    one_at_a_time: int, repeat: int = 3) -> list[dict]:
    """Questions per second for each way of answering, the median of ``repeat`` rounds; the one-at-a-time run
    uses the first ``one_at_a_time`` questions (it is the slow one)."""
    import torch

    runs = [
        ("score", questions, lambda qs: score_questions(model, tokenizer, qs, batch_size=batch_size)),
        (f"generate {max_new_tokens} tokens, batched", questions,
         lambda qs: generate_answers(model, tokenizer, qs, batch_size=batch_size, max_new_tokens=max_new_tokens)),
        (f"generate {max_new_tokens} tokens, one at a time", questions[:one_at_a_time],
         lambda qs: generate_answers(model, tokenizer, qs, batch_size=1, max_new_tokens=max_new_tokens)),
    ]
    for _, asked, answer in runs[:2]:  # warm-up: first calls build caches and kernels
        answer(asked[:batch_size])
    cuda = torch.cuda.is_available()
    # Rounds run every mode once, so a slow spell of a shared machine slows all modes alike.
    timings: list[list[float]] = [[] for _ in runs]
    peaks = [0.0 for _ in runs]
    for _ in range(repeat):
        for i, (_, asked, answer) in enumerate(runs):
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            answer(asked)
            timings[i].append(time.perf_counter() - start)
            if cuda:
                peaks[i] = max(peaks[i], torch.cuda.max_memory_allocated() / 2**30)
    rows = []
    for (name, asked, _), seconds, peak in zip(runs, map(statistics.median, timings), peaks):
        rows.append({"mode": name, "questions": len(asked), "seconds": round(seconds, 3),
                     "questions_per_second": round(len(asked) / seconds, 1)})
        if cuda:
            rows[-1]["peak_gib"] = round(peak, 2)
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table of the rows, with each mode's speed relative to batched generation (the second row)
    and to one-at-a-time generation (the last), and peak GPU memory where it was measured."""
    batched, alone = rows[1]["questions_per_second"], rows[-1]["questions_per_second"]
    memory = all("peak_gib" in row for row in rows)
    lines = ["| mode | questions | seconds (median) | questions/s | vs generate batched | vs one at a time |"
             + (" peak GPU memory (GiB) |" if memory else ""),
             "| --- " * (7 if memory else 6) + "|"]
    for row in rows:
        speed = row["questions_per_second"]
        lines.append(f"| {row['mode']} | {row['questions']} | {row['seconds']} | {speed} | {speed / batched:.1f}x | "
                     f"{speed / alone:.1f}x |" + (f" {row['peak_gib']} |" if memory else ""))
    return "\n".join(lines)
