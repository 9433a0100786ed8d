"""Multiple-choice questions: reading them from files, normalising answers, splits and subsets.

Every format goes through the same two steps: the file becomes a header plus numbered records (dicts, see
:mod:`mcq_unsloth.data.readers`), then each record becomes a :class:`Question`. Anything wrong with the input
raises :class:`DataError`, whose message names the file, the 1-based data row, the column and how to fix it.
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Iterable

from ..errors import DataError
from ..outputs import replacing
from .readers import open_table

LETTERS = "ABCDEFGHIJ"

# Column names are compared after `_column_key`: NFKC, lower case, no spaces, underscores or hyphens.
QUESTION_COLUMNS = ("question", "题目", "问题", "問題", "題目")
ANSWER_COLUMNS = ("answer", "答案", "label", "正确答案", "正確答案")
ID_COLUMNS = ("id", "qid", "questionid", "编号", "編號")
REASONING_COLUMNS = ("reasoning", "理由", "解析", "explanation", "rationale")
OPTIONS_DICT_COLUMNS = ("options", "选项", "選項")
OPTIONS_LIST_COLUMNS = ("choices",)
_OPTION_COLUMN = re.compile(r"^(?:option|选项|選項|choice)?([a-j])$")

# Applied after NFKC (full-width -> ASCII) and upper-casing: "答案：B", "（A）", "D.", "[C]", "ANSWER: A".
_ANSWER = re.compile(
    r"^(?:(?:正确|正確)?答案|ANSWER)?\s*[:=]?\s*[(\[【{]?\s*([A-Z])\s*[)\]】}]?\s*[.,、。:;]?$"
)


@dataclass(frozen=True)
class Question:
    """One single-choice question.

    ``options`` maps letters to option texts in order (``{"A": "...", "B": "..."}``); ``answer`` is the
    gold letter or None for a question to predict.
    """

    id: str
    question: str
    options: dict[str, str]
    answer: str | None = None
    reasoning: str | None = None
    row: int = field(default=0, compare=False)


def read_questions(path: str | Path) -> list[Question]:
    """Read questions from a ``.csv``, ``.tsv``, ``.jsonl``/``.json`` or ``.parquet`` file.

    Column names may be English or Chinese (question/题目/问题/問題, answer/答案/label, id, reasoning/理由);
    options come as columns ``A``..``D`` (or ``option_A``, ``选项A``), an ``options`` dict or a ``choices``
    list. Text files may be UTF-8 (with or without BOM) or GBK/GB18030. Raises :class:`DataError`.
    """
    table = _table(path)
    return records_to_questions(table.path, table.columns, table.records())


@dataclass(frozen=True)
class Share:
    """One process's block of a question file (:func:`read_share`) and what the whole file holds."""

    questions: list[Question]
    rows: int  # questions in the whole file
    pending: int  # of them, those not skipped
    labelled: bool


def read_share(path: str | Path, rank: int = 0, count: int = 1, skip: Collection[str] = (),
               texts: bool = True) -> Share:
    """Process ``rank`` of ``count``'s block of the questions of a file whose ids are not in ``skip``: the
    ``rank``-th of ``count`` contiguous blocks (:func:`block_bounds`), in the file's order. The file is read as a
    stream, twice: all of it is checked as :func:`read_questions` checks it (every process stops at the same
    error), and only the block is kept, so a file of a million questions never sits in memory whole. Without
    ``texts`` the questions keep their id, option letters and answer only (empty texts): what metrics need.
    """
    table = _table(path)
    layout = _Layout.detect(table.path, table.columns)
    checks = _Checks(table.path, layout)
    pending = 0
    for row, record in table.records():
        question = layout.parse(table.path, row, record)
        checks.add(question)
        pending += question.id not in skip
    checks.finish()
    start, stop = block_bounds(pending, rank, count)
    kept, index = [], 0
    for row, record in table.records():
        if index >= stop:
            break
        question = layout.parse(table.path, row, record)
        if question.id in skip:
            continue
        if index >= start:
            kept.append(question if texts else
                        Question(question.id, "", dict.fromkeys(question.options, ""), question.answer, row=row))
        index += 1
    return Share(kept, checks.rows, pending, checks.answered == checks.rows)


