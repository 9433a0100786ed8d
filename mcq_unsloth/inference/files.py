"""Predicting a whole file: a submission CSV written as it goes, resumable, and an evaluation's files.

Results are appended and flushed batch by batch, so Ctrl-C or a crash leaves a valid partial file and
``resume`` skips the ids already written; a record beside the output says what produced it, and a resume with
other settings is refused.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Collection

from ..data.questions import Question
from ..errors import OutputError
from ..outputs import write_text
from ..plots import plot_confusion
from .answering import Answers, PredictSettings, count_ties, estimate_prior, evaluation
from .debias import prior_path, read_prior

log = logging.getLogger(__name__)


def predict_file(model, questions: list[Question], out: Path, settings: PredictSettings, prompt=None,
                 resume: bool = False, progress: bool = True, collected: list | None = None, prior=None) -> dict:
    """Answer ``questions`` into the CSV ``out`` (``id,answer``), skipping ids already there when resuming.
    Returns counts and speed for this call; ``collected``, when given, receives this call's ``(Prediction, raw
    record)`` pairs as they are written. Debiased scoring divides by ``prior`` when given (a launch's), else by
    the one :func:`prior_for` finds or estimates.

    Each batch is written raw records first, then answers, each flushed: a crash at any moment leaves a header
    and whole answers (a line cut short is dropped on resume), and every answer has its raw record."""
    done = answered(out, settings, {q.id for q in questions}) if resume else None
    pending = [q for q in questions if q.id not in (done or ())]
    start = time.perf_counter()  # the prior's estimation is part of the cost
    if settings.debias and prior is None:
        prior = prior_for(model, lambda: questions, out, settings, prompt, resume)
    answers = Answers(model, pending, settings, prompt, progress, done=len(questions) - len(pending), prior=prior)
    new_file = done is None
    ties = 0
    with out.open("w" if new_file else "a", encoding="utf-8", newline="") as sink, \
            open(settings.raw or os.devnull, "w" if new_file else "a", encoding="utf-8") as raw:
        writer = csv.writer(sink)
        if new_file:
            write_text(record_path(out), json.dumps(settings.record(), indent=2, ensure_ascii=False) + "\n")
            writer.writerow(settings.columns())
            sink.flush()
        for results in answers:
            for _, record in results:
                raw.write(json.dumps(record, ensure_ascii=False) + "\n")
                ties += count_ties(record)
            raw.flush()
            writer.writerows(prediction.row() for prediction, _ in results)
            sink.flush()
            if collected is not None:
                collected.extend(results)
    seconds = time.perf_counter() - start
    return {"answered": len(pending), "skipped": len(questions) - len(pending), "shortened": len(answers.shortened),
            "seconds": round(seconds, 2),
            "questions_per_second": round(len(pending) / seconds, 2) if pending and seconds else None,
            "batch_size": answers.batch_size, **({"ties": ties} if settings.mode == "score" else {}),
            **({"prior": prior.by_options} if prior else {})}


def prior_for(model, questions, out: Path, settings: PredictSettings, prompt, resume: bool):
    """The positions' prior for debiased scoring: the one stored beside ``out`` when resuming, else estimated on
    the sample of ``questions()`` (the whole file's, or the sample itself) and stored there before any answer is
    written."""
    if resume and (stored := read_prior(out)) is not None:
        return stored
    prior = estimate_prior(model, questions(), settings.debias, settings.debias_seed, prompt, settings.batch_size)
    write_text(prior_path(out), json.dumps(prior.to_json(), indent=2, ensure_ascii=False) + "\n")
    log.info("positions' prior (debias): " + "; ".join(
        f"{count} options from {prior.questions[count]} questions: " + " ".join(f"{x} {p:.3f}" for x, p in values.items())
        for count, values in prior.by_options.items()))
    return prior


def answered(out: Path, settings: PredictSettings, ids: Collection[str]) -> set[str] | None:
    """The ids a partial output already answers, for resuming it; None when it has no answer yet (absent, empty
    after a crash before its first write, or a header alone): it starts afresh.

    A last line cut short by a crash is dropped, and so is an answer whose raw record is missing (it is asked
    again), each file rewritten only then. Raises :class:`~mcq_unsloth.errors.OutputError` when the file was
    written with other columns, with other settings (:meth:`PredictSettings.record`), or holds ids that are not
    among the questions' ``ids``: resuming would mix two runs."""
    header = settings.columns()
    rows = list(csv.reader(io.StringIO(_whole_csv(out), newline="")))
    if not rows:
        return None
    found, rows = rows[0], rows[1:]
    if found != header:
        raise OutputError(f"{out} has the columns {','.join(found)} and this run writes {','.join(header)}; "
                          f"resume with the id_column=, answer_column= and top_k= it was written with, or replace "
                          f"it with overwrite=True")
    if not rows:
        return None  # a header alone: nothing to keep, start afresh (and record the settings)
    if stray := next((row[0] for row in rows if row and row[0] not in ids), None):
        raise OutputError(f"{out} holds answers to questions that are not in this --data (id {stray!r}); resume "
                          f"with the file it was started on, or replace it with overwrite=True")
    _same_settings(out, settings.record())
    kept = _first_of_each_id(rows)
    if settings.raw is not None:
        records = {json.loads(line)["id"]: line for line in reversed(_whole_lines(settings.raw))}
        if unrecorded := [row for row in kept if row[0] not in records]:
            log.warning(f"note: {len(unrecorded)} answer(s) in {out} have no record in {settings.raw}; asking them "
                        f"again")
            kept = [row for row in kept if row[0] in records]
        _rewrite_if_changed(settings.raw, [records[row[0]] for row in kept])
    _rewrite_if_changed(out, [_csv_line(row) for row in [header, *kept]])
    return {row[0] for row in kept}


def record_path(out: Path) -> Path:
    """Where the settings that produced the output ``out`` are recorded: beside it, ``OUT.settings.json``."""
    return out.with_name(f"{out.name}.settings.json")


def _same_settings(out: Path, expected: dict) -> None:
    """Raise :class:`~mcq_unsloth.errors.OutputError` unless the answers in ``out`` were produced with the
    settings ``expected``, naming each difference."""
    path = record_path(out)
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputError(f"{out} holds answers but {path}, the record of what produced them, is missing: a "
                          f"resume could mix two runs; replace the file with overwrite=True") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise OutputError(f"{path} is not readable JSON: what produced {out} is unknown; replace the file with "
                          f"--overwrite") from None
    differences = [f"{key} {recorded.get(key, 'not set')!r}, now {expected.get(key, 'not set')!r}"
                   for key in dict.fromkeys([*recorded, *expected]) if recorded.get(key) != expected.get(key)]
    if differences:
        raise OutputError(f"{out} was written with other settings ({'; '.join(differences)}); resume with the "
                          f"settings it was written with, or replace it with overwrite=True")


def _whole_lines(path: Path | None) -> list[str]:
    r"""The complete lines of a JSON-lines file (a last one without its newline was cut short by a crash); none
    for a file that does not exist. Lines end at ``\n`` only: U+2028, U+0085 and the like are text there."""
    if path is None or not path.exists():
        return []
    text = path.read_bytes().decode("utf-8")
    return [line + "\n" for line in text.split("\n")[:-1]]


def _whole_csv(path: Path) -> str:
    r"""A CSV file's text up to its last complete record: a crash may have cut the last one, even inside a
    quoted field that holds a newline (an id with a line break).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
    ...     _ = f.write('id,answer\n1,A\n"two\nlines",B\n"cut\n')
    >>> _whole_csv(Path(f.name))
    'id,answer\n1,A\n"two\nlines",B\n'
    """
    if not path.exists():
        return ""
    text = path.read_bytes().decode("utf-8")
    end, quoted = 0, False
    for position, character in enumerate(text):
        if character == '"':
            quoted = not quoted
        elif character == "\n" and not quoted:
            end = position + 1
    return text[:end]


def _first_of_each_id(rows: list[list[str]]) -> list[list[str]]:
    """The rows that have an id, the first of each id only.

    >>> _first_of_each_id([["1", "A"], [], ["2", "B"], ["1", "C"]])
    [['1', 'A'], ['2', 'B']]
    """
    seen: set[str] = set()
    return [row for row in rows if row and row[0] not in seen and not seen.add(row[0])]


def _csv_line(row: list[str]) -> str:
    line = io.StringIO()
    csv.writer(line).writerow(row)
    return line.getvalue()


def _rewrite_if_changed(path: Path, lines: list[str]) -> None:
    text = "".join(lines)
    if not path.exists() or path.read_bytes() != text.encode("utf-8"):
        write_text(path, text)


def records_of(raw: Path | None) -> dict[str, dict]:
    """The raw records a JSON-lines file holds, by id (none for no file)."""
    return {record["id"]: record for record in map(json.loads, _whole_lines(raw))}


def read_predictions(out: Path, settings: PredictSettings) -> dict[str, str | None]:
    with out.open(encoding="utf-8", newline="") as source:
        return {row[settings.id_column]: row[settings.answer_column] or None for row in csv.DictReader(source)}


# --- helpers ------------------------------------------------------------------------------------------

EVAL_FILES = ("predictions.csv", "predictions.csv.settings.json", "predictions.csv.prior.json", "predictions.jsonl",
              "metrics.json", "confusion.png")


def evaluate_file(model, questions: list[Question], out_dir: Path, settings: PredictSettings,
                  prompt=None, resume: bool = False, progress: bool = True, about: dict | None = None,
                  collected: list | None = None) -> dict:
    """Predict labelled ``questions`` into ``out_dir`` (predictions.csv and .jsonl), then write metrics.json
    (:func:`~mcq_unsloth.inference.answering.evaluation`, with ``about``: what was evaluated, and how) and
    confusion.png. Returns the metrics. Resumed answers come from the raw records an earlier run wrote. In a
    launch, :func:`~mcq_unsloth.inference.shards.evaluate_shards` does this."""
    settings = replace(settings, raw=out_dir / "predictions.jsonl")
    collected = [] if collected is None else collected
    speed = predict_file(model, questions, out_dir / "predictions.csv", settings, prompt, resume, progress, collected)
    return write_evaluation(questions, out_dir, settings, speed, about, collected)


def write_evaluation(questions: list[Question], out_dir: Path, settings: PredictSettings, speed: dict,
                      about: dict | None, collected: list) -> dict:
    """metrics.json and confusion.png of ``out_dir`` for the labelled ``questions``: measured on this call's
    ``collected`` answers and those the raw records hold (an earlier run's, or other processes')."""
    records = {record["id"]: record for _, record in collected}
    if len(records) < len(questions):  # the earlier run's or the other processes' answers, from what they wrote
        records = {**records_of(settings.raw), **records}
    if settings.debias:
        about = {**(about or {}), "debias": read_prior(out_dir / "predictions.csv").to_json()}
    result = evaluation(questions, records, settings, speed["seconds"], speed["questions_per_second"], about)
    write_text(out_dir / "metrics.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    circular = f", circular {result.get('combine', 'vote')}" if settings.circular else ""
    plot_confusion(result["confusion"], out_dir / "confusion.png",
                   title=f"{settings.mode}{circular}: accuracy "
                         f"{result['accuracy']:.3f} on {result['questions']} questions")
    return result
