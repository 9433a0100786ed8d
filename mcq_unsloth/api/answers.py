"""Answering from Python: :func:`predict`, :func:`evaluate` and :func:`ensemble`, each in memory, into the files
the command line writes (``out=``, ``out_dir=``), as one process of a launch someone else started, or starting
one (``num_processes=``)."""

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

from .. import processes
from ..cards import add_evaluation, check_card
from ..data.sources import load_questions, load_share
from ..errors import ConfigError, DataError, OutputError, OutputExists
from ..inference.answering import Answers, PredictSettings, answers_frame, estimate_prior, evaluation
from ..inference.combine import ensemble as combine
from ..inference.files import EVAL_FILES, answered, evaluate_file, predict_file, read_predictions, records_of
from ..inference.loading import Model, Plan, load_planned, plan
from ..inference.shards import evaluate_shards, predict_shards
from ..outputs import check_writable, exclusive, same_file, write_text

MODES = ("score", "generate")
ON_LONG = ("shorten", "error")


def predict(model, data, *, mode: str = "score", batch_size: int | None = None, circular: bool = False,
            combine: str = "mean", top_k: int | None = None, debias: int | None = None, debias_seed: int = 0,
            max_new_tokens: int = 8, out: str | Path | None = None,
            raw: str | Path | None = None, resume: bool = False, overwrite: bool = False, on_long: str = "shorten", id_column: str = "id",
            answer_column: str = "answer", prompt=None, backend: str = "auto", dtype: str = "auto",
            load_in_4bit: bool | None = None, base: str | None = None, progress: bool = True,
            num_processes: int | None = None, accelerate_config: str | Path | None = None, answers: bool = True):
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
    answers come back through ``out`` and ``raw`` (without ``raw``, the frame holds the letters alone). With ``out``,
    ``answers=False`` returns the counts alone (a frame without rows, its ``attrs``): what the command line asks,
    which prints them, so that a launch's million answers are not read back into one process. Called
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
    loading = _Loading(prompt, backend, dtype, load_in_4bit, base)
    out = Path(out) if out is not None else None
    if num_processes is not None or accelerate_config is not None:
        return _predict_launched(model, data, settings, out, resume, overwrite, loading, num_processes or 1,
                                 accelerate_config, answers)
    _data_parallel_only()
    if out is None:
        return _predict_in_memory(model, load_questions(data), settings, loading, progress)
    _check_outputs(data, out, settings.raw, resume, overwrite)  # nothing is read or loaded for a file not writable
    if processes.count() > 1:  # a process of a launch: its share of data, read alone
        frame = _predict_share(model, data, out, settings, loading, resume, overwrite, progress)
    else:
        frame = _predict_file(model, load_questions(data), out, settings, loading, resume, progress)
    return frame if answers else _counts_only(frame)


