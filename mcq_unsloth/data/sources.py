"""Where questions come from: files, ``shipped:NAME``, ``synth:N``, DataFrames, Datasets and lists of dicts
(:func:`load_questions`), and a recipe's ``data`` section as train and validation questions."""

from __future__ import annotations

import os

from ..errors import DataError
from ..resources import shipped_file
from .questions import (Question, Share, block_bounds, read_questions, read_share, records_to_questions,
                        split_questions, stratified_subset)
from .synthetic import parse_source, source_problem, synth_questions


def load_questions(source, seed: int = 0) -> list[Question]:
    """Questions from anything a user holds them in, with the same column detection, answer normalisation and
    errors everywhere: a file path (CSV, TSV, JSONL, JSON, Parquet), ``shipped:NAME`` (a file shipped with
    the package), ``synth:N`` or ``synth-held-out:N`` (generated, seeded by ``seed``), a ``pandas.DataFrame``
    (a bad row is named by its position and index label; empty cells are NaN), a ``datasets.Dataset``, a list
    of dicts, or questions already loaded. Raises :class:`~mcq_unsloth.errors.DataError`.

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"question": ["1+1=?", "2+2=?"], "A": ["2", "4"], "B": ["3", "5"], "C": ["4", None]})
    >>> [(q.id, list(q.options), q.answer) for q in load_questions(frame)]
    [('1', ['A', 'B', 'C'], None), ('2', ['A', 'B'], None)]
    >>> len(load_questions("synth:8")), load_questions("shipped:mcq_zh.csv")[0].id
    (8, 'zh-001')
    """
    if (path := _file(source)) is not None:
        return read_questions(path)
    if isinstance(source, (str, os.PathLike)):  # not a file: synth:N
        n, held_out = parse_source(str(source))
        return synth_questions(n, seed, held_out=held_out)
    kind = type(source).__name__
    if kind == "DataFrame":
        frame = source.astype(object).where(source.notna(), None)  # NaN, None, NA: an empty cell
        records = [(position, dict(zip(frame.columns, values)))
                   for position, values in enumerate(frame.itertuples(index=False, name=None), start=1)]
        labels = dict(zip(range(1, len(frame) + 1), source.index.tolist()))
        return records_to_questions("DataFrame", [str(c) for c in frame.columns], records, labels)
    if kind == "Dataset" and hasattr(source, "column_names"):
        return records_to_questions("Dataset", list(source.column_names), list(enumerate(source.to_list(), 1)))
    if isinstance(source, (list, tuple)) and source and all(isinstance(item, Question) for item in source):
        return list(source)
    if isinstance(source, (list, tuple)) and all(isinstance(item, dict) for item in source):
        columns = list(dict.fromkeys(key for item in source for key in item))
        return records_to_questions("list", columns, list(enumerate(source, start=1)))
    raise TypeError(f"load_questions takes a path, shipped:NAME, synth:N, a pandas DataFrame, a datasets Dataset "
                    f"or a list of dicts, not {kind}")


def load_share(source, rank: int = 0, count: int = 1, skip=(), texts: bool = True) -> Share:
    """Process ``rank`` of ``count``'s block of the questions of ``source`` (anything :func:`load_questions`
    takes) whose ids are not in ``skip``, and what the whole source holds (:class:`~mcq_unsloth.data.questions.
    Share`). A file (or ``shipped:NAME``) is read as a stream, checked whole and only the block kept
    (:func:`~mcq_unsloth.data.questions.read_share`); anything else is in memory already and is cut there.

    >>> share = load_share("synth:10", rank=1, count=4, skip={"synth-0-1"})
    >>> [q.id for q in share.questions], share.rows, share.pending
    (['synth-0-5', 'synth-0-6', 'synth-0-7'], 10, 9)
    """
    if (path := _file(source)) is not None:
        return read_share(path, rank, count, skip, texts)
    questions = load_questions(source)
    pending = [q for q in questions if q.id not in skip]
    start, stop = block_bounds(len(pending), rank, count)
    return Share(pending[start:stop], len(questions), len(pending), all(q.answer is not None for q in questions))


def _file(source):
    """The file ``source`` names (a path, or ``shipped:NAME``), or None when it is no file (``synth:N``, a
    DataFrame...)."""
    if not isinstance(source, (str, os.PathLike)) or parse_source(text := str(source)):
        return None
    if problem := source_problem(text):
        raise DataError(text, problem)
    if text.startswith("shipped:"):
        try:
            return shipped_file(text[8:])
        except FileNotFoundError as error:
            raise DataError(text, str(error), fix="use one of the shipped names") from None
    return source


def questions_frame(questions: list[Question]):
    """The questions as a ``pandas.DataFrame``: ``id``, ``question``, one column per option letter (empty where a
    question has fewer options), ``answer``, and ``reasoning`` when any question has one. What
    :func:`load_questions` reads back.

    >>> frame = questions_frame(load_questions("synth:2"))
    >>> list(frame.columns), load_questions(frame) == load_questions("synth:2")
    (['id', 'question', 'A', 'B', 'C', 'D', 'answer'], True)
    """
    import pandas as pd

    letters = sorted({letter for q in questions for letter in q.options})
    with_reasoning = any(q.reasoning for q in questions)
    rows = [{"id": q.id, "question": q.question, **{x: q.options.get(x) for x in letters}, "answer": q.answer,
             **({"reasoning": q.reasoning} if with_reasoning else {})} for q in questions]
    return pd.DataFrame(rows, columns=["id", "question", *letters, "answer", *(["reasoning"] if with_reasoning
                                                                             else [])])


def load_splits(train: str | None, validation: str | None = None, val_fraction: float = 0.0, subset: float = 1.0,
                seed: int = 0) -> tuple[list[Question], list[Question]]:
    """Train and validation questions from the sources a recipe's ``data`` names (any :func:`load_questions`
    takes): ``validation`` if given, else a seeded ``val_fraction`` of train. Both must be labelled. ``subset``
    then keeps an answer-stratified share of train."""
    if not train:
        raise DataError("data.train", "no training data is set",
                        fix="pass --set data.train=PATH (CSV, TSV, JSONL or Parquet)")
    source, validation_source = train, validation
    train = load_questions(source, seed)
    if validation_source:
        # A different seed, so generated validation questions are not the training ones.
        validation = load_questions(validation_source, seed + 1)
    else:
        train, validation = split_questions(train, val_fraction, seed)
    for name, questions in (("train", train), ("validation", validation)):
        unlabelled = next((q for q in questions if q.answer is None), None)
        if unlabelled is not None:
            named = source if name == "train" or not validation_source else validation_source
            raise DataError(named, "training needs answers and this file has none", column="answer",
                            fix="add an answer column (A-D) to every row")
    if subset < 1.0:
        train = stratified_subset(train, subset, seed)
    return train, validation