def block_bounds(total: int, rank: int, count: int) -> tuple[int, int]:
    """Where process ``rank`` of ``count``'s contiguous block of ``total`` items starts and stops: blocks of
    equal size, the last ones shorter (or empty) when ``total`` does not divide.

    >>> [block_bounds(10, rank, 4) for rank in range(4)]
    [(0, 3), (3, 6), (6, 9), (9, 10)]
    >>> block_bounds(1, 1, 2)
    (1, 1)
    """
    size = math.ceil(total / count)
    return min(rank * size, total), min((rank + 1) * size, total)


def _table(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found", fix="check the path")
    return open_table(path)


def records_to_questions(source: str | Path, columns: list[str], records: Iterable[tuple[int, dict[str, Any]]],
                         labels: dict[int, Any] | None = None) -> list[Question]:
    """Questions from a table's column names and ``(data row, record)`` pairs, read as files are read; errors
    name ``source``, the row (with ``labels``, a DataFrame's index label of each data row too) and the column.

    >>> records_to_questions("table", ["question", "A", "B", "answer"], [(1, {"question": "1+1", "A": "2",
    ...                      "B": "3", "answer": "A"})])[0].options
    {'A': '2', 'B': '3'}
    """
    try:
        layout = _Layout.detect(source, columns)
        checks = _Checks(source, layout)
        questions = []
        for row, record in records:
            questions.append(layout.parse(source, row, record))
            checks.add(questions[-1])
        checks.finish()
    except DataError as error:
        if labels is None or error.row not in labels:
            raise
        raise DataError(error.path, error.problem, row=error.row, column=error.column, fix=error.fix,
                        label=labels[error.row]) from None
    return questions


def summarize(questions: list[Question]) -> dict[str, Any]:
    """The `data check` summary: row count, whether labelled, and answer counts when labelled.

    >>> q = Question("1", "1+1=?", {"A": "2", "B": "3"}, "A")
    >>> summarize([q, q])
    {'rows': 2, 'labelled': True, 'answers': {'A': 2, 'B': 0}}
    """
    labelled = all(q.answer is not None for q in questions)
    summary: dict[str, Any] = {"rows": len(questions), "labelled": labelled}
    if labelled:
        letters = sorted({letter for q in questions for letter in q.options})
        counts = Counter(q.answer for q in questions)
        summary["answers"] = {letter: counts.get(letter, 0) for letter in letters}
    return summary


def summary_line(questions: list[Question]) -> str:
    """The `data check` line of a question set, as the command line and the page say it.

    >>> summary_line([Question("1", "1+1=?", {"A": "2", "B": "3"}, "A")])
    '1 questions, 2 options each, labelled'
    """
    summary = summarize(questions)
    options = "/".join(map(str, sorted({len(q.options) for q in questions})))
    return (f"{summary['rows']} questions, {options} options each, "
            + ("labelled" if summary["labelled"] else "unlabelled (a set to predict)"))


def split_questions(questions: list[Question], val_fraction: float = 0.1,
                    seed: int = 42) -> tuple[list[Question], list[Question]]:
    """Seeded train/validation split (90/10 by default), each part in the original order.

    >>> qs = [Question(str(i), "q", {"A": "x", "B": "y"}, "A") for i in range(10)]
    >>> train, val = split_questions(qs, 0.2, seed=1)
    >>> len(train), len(val), {q.id for q in train}.isdisjoint(q.id for q in val)
    (8, 2, True)
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = round(len(questions) * val_fraction)
    if val_fraction > 0 and len(questions) >= 2:
        n_val = max(n_val, 1)
    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    val_idx = set(order[:n_val])
    train = [q for i, q in enumerate(questions) if i not in val_idx]
    val = [q for i, q in enumerate(questions) if i in val_idx]
    return train, val


def stratified_subset(questions: list[Question], fraction: float, seed: int = 42) -> list[Question]:
    """A seeded subset keeping each answer letter's share (e.g. the 50% the contest's GRPO run used).

    Unlabelled questions form one stratum. The result keeps the original order.

    >>> qs = [Question(str(i), "q", {"A": "x", "B": "y"}, "AB"[i % 2]) for i in range(8)]
    >>> Counter(q.answer for q in stratified_subset(qs, 0.5))
    Counter({'A': 2, 'B': 2})
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    rng = random.Random(seed)
    strata: dict[str | None, list[int]] = {}
    for i, q in enumerate(questions):
        strata.setdefault(q.answer, []).append(i)
    keep: set[int] = set()
    for letter in sorted(strata, key=str):
        members = strata[letter]
        keep.update(rng.sample(members, round(len(members) * fraction)))
    return [q for i, q in enumerate(questions) if i in keep]