def evaluate(model, data, *, mode: str = "score", batch_size: int | None = None, circular: bool = False,
             combine: str = "mean", top_k: int | None = None, debias: int | None = None, debias_seed: int = 0,
             max_new_tokens: int = 8, out_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
             on_long: str = "shorten", prompt=None, backend: str = "auto", dtype: str = "auto",
             load_in_4bit: bool | None = None, base: str | None = None, progress: bool = True,
             card: bool = False, num_processes: int | None = None,
             accelerate_config: str | Path | None = None, answers: bool = True) -> dict:
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
    ``answers=False`` (with ``out_dir``) leaves ``predictions`` None.

    >>> report = mu.evaluate(model, "shipped:mcq_zh.csv")          # doctest: +SKIP
    >>> report["accuracy"], report["predictions"].head()            # doctest: +SKIP
    """
    settings = _settings(mode, batch_size, max_new_tokens, circular, on_long, "id", "answer",
                         Path(out_dir) / "predictions.jsonl" if out_dir is not None else None, combine, top_k,
                         debias, debias_seed)
    loading = _Loading(prompt, backend, dtype, load_in_4bit, base)
    if num_processes is not None or accelerate_config is not None:
        return _evaluate_launched(model, data, settings, out_dir, resume, overwrite, card, loading, num_processes or 1,
                                  accelerate_config, answers)
    _data_parallel_only()
    if out_dir is None:
        return _evaluate_in_memory(model, data, _labelled(data), settings, loading, card, progress)
    out_dir = Path(out_dir)  # the outputs first: nothing is read or loaded for a folder that cannot be written
    _refuse_overwriting_input(data, [out_dir / name for name in EVAL_FILES])
    _refuse_existing(out_dir / "predictions.csv", resume, overwrite)
    check_writable(out_dir, folder=True)
    if processes.count() > 1:  # a process of a launch: its share of data, read alone
        result = _evaluate_share(model, data, out_dir, settings, loading, card, resume, overwrite, progress)
    else:
        result = _evaluate_folder(model, data, _labelled(data), out_dir, settings, loading, card, resume, progress)
    return result if answers else {**result, "predictions": None}


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


@dataclass(frozen=True)
class _Loading:
    """How :func:`predict` and :func:`evaluate` load a model they are given by name."""
    prompt: object
    backend: str
    dtype: str
    load_in_4bit: bool | None
    base: str | None


def _predict_launched(model, data, settings: PredictSettings, out: Path | None, resume: bool, overwrite: bool,
                      loading: _Loading, num_processes: int, accelerate_config, answers: bool):
    """:func:`predict` in ``num_processes`` processes started by accelerate's launcher; the answers are the files
    they wrote, the counts the line the main process printed."""
    _check_launchable(model, data, loading, out, "out")
    args = ["predict", *_answering_args(model, data, settings, resume, overwrite, loading), "--out", str(out),
            "--id-column", settings.id_column, "--answer-column", settings.answer_column,
            *(["--raw", str(settings.raw)] if settings.raw else [])]
    counts = processes.launch(args, num_processes, accelerate_config)
    if not answers:
        return _counts_only(answers_frame([], {}, settings), counts)
    questions, letters, kept = load_questions(data), read_predictions(out, settings), records_of(settings.raw)
    frame = answers_frame(questions, {q.id: kept.get(q.id, {"id": q.id, "prediction": letters.get(q.id)})
                                      for q in questions}, settings)
    frame.attrs.update(counts)
    return frame


def _evaluate_launched(model, data, settings: PredictSettings, out_dir: Path | None, resume: bool, overwrite: bool,
                       card: bool, loading: _Loading, num_processes: int, accelerate_config, answers: bool) -> dict:
    """:func:`evaluate` in ``num_processes`` processes started by accelerate's launcher; the metrics are the
    metrics.json the main process wrote."""
    _check_launchable(model, data, loading, out_dir, "out_dir")
    out_dir = Path(out_dir)
    args = ["eval", *_answering_args(model, data, settings, resume, overwrite, loading), "--out-dir", str(out_dir),
            *(["--card"] if card else [])]
    processes.launch(args, num_processes, accelerate_config)
    result = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
    if not answers:
        return {**result, "predictions": None}
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
            *(["--debias", str(settings.debias), "--debias-seed", str(settings.debias_seed)]
              if settings.debias else []),
            "--on-long", settings.on_long, *(["--resume"] if resume else []), *(["--overwrite"] if overwrite else []),
            "--backend", loading.backend, "--dtype", loading.dtype,
            *([] if loading.load_in_4bit is None else ["--4bit" if loading.load_in_4bit else "--no-4bit"]),
            *(["--prompt", loading.prompt] if loading.prompt else []),
            *(["--base", str(loading.base)] if loading.base else [])]


# --- the ways of answering: in memory, into a file, a share of a launch, a launch ----------------------------

def _predict_in_memory(model, questions, settings: PredictSettings, loading: _Loading, progress: bool):
    decided, settings = _decided(model, loading, settings)
    loaded = _loaded(model, decided, loading.backend)
    records, counts = _answer_all(loaded, questions, settings, progress)
    frame = answers_frame(questions, records, settings)
    frame.attrs.update({**counts, "precision": str(decided.precision)})
    return frame


def _predict_file(model, questions, out: Path, settings: PredictSettings, loading: _Loading, resume: bool,
                  progress: bool):
    decided, settings = _decided(model, loading, settings)
    with contextlib.ExitStack() as held:
        earlier = _take_output(held, out, out, settings, lambda: questions, resume)
        loaded = _loaded(model, decided, loading.backend)
        collected: list = []
        counts = predict_file(loaded.engine, questions, out, settings, decided.prompt, resume, progress, collected)
    records = {record["id"]: record for _, record in collected}
    if earlier:  # the answers a resumed file held: their raw records when they were kept, else the letters
        letters, kept = read_predictions(out, settings), records_of(settings.raw)
        records = {**{i: kept.get(i, {"id": i, "prediction": letters.get(i)}) for i in earlier}, **records}
    frame = answers_frame(questions, records, settings)
    frame.attrs.update({"out": str(out), **counts, "precision": str(decided.precision)})
    return frame


def _predict_share(model, data, out: Path, settings: PredictSettings, loading: _Loading, resume: bool,
                   overwrite: bool, progress: bool):
    """In a launch: the main process alone locks and reads the output (a file of another run stops every one),
    each process answers its share into part files merged into ``out``, and returns its own answers alone."""
    decided, settings = _decided(model, loading, settings)
    with contextlib.ExitStack() as held:
        earlier = processes.main_first(_take_output, held, out, out, settings, _everyone(data), resume)
        share = load_share(data, processes.rank(), processes.count(), earlier or ())
        loaded = _loaded(model, decided, loading.backend)
        collected: list = []
        counts = predict_shards(loaded.engine, data, share, out, settings, decided.prompt, resume, progress,
                                collected, overwrite)
    frame = answers_frame(share.questions, {record["id"]: record for _, record in collected}, settings)
    frame.attrs.update({"out": str(out), **counts, "precision": str(decided.precision)})
    return frame


def _evaluate_in_memory(model, data, questions, settings: PredictSettings, loading: _Loading, card: bool,
                        progress: bool) -> dict:
    decided, settings = _decided(model, loading, settings, card)
    loaded = _loaded(model, decided, loading.backend)
    records, counts = _answer_all(loaded, questions, settings, progress)
    about = {**_about(decided, loaded), **({"debias": counts["debias"]} if "debias" in counts else {})}
    result = evaluation(questions, records, settings, counts["seconds"], counts["questions_per_second"], about)
    if card:
        _add_to_card(decided, data, settings, result, None)
    return {**result, "predictions": answers_frame(questions, records, settings)}


def _evaluate_folder(model, data, questions, out_dir: Path, settings: PredictSettings, loading: _Loading,
                     card: bool, resume: bool, progress: bool) -> dict:
    decided, settings = _decided(model, loading, settings, card)
    with contextlib.ExitStack() as held:
        _take_output(held, out_dir, out_dir / "predictions.csv", settings, lambda: questions, resume)
        loaded = _loaded(model, decided, loading.backend)
        out_dir.mkdir(parents=True, exist_ok=True)
        collected: list = []
        result = evaluate_file(loaded.engine, questions, out_dir, settings, decided.prompt, resume, progress,
                               _about(decided, loaded), collected)
    records = {**records_of(settings.raw), **{record["id"]: record for _, record in collected}}
    if card:
        _add_to_card(decided, data, settings, result, out_dir)
    return {**result, "predictions": answers_frame(questions, records, settings)}


def _evaluate_share(model, data, out_dir: Path, settings: PredictSettings, loading: _Loading, card: bool,
                    resume: bool, overwrite: bool, progress: bool) -> dict:
    """In a launch: the main process alone measures, on every question's id, letters and gold answer (read
    without their texts), and returns every answer; the others return their own share's."""
    decided, settings = _decided(model, loading, settings, card)
    with contextlib.ExitStack() as held:
        everyone = _everyone(data)
        earlier = processes.main_first(_take_output, held, out_dir, out_dir / "predictions.csv", settings, everyone,
                                       resume)
        share = load_share(data, processes.rank(), processes.count(), earlier or ())
        _check_labelled(data, share.labelled)
        loaded = _loaded(model, decided, loading.backend)
        if processes.is_main():
            out_dir.mkdir(parents=True, exist_ok=True)
        collected: list = []
        result = evaluate_shards(loaded.engine, data, share, everyone, out_dir, settings, decided.prompt, resume,
                                 progress, _about(decided, loaded), collected, overwrite)
    records = {record["id"]: record for _, record in collected}
    if not processes.is_main():
        return {**result, "predictions": answers_frame(share.questions, records, settings)}
    if card:
        _add_to_card(decided, data, settings, result, out_dir)
    records = {**records_of(settings.raw), **records}
    return {**result, "predictions": answers_frame(everyone(), records, settings)}


