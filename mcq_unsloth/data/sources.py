"""Turning a recipe's ``data`` section into train and validation questions.

A source is a file path, ``shipped:NAME`` (a file in the package's data folder), ``synth:N`` or
``synth-held-out:N`` (generated, seeded by ``data.seed``).
"""

from __future__ import annotations

from ..config import SYNTH_SOURCE, DataConfig
from ..errors import DataError
from .questions import Question, load_questions, split_questions, stratified_subset
from ..resources import shipped_file
from .synth import synth_questions


def load_source(source: str, seed: int = 0) -> list[Question]:
    """Questions from a path, ``shipped:NAME``, ``synth:N`` or ``synth-held-out:N``."""
    synth = SYNTH_SOURCE.match(source)
    if synth:
        return synth_questions(int(synth.group(2)), seed, held_out=bool(synth.group(1)))
    if source.startswith("shipped:"):
        try:
            return load_questions(shipped_file(source[8:]))
        except FileNotFoundError as error:
            raise DataError(source, str(error), fix="use one of the shipped names") from None
    return load_questions(source)


def load_splits(config: DataConfig) -> tuple[list[Question], list[Question]]:
    """Train and validation questions: ``validation`` if given, else a seeded ``val_fraction`` of train.
    Both must be labelled. ``subset`` then keeps an answer-stratified share of train."""
    if not config.train:
        raise DataError("data.train", "no training data is set",
                        fix="pass --set data.train=PATH (CSV, TSV, JSONL or Parquet)")
    train = load_source(config.train, config.seed)
    if config.validation:
        # A different seed, so generated validation questions are not the training ones.
        validation = load_source(config.validation, config.seed + 1)
    else:
        train, validation = split_questions(train, config.val_fraction, config.seed)
    for name, questions in (("train", train), ("validation", validation)):
        unlabelled = next((q for q in questions if q.answer is None), None)
        if unlabelled is not None:
            source = config.train if name == "train" or not config.validation else config.validation
            raise DataError(source, "training needs answers and this file has none", column="answer",
                            fix="add an answer column (A-D) to every row")
    if config.subset < 1.0:
        train = stratified_subset(train, config.subset, config.seed)
    return train, validation