def normalize_answer(raw: Any) -> str | None:
    """The answer letter written in a data file, or None if it is not one letter.

    >>> [normalize_answer(x) for x in ["B", " c ", "Ｄ", "D.", "（A）", "答案：B", "[C]", "AB", "", 3]]
    ['B', 'C', 'D', 'D', 'A', 'B', 'C', None, None, None]
    """
    if not isinstance(raw, str):
        return None
    text = unicodedata.normalize("NFKC", raw).strip().upper()
    match = _ANSWER.match(text)
    return match.group(1) if match else None


def write_questions(questions: Iterable[Question], path: str | Path) -> None:
    """Write questions as CSV (id, question, A.., answer[, reasoning]) or, for ``.jsonl``, JSON lines, replacing
    ``path`` whole at the end."""
    questions = list(questions)
    path = Path(path)
    letters = sorted({letter for q in questions for letter in q.options})
    with_reasoning = any(q.reasoning for q in questions)
    if path.suffix == ".jsonl":
        with replacing(path, encoding="utf-8") as out:
            for q in questions:
                record = {"id": q.id, "question": q.question, "options": q.options, "answer": q.answer}
                if with_reasoning:
                    record["reasoning"] = q.reasoning
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    delimiter = "\t" if path.suffix in (".tsv", ".tab") else ","
    with replacing(path, encoding="utf-8", newline="") as out:
        writer = csv.writer(out, delimiter=delimiter)
        writer.writerow(["id", "question", *letters, "answer"] + (["reasoning"] if with_reasoning else []))
        for q in questions:
            row = [q.id, q.question, *(q.options.get(x, "") for x in letters), q.answer or ""]
            writer.writerow(row + ([q.reasoning or ""] if with_reasoning else []))


# --- turning records into questions ------------------------------------------------------------------

def _column_key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", unicodedata.normalize("NFKC", str(name)).lower())


def _find(columns: list[str], names: tuple[str, ...]) -> str | None:
    wanted = {_column_key(name) for name in names}
    return next((c for c in columns if _column_key(c) in wanted), None)