# --- helpers ------------------------------------------------------------------------------------------

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


def _decided(model, loading: _Loading, settings: PredictSettings, card: bool = False):
    """The plan for ``model`` (what a loaded one was loaded with, else decided now, before loading it), checked
    for a model card when one is asked for (before anything is answered), and the settings that record it."""
    if isinstance(model, Model):
        decided = model.plan
    else:
        decided = plan(str(model), base=loading.base, dtype=loading.dtype, load_in_4bit=loading.load_in_4bit,
                       prompt=loading.prompt)
    if card:
        _card_folder(decided)
    return decided, replace(settings, produced_by=decided.produced_by)


def _counts_only(frame, counts: dict | None = None):
    """``frame``'s columns and ``attrs`` (with ``counts``), without its rows: ``answers=False``."""
    empty = frame.iloc[0:0].copy()
    empty.attrs = {**frame.attrs, **(counts or {})}
    return empty


def _labelled(data) -> list:
    """The questions of ``data``, every one with its answer."""
    questions = load_questions(data)
    _check_labelled(data, all(q.answer is not None for q in questions))
    return questions


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


def _everyone(data) -> Callable[[], list]:
    """Every question of ``data``, when asked, as each one's id, letters and answer (no texts): ``data`` read as a
    stream, once."""
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
