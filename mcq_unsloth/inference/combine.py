"""Combining several models' answers to the same questions: the weighted mean of their letter probabilities
where every input has them (what Kaggle's winning multiple-choice solutions do), else a weighted vote of their
letters, exact ties drawn as :func:`~mcq_unsloth.inference.scoring.break_tie` draws them.

An input is a DataFrame as :func:`mcq_unsloth.predict` returns it, a CSV (a submission ``id,answer``, or a
saved DataFrame with ``prob_`` columns), a JSON-lines file of raw records (``predict --raw``, an evaluation's
``predictions.jsonl``), or an evaluation folder (its ``predictions.jsonl``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from ..errors import ConfigError, DataError
from .answering import rotation_mean
from .scoring import break_tie


def ensemble(predictions: list, weights: list[float] | None = None):
    """One answer per question from several inputs (see the module), as a ``pandas.DataFrame`` in the first
    input's order: ``id``, ``answer`` and, when every input has letter probabilities, their weighted mean
    (``prob_A``...). ``weights`` (default equal) must be positive, one per input. Every input must answer the
    same ids; the first id one of them lacks is named.

    >>> import pandas as pd
    >>> a = pd.DataFrame({"id": ["1", "2"], "answer": ["A", "B"], "prob_A": [0.6, 0.2], "prob_B": [0.4, 0.8]})
    >>> b = pd.DataFrame({"id": ["1", "2"], "answer": ["B", "B"], "prob_A": [0.1, 0.4], "prob_B": [0.9, 0.6]})
    >>> ensemble([a, b]).to_dict("list")
    {'id': ['1', '2'], 'answer': ['B', 'B'], 'prob_A': [0.35, 0.3], 'prob_B': [0.65, 0.7]}
    >>> ensemble([a, b], weights=[9, 1])["answer"].tolist()
    ['A', 'B']
    """
    import pandas as pd

    if len(predictions) < 2:
        raise ConfigError(["predictions: an ensemble needs at least two"])
    weights = [1.0] * len(predictions) if weights is None else [float(w) for w in weights]
    if len(weights) != len(predictions) or not all(w > 0 and math.isfinite(w) for w in weights):
        raise ConfigError([f"give one positive weights= value per prediction ({len(predictions)}), not {weights}"])
    inputs = [(_name(p, i), _answers(p, _name(p, i))) for i, p in enumerate(predictions)]
    order = list(inputs[0][1])
    for name, answers in inputs[1:]:
        for mine, theirs, other in ((order, answers, name), (list(answers), inputs[0][1], inputs[0][0])):
            if missing := next((i for i in mine if i not in theirs), None):
                raise DataError(other, f"no answer for id {missing!r}, which {inputs[0][0] if other == name else name} "
                                       f"answers", column="id", fix="ensemble predictions of the same questions")
    with_probabilities = all(answers[i][1] for _, answers in inputs for i in order)
    rows = []
    for i in order:
        if with_probabilities:
            total = sum(weights)
            mean: dict[str, float] = {}
            for weight, (_, answers) in zip(weights, inputs):
                for letter, p in answers[i][1].items():
                    mean[letter] = mean.get(letter, 0.0) + weight * p / total
            best = max(mean.values())
            rows.append({"id": i, "answer": break_tie(i, sorted(x for x, p in mean.items() if p == best)),
                         **{f"prob_{x}": round(p, 10) for x, p in sorted(mean.items())}})
        else:
            votes: dict[str, float] = {}
            for weight, (_, answers) in zip(weights, inputs):
                if (letter := answers[i][0]) is not None:
                    votes[letter] = votes.get(letter, 0.0) + weight
            best = max(votes.values(), default=None)
            tied = sorted(x for x, v in votes.items() if v == best)
            rows.append({"id": i, "answer": break_tie(i, tied) if tied else None})
    frame = pd.DataFrame(rows)
    frame.attrs.update({"questions": len(order), "inputs": len(inputs),
                        "method": "mean of letter probabilities" if with_probabilities else "vote of letters"})
    return frame


def _name(prediction, index: int) -> str:
    return str(prediction) if isinstance(prediction, (str, Path)) else f"predictions[{index}]"


def _answers(prediction, name: str) -> dict[str, tuple[str | None, dict[str, float]]]:
    """id -> (letter or None, letter probabilities or {}) of one input."""
    if not isinstance(prediction, (str, Path)):
        return _from_rows(prediction.to_dict("records"), name)
    path = Path(prediction)
    if path.is_dir():
        path = path / "predictions.jsonl"
    if not path.is_file():
        raise DataError(path, "file not found", fix="give a predictions CSV, a raw JSON-lines file or an eval folder")
    if path.suffix == ".jsonl":
        answers = {}
        for line in path.read_text(encoding="utf-8").split("\n"):
            if line.strip():
                record = json.loads(line)
                answers[str(record["id"])] = (record.get("prediction"), _record_probabilities(record))
        return answers
    with path.open(encoding="utf-8", newline="") as source:
        return _from_rows(list(csv.DictReader(source)), str(path))


def _from_rows(rows: list[dict], name: str) -> dict[str, tuple[str | None, dict[str, float]]]:
    if not rows or "id" not in rows[0] or "answer" not in rows[0]:
        raise DataError(name, "expected the columns id and answer", column="id",
                        fix="give what predict returns or writes")
    answers = {}
    for row in rows:
        letter = row["answer"] if isinstance(row["answer"], str) and row["answer"] else None
        probabilities = {key[5:]: float(value) for key, value in row.items()
                         if key.startswith("prob_") and value not in (None, "") and not _nan(value)}
        answers[str(row["id"])] = (letter, probabilities)
    return answers


def _record_probabilities(record: dict) -> dict[str, float]:
    """A raw record's letter probabilities; a circular one's, averaged over its rotations."""
    if "probabilities" in record:
        return record["probabilities"]
    details = record.get("details") or []
    return rotation_mean(details) if details and all("probabilities" in d for d in details) else {}


def _nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)
