"""``mcq-unsloth demo``: the main job on the embedded default, on any CPU, with no download.

Builds the tiny model, scores it on held-out questions (synthetic ones of the smoke recipe's kinds, and the
shipped Chinese set), and writes ``metrics.json`` into the run folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .config import ModelConfig, load_config
from .data import load_questions
from .models import load_model, resolve_backend
from .recipes import find_recipe
from .resources import shipped_file
from .runs import prepare_run_dir
from .synth import synth_questions

HELD_OUT_SEED = 2026  # never a training seed in the shipped recipes


def run_demo(out: Path, overwrite: bool = False) -> dict:
    """Run the demo into ``out``; returns the summary that the CLI prints as its last line."""
    start = time.perf_counter()
    config = load_config(find_recipe("smoke"))
    backend = resolve_backend(config.model.backend)  # before transformers: Unsloth patches it on import
    from .inference import accuracy, score_questions
    from .tiny import build_tiny_model

    run_dir = prepare_run_dir(out, overwrite=overwrite)
    base = build_tiny_model(run_dir / "tiny-base", config.model.name.removeprefix("tiny:"))
    loaded = load_model(ModelConfig(name=str(base), backend=backend, max_seq_length=config.model.max_seq_length),
                        lora=None, backend=backend)
    held_out = {"synthetic": synth_questions(200, HELD_OUT_SEED), "shipped": load_questions(shipped_file("mcq_zh.csv"))}
    scores = {}
    for name, questions in held_out.items():
        scored = score_questions(loaded.model, loaded.tokenizer, questions, config.prompt)
        scores[name] = round(accuracy(questions, [s.prediction for s in scored]), 4)
    summary = {
        "accuracy_before": scores["synthetic"],
        "accuracy_shipped": scores["shipped"],
        "backend": backend,
        "seconds": round(time.perf_counter() - start, 1),
        "run_dir": str(run_dir),
    }
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
