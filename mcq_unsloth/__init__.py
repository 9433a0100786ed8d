"""mcq-unsloth: fine-tune LLMs on multiple-choice questions on one GPU.

Importing the package is cheap and has no side effects: torch, transformers and Unsloth load only when a
model is loaded.
"""

from .api import (Comparison, Model, Run, compare_runs, ensemble, evaluate, export, load, plot_run, predict,
                  show_recipe, smollm2, synth, tiny, train, verify_gguf)
from .benchmarks.backends import bench
from .benchmarks.grpo_variants import bench_grpo_variants
from .benchmarks.letters import bench_letters
from .benchmarks.modes import bench_inference
from .benchmarks.padding import bench_padding
from .data.questions import Question
from .data.sources import load_questions, questions_frame
from .errors import (ConfigError, DataError, ExportError, LaunchError, LlamaCppUnusable, LongQuestions, ModelLoadError,
                     OutOfMemory, OutputError, OutputExists, OutsideRoot, RecipeNotFound, RunExists)
from .extraction import extract_answer

__version__ = "0.1.0"
__all__ = ["Comparison", "Model", "Question", "Run", "bench", "bench_grpo_variants", "bench_inference", "bench_letters",
           "bench_padding", "compare_runs", "ensemble", "evaluate", "export", "extract_answer", "load", "load_questions",
           "plot_run", "predict", "questions_frame", "show_recipe", "smollm2", "synth", "tiny", "train", "verify_gguf",
           "__version__",
           # the typed errors the API raises (mcq_unsloth.errors)
           "ConfigError", "DataError", "ExportError", "LaunchError", "LlamaCppUnusable", "LongQuestions", "ModelLoadError",
           "OutOfMemory", "OutputError", "OutputExists", "OutsideRoot", "RecipeNotFound", "RunExists"]
