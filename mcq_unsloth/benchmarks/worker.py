"""One benchmark measurement in a process of its own: ``python -m mcq_unsloth.benchmarks.worker JOB``, where JOB is
the JSON of one job of :func:`mcq_unsloth.benchmarks.runner.bench_jobs` (task, backend, model and the shared
settings). Prints one JSON row as its last line.

A process per task and backend, because Unsloth patches transformers, PEFT and TRL when imported: the ``hf``
rows run in a process where Unsloth is imported only where the vanilla path cannot run without it (training on
a CPU, whose loss needs Unsloth's CPU kernels), and every row says whether it was. Warm-up steps are run and
not counted; the steps after them are timed one by one (the GPU synchronised at each end) and reported as
their median and spread. Peak memory is the process's own: CUDA's peak allocated and reserved, or the peak
resident set on a CPU.
"""

from __future__ import annotations

import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time

from ..data.synthetic import synth_questions
from ..inference.scoring import generate_answers, prompt_token_ids, score_questions
from ..model.backends import load_model, resolve_backend
from ..model.lora import LoraArgs
from ..model.precision import mixed_precision
from ..rewards import REWARDS
from ..training.grpo import prompt_dataset

TRAINING = ("sft", "grpo")


def main(argv: list[str]) -> None:
    job = json.loads(argv[0])
    backend = resolve_backend(job["backend"], training=job["task"] in TRAINING)  # Unsloth first, when used
    import torch

    row = MEASURES[job["task"]](job, backend)
    cuda = torch.cuda.is_available()
    unsloth = "unsloth" in sys.modules
    row.update({
        "backend": job["backend"], "pid": os.getpid(), "unsloth_imported": unsloth,
        "device": torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)",
        **_peak_memory(cuda),
    })
    if unsloth and job["backend"] == "hf":
        row["note"] = "Unsloth imported for its CPU loss kernels (TRL's are GPU-only); the model is loaded the vanilla way"
    print(json.dumps(row))


def measure_sft(job: dict, backend: str) -> dict:
    """SFT steps on sequences of exactly ``seq_len`` tokens, LoRA on the seven projections."""
    from trl import SFTConfig, SFTTrainer

    loaded = _training_model(job, backend)
    data = _token_rows(loaded.tokenizer, job["seq_len"], job["batch_size"] * (job["warmup"] + job["steps"]))
    timer = _step_timer()
    with tempfile.TemporaryDirectory() as scratch:
        trainer = SFTTrainer(model=loaded.model, processing_class=loaded.tokenizer, train_dataset=data,
                             callbacks=[timer], args=SFTConfig(
                                 output_dir=scratch, max_length=job["seq_len"], packing=False,
                                 **_trainer_settings(job)))
        trainer.train()
    return _rates(job, "sft", timer.seconds[job["warmup"]:], job["batch_size"], job["batch_size"] * job["seq_len"])


def measure_grpo(job: dict, backend: str) -> dict:
    """GRPO steps: one group of ``num_generations`` sampled replies per step, scored by the answer rewards."""
    from trl import GRPOConfig, GRPOTrainer

    loaded = _training_model(job, backend)
    generations = job["num_generations"]
    timer = _step_timer()
    with tempfile.TemporaryDirectory() as scratch:
        trainer = GRPOTrainer(
            model=loaded.model, processing_class=loaded.tokenizer, callbacks=[timer],
            reward_funcs=[REWARDS["correct"], REWARDS["format"]],
            train_dataset=prompt_dataset(synth_questions(job["warmup"] + job["steps"], seed=3)),
            args=GRPOConfig(output_dir=scratch, num_generations=generations,
                            max_completion_length=job["completion_length"], **_trainer_settings(job, generations)))
        trainer.train()
        lengths = [row["completions/mean_length"] for row in trainer.state.log_history
                   if "completions/mean_length" in row][job["warmup"]:]
    tokens = generations * (statistics.mean(lengths) if lengths else job["completion_length"])
    return _rates(job, "grpo", timer.seconds[job["warmup"]:], generations, tokens)


