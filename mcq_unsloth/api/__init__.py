"""The Python API: what a notebook calls, and what the command line calls under its options.

Load a model once with :func:`load`, then :func:`predict` and :func:`evaluate` as many question sets as needed;
questions come from anything :func:`~mcq_unsloth.data.sources.load_questions` reads (a DataFrame above all),
answers go back as DataFrames. With ``out=`` (``out_dir=`` for an evaluation) the same files the CLI writes are
written, with the same resume, lock and whole-file guarantees. Errors are the typed ones of
:mod:`mcq_unsloth.errors`; nothing here prints or exits.
"""

from ..inference.loading import Model, load
from .answers import ensemble, evaluate, predict
from .artifacts import Exported, export, smollm2, synth, tiny, verify_gguf
from .runs import Comparison, Run, compare_runs, plot_run, show_recipe, train

__all__ = ["Comparison", "Exported", "Model", "Run", "compare_runs", "ensemble", "evaluate", "export", "load", "plot_run", "predict", "show_recipe",
           "smollm2", "synth", "tiny", "train", "verify_gguf"]
