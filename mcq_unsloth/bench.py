"""Benchmarks that print figures (never timed tests): ``mcq-unsloth bench inference``.

Inference speed of the two modes on the same questions and model: ``score`` (one forward pass per batch),
batched ``generate`` and one-at-a-time ``generate`` (how the contest scripts answered).
"""

from __future__ import annotations

import time

from .data import Question


def inference_speed(model, tokenizer, questions: list[Question], batch_size: int, max_new_tokens: int,
                    one_at_a_time: int, repeat: int = 3) -> list[dict]:
    """Questions per second for each way of answering, the median of ``repeat`` rounds; the one-at-a-time run
    uses the first ``one_at_a_time`` questions (it is the slow one)."""
    import statistics

    import torch

    from .inference import generate_answers, score_questions

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