def measure_inference(job: dict, backend: str) -> dict:
    """Letter scoring (``score``) or batched generation (``generate``) of synthetic questions; ``one_at_a_time``
    asks them one by one with ``max_new_tokens``, as the contest scripts did."""
    loaded = load_model(job["model"], backend=backend, dtype="auto", load_in_4bit=job["load_in_4bit"],
                        max_seq_length=job["seq_len"])
    questions = synth_questions(job["questions"], seed=11)
    batch = 1 if job.get("one_at_a_time") else job["inference_batch"]
    if job["task"] == "score":
        answer = lambda qs: score_questions(loaded.model, loaded.tokenizer, qs, batch_size=batch)  # noqa: E731
    else:
        answer = lambda qs: generate_answers(loaded.model, loaded.tokenizer, qs, batch_size=batch,  # noqa: E731
                                             max_new_tokens=job["max_new_tokens"])
    answer(questions[:batch])  # warm-up: kernels, caches
    seconds = []
    for _ in range(job["steps"]):
        start = _now()
        answer(questions)
        seconds.append(_now() - start)
    tokens = sum(map(len, prompt_token_ids(loaded.tokenizer, questions)))
    if job["task"] == "generate":
        tokens += len(questions) * job["max_new_tokens"]
    variant = (f"one at a time, {job['max_new_tokens']} new tokens (the contest's loop)" if job.get("one_at_a_time")
               else f"batch {batch}" + (f", {job['max_new_tokens']} new tokens" if job["task"] == "generate" else ""))
    return {**_rates(job, job["task"], seconds, len(questions), tokens), "variant": variant}


MEASURES = {"sft": measure_sft, "grpo": measure_grpo, "score": measure_inference, "generate": measure_inference}


# --- helpers ------------------------------------------------------------------------------------------

def _training_model(job: dict, backend: str):
    return load_model(job["model"], backend=backend, dtype="auto", load_in_4bit=job["load_in_4bit"],
                      max_seq_length=job["seq_len"], lora=LoraArgs(r=16, lora_alpha=32, lora_dropout=0.0),
                      seed=3407, gradient_checkpointing=job["gradient_checkpointing"])


def _trainer_settings(job: dict, batch: int | None = None) -> dict:
    return {"max_steps": job["warmup"] + job["steps"], "per_device_train_batch_size": batch or job["batch_size"],
            "gradient_accumulation_steps": 1, "learning_rate": 2e-4, "logging_steps": 1, "save_strategy": "no",
            "report_to": [], "dataloader_num_workers": 0, "gradient_checkpointing": False, "seed": 3407,
            **mixed_precision("auto")}


def _token_rows(tokenizer, length: int, count: int):
    """``count`` rows of exactly ``length`` token ids drawn (seeded) from the tokenizer's ordinary tokens: the
    same data, and the same work, for both backends."""
    from datasets import Dataset

    special = set(tokenizer.all_special_ids)
    ordinary = [i for i in range(len(tokenizer)) if i not in special]
    draw = random.Random(0)
    return Dataset.from_list([{"input_ids": [draw.choice(ordinary) for _ in range(length)]} for _ in range(count)])


def _step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Each optimizer step's wall time, the GPU's queued work included."""

        def __init__(self):
            self.seconds, self.started = [], None

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = _now()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(_now() - self.started)

    return StepTimer()


def _now() -> float:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def _rates(job: dict, task: str, seconds: list[float], samples: float, tokens: float) -> dict:
    """Per-step (or per-round) times as rates: the median, and the spread as the slowest and fastest."""
    median = statistics.median(seconds)
    return {"task": task, "steps": len(seconds), "seconds": round(sum(seconds), 3),
            "median_step_s": round(median, 4), "min_step_s": round(min(seconds), 4),
            "max_step_s": round(max(seconds), 4), "samples_per_s": round(samples / median, 2),
            "tokens_per_s": round(tokens / median, 1), "seq_len": job["seq_len"], "load_in_4bit": job["load_in_4bit"]}


def _peak_memory(cuda: bool) -> dict:
    import torch

    if cuda:
        return {"peak_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20),
                "peak_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20)}
    return {"peak_mem_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}  # Linux: KiB


if __name__ == "__main__":
    main(sys.argv[1:])
