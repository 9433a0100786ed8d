"""``mcq-unsloth demo``: the main job on the embedded default, on any CPU, with no download.

Builds the tiny model, measures its accuracy on held-out synthetic questions, fine-tunes it with the
``smoke`` recipe, and measures again from the saved adapter. Then exports it as users deploy it (merged, then a
q8_0 GGUF file) and measures how often llama.cpp picks the same letter as transformers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .config import Config, load_config
from .convert.run import run_export
from .convert.verify import verify_gguf
from .data.questions import Question
from .data.synthetic import synth_questions
from .inference.llamacpp import llama_cpp
from .inference.scoring import accuracy, score_questions
from .model.backends import load_model, model_source, resolve_backend
from .outputs import empty_folder, write_text
from .training.folders import record_run
from .training.recipes import find_recipe
from .training.sft import train_sft
from .training.trainer_settings import resolved_yaml

HELD_OUT_SEED = 2026  # not the seed of any shipped recipe's data


def run_demo(out: Path, overwrite: bool = False) -> dict:
    """Run the demo into ``out``; returns the summary that the CLI prints as its last line."""
    start = time.perf_counter()
    recipe = find_recipe("smoke")
    config = load_config(recipe)
    backend = resolve_backend(config.model.backend, training=True)  # Unsloth before transformers

    llama_cpp("the demo's GGUF step")  # installed and able to run on this CPU, checked before training

    run_dir = empty_folder(out, overwrite, fix="pass overwrite=True to replace it, or out= for another folder")
    record_run(run_dir, config, resolved_yaml(config, run_dir, header=f"# resolved from recipe {recipe}"), str(recipe))
    held_out = synth_questions(200, HELD_OUT_SEED, held_out=True)
    before = _accuracy(model_source(config.model.name, run_dir), config, backend, held_out)
    trained = train_sft(config, run_dir)
    after = _accuracy(trained["adapter"], config, backend, held_out)
    gguf = _gguf_agreement(run_dir, held_out)
    summary = {"accuracy_before": before, "accuracy_after": after, "gguf_agreement": gguf["agreement"],
               "seconds": round(time.perf_counter() - start, 1), "run_dir": str(run_dir)}
    write_text(run_dir / "metrics.json", json.dumps({**summary, "backend": backend, "held_out_questions": 200,
                                                     "train": trained, "gguf": gguf}, indent=2) + "\n")
    return summary


def _gguf_agreement(run_dir: Path, questions: list[Question]) -> dict:
    """Export the trained model as it would be deployed (merged, then a q8_0 GGUF file) and compare llama.cpp's
    answers to the held-out questions with the merged model's in transformers."""
    merged = run_export(str(run_dir), "merged", run_dir / "merged", dtype="float32", progress=False)["out"]
    exported = run_export(merged, "gguf", run_dir / "gguf", quants=("q8_0",), progress=False)
    return verify_gguf(exported["gguf"][0]["file"], merged, questions, progress=False)


def _accuracy(path: str, config: Config, backend: str, questions: list[Question]) -> float:
    """Letter-scoring accuracy of the model (or adapter) at ``path``."""
    loaded = load_model(path, backend=backend, dtype=config.model.dtype, load_in_4bit=config.model.load_in_4bit,
                        max_seq_length=config.model.max_seq_length)
    scored = score_questions(loaded.model, loaded.tokenizer, questions, config.prompt)
    return accuracy(questions, [s.prediction for s in scored])