@dataclass
class _Layout:
    """Which file column holds what."""

    question: str
    option_columns: dict[str, str]  # letter -> column
    options_dict: str | None
    choices_list: str | None
    answer: str | None
    id: str | None
    reasoning: str | None

    @classmethod
    def detect(cls, path: Path, columns: list[str]) -> "_Layout":
        question = _find(columns, QUESTION_COLUMNS)
        if question is None:
            raise DataError(path, f"no question column among {columns}", column="question",
                            fix="name the question column 'question', '题目' or '问题'")
        option_columns: dict[str, str] = {}
        for column in columns:
            match = _OPTION_COLUMN.match(_column_key(column))
            if match:
                option_columns.setdefault(match.group(1).upper(), column)
        options_dict = _find(columns, OPTIONS_DICT_COLUMNS)
        choices_list = _find(columns, OPTIONS_LIST_COLUMNS)
        if option_columns:
            letters = "".join(sorted(option_columns))
            if letters != LETTERS[: len(letters)] or len(letters) < 2:
                raise DataError(path, f"option columns {letters} are not consecutive from A",
                                column=option_columns[letters[-1]],
                                fix="name the option columns A, B, C, D (at least two)")
        elif options_dict is None and choices_list is None:
            raise DataError(path, f"no option columns among {columns}", column="A",
                            fix="add option columns A, B, C, D (or option_A.., 选项A..), "
                                "an 'options' dict or a 'choices' list")
        return cls(question, dict(sorted(option_columns.items())), options_dict, choices_list,
                   _find(columns, ANSWER_COLUMNS), _find(columns, ID_COLUMNS), _find(columns, REASONING_COLUMNS))

    def parse(self, path: Path, row: int, record: dict[str, Any]) -> Question:
        text = _text(record.get(self.question))
        if not text:
            raise DataError(path, "the question is empty", row=row, column=self.question,
                            fix="write the question text or delete the row")
        options = self._options(path, row, record)
        answer = None
        if self.answer is not None:
            answer = self._answer(path, row, record, options)
        reasoning = _text(record.get(self.reasoning)) if self.reasoning else None
        qid = _text(record.get(self.id)) if self.id else ""
        return Question(qid or str(row), text, options, answer, reasoning or None, row)

    def _options(self, path: Path, row: int, record: dict[str, Any]) -> dict[str, str]:
        if self.option_columns:
            options = {letter: _text(record.get(column)) for letter, column in self.option_columns.items()}
            # Trailing empty option columns are allowed: a 3-option question in a 4-column file.
            while len(options) > 2 and not options[next(reversed(options))]:
                options.popitem()
            columns = self.option_columns
        elif self.options_dict is not None and record.get(self.options_dict) not in (None, ""):
            options = self._parse_options_dict(path, row, record[self.options_dict])
            columns = {letter: self.options_dict for letter in options}
        else:
            column = self.choices_list or self.options_dict
            options = self._parse_choices(path, row, record.get(column), column)
            columns = {letter: column for letter in options}
        for letter, option in options.items():
            if not option:
                raise DataError(path, f"option {letter} is empty", row=row, column=columns[letter],
                                fix="fill in the option text")
        return options

    def _parse_options_dict(self, path: Path, row: int, value: Any) -> dict[str, str]:
        column = self.options_dict
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise DataError(path, "options are not a JSON object", row=row, column=column,
                                fix='write options as {"A": "...", "B": "...", ...}') from None
        if isinstance(value, list):
            return self._parse_choices(path, row, value, column)
        if not isinstance(value, dict):
            raise DataError(path, f"options must be a dict, got {type(value).__name__}", row=row, column=column,
                            fix='write options as {"A": "...", "B": "...", ...}')
        options = {}
        for key, option in value.items():
            letter = normalize_answer(str(key))
            if letter is None:
                raise DataError(path, f"option key {key!r} is not a letter", row=row, column=column,
                                fix="key the options by letter: A, B, C, D")
            if option is not None:
                options[letter] = _text(option)
        letters = "".join(sorted(options))
        if letters != LETTERS[: len(letters)] or len(letters) < 2:
            raise DataError(path, f"option letters {letters or 'none'} are not consecutive from A", row=row,
                            column=column, fix="give at least options A and B, with no gaps")
        return dict(sorted(options.items()))

    def _parse_choices(self, path: Path, row: int, value: Any, column: str) -> dict[str, str]:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = None
        if not isinstance(value, list) or not 2 <= len(value) <= len(LETTERS):
            raise DataError(path, "choices must be a list of 2 to 10 option texts", row=row, column=column,
                            fix='write choices as ["first option", "second option", ...]')
        return {LETTERS[i]: _text(choice) for i, choice in enumerate(value)}

    def _answer(self, path: Path, row: int, record: dict[str, Any], options: dict[str, str]) -> str | None:
        raw = record.get(self.answer)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        letters = ", ".join(options)
        if isinstance(raw, int) and not isinstance(raw, bool) and self.choices_list is not None:
            # The Hugging Face convention (MMLU, C-Eval exports): a 0-based index into the `choices` list.
            if 0 <= raw < len(options):
                return LETTERS[raw]
            raise DataError(path, f"answer index {raw} is outside 0..{len(options) - 1}", row=row,
                            column=self.answer, fix="use a 0-based index into choices, or a letter")
        letter = normalize_answer(str(raw))
        if letter is None:
            raise DataError(path, f"answer {str(raw)!r} is not a single letter", row=row, column=self.answer,
                            fix=f"write exactly one of {letters}")
        if letter not in options:
            raise DataError(path, f"answer {letter} is not among the options {letters}", row=row,
                            column=self.answer, fix=f"write one of {letters}, or add option {letter}")
        return letter


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


class _Checks:
    """What holds for a whole file and not for one row, checked as its questions go by: it has some, every id is
    unique, and either every question has an answer or none does."""

    def __init__(self, path: Path, layout: _Layout):
        self.path, self.layout = path, layout
        self.rows, self.answered = 0, 0
        self.first_row: dict[str, int] = {}
        self.unanswered: Question | None = None

    def add(self, q: Question) -> None:
        if q.id in self.first_row:
            raise DataError(self.path, f"id {q.id!r} also appears in data row {self.first_row[q.id]}", row=q.row,
                            column=self.layout.id, fix="give every question a unique id")
        self.first_row[q.id] = q.row
        self.rows += 1
        self.answered += q.answer is not None
        if q.answer is None and self.unanswered is None:
            self.unanswered = q

    def finish(self) -> None:
        if not self.rows:
            raise DataError(self.path, "the file has no data rows", fix="add at least one question below the header")
        if self.unanswered is not None and self.answered:
            raise DataError(self.path, f"the answer is empty here but given in {self.answered} other rows",
                            row=self.unanswered.row, column=self.layout.answer,
                            fix="fill in every answer, or remove the answer column to predict")
