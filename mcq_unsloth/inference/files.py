"""Predicting a whole file: a submission CSV written as it goes, resumable, with optional circular evaluation.

Results are appended and flushed batch by batch, so Ctrl-C or a crash leaves a valid partial file and
``resume`` skips the ids already written. ``circular`` asks every question once per rotation of its options
(A-B-C-D, B-C-D-A, ...); the submitted answer is the vote of the rotations, mapped back to the original
letters, and :func:`metrics` reports circular accuracy and position bias.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..data.questions import LETTERS, Question
from ..model.backends import out_of_memory_errors
from .scoring import fit_to_context

log = logging.getLogger(__name__)


@dataclass
class PredictSettings:
    """How to answer: ``mode`` is ``score`` or ``generate``; ``batch_size`` None means automatic; ``on_long`` is
    ``shorten`` (a prompt longer than the model's context is cut from the middle of its question) or ``error``."""

    mode: str = "score"
    batch_size: int | None = None
    max_new_tokens: int = 8
    circular: bool = False
    id_column: str = "id"
    answer_column: str = "answer"
    raw: Path | None = None
    on_long: str = "shorten"
    produced_by: dict | None = None  # what answers and how it is asked (model, precision, prompt): see record()

    def record(self) -> dict:
        """What decides the answers, written beside an output and compared when it is resumed: the model, its
        precision and prompt (``produced_by``), the mode, circular voting and, when generating, the reply length.
        Batch size, columns and ``on_long`` do not change an answer and are left out."""
        return {**(self.produced_by or {}), "mode": self.mode, "circular": self.circular,
                **({"max_new_tokens": self.max_new_tokens} if self.mode == "generate" else {})}


@dataclass
class Prediction:
    id: str
    answer: str | None
    rotations: list[str | None] = field(default_factory=list)  # predicted position letter in each rotation


def predict_file(model, tokenizer, questions: list[Question], out: Path, settings: PredictSettings, prompt=None,
                 resume: bool = False, progress: bool = True) -> dict:
    """Answer ``questions`` into the CSV ``out`` (``id,answer``), skipping ids already there when resuming.
    Returns counts and speed for this call.

    Each batch is written raw records first, then answers, each flushed: a crash at any moment leaves a header
    and whole answers (a line cut short is dropped on resume), and every answer has its raw record."""
    from tqdm.auto import tqdm

    from ..outputs import write_text

    done = answered(out, settings, questions) if resume else None
    pending = [q for q in questions if q.id not in (done or ())]
    room = settings.max_new_tokens if settings.mode == "generate" else 0
    pending, shortened = fit_to_context(model, tokenizer, pending, prompt, room, settings.circular, settings.on_long)
    batch_size = settings.batch_size or _first_batch_size(model)
    prefix = _prompt_prefix(model, tokenizer, pending, settings, prompt)
    new_file = done is None
    start = time.perf_counter()
    with out.open("w" if new_file else "a", encoding="utf-8", newline="") as sink, \
            open(settings.raw or os.devnull, "w" if new_file else "a", encoding="utf-8") as raw, \
            tqdm(total=len(questions), initial=len(questions) - len(pending), unit="q", disable=not progress,
                 desc=settings.mode) as bar:
        writer = csv.writer(sink)
        if new_file:
            write_text(record_path(out), json.dumps(settings.record(), indent=2, ensure_ascii=False) + "\n")
            writer.writerow([settings.id_column, settings.answer_column])
            sink.flush()
        position = ties = 0
        while position < len(pending):
            per_question = len(pending[position].options) if settings.circular else 1
            chunk = pending[position:position + max(1, batch_size // per_question)]
            try:
                results = _answer(model, tokenizer, chunk, settings, prompt, batch_size, prefix)
            except out_of_memory_errors() as error:
                if batch_size == 1:
                    raise
                batch_size //= 2
                bar.write(f"out of memory ({type(error).__name__}); batch size now {batch_size}")
                _empty_cache()
                continue
            for prediction, record in results:
                if prediction.id in shortened:
                    record["shortened"] = True
                raw.write(json.dumps(record, ensure_ascii=False) + "\n")
                ties += count_ties(record)
            raw.flush()
            writer.writerows([prediction.id, prediction.answer or ""] for prediction, _ in results)
            sink.flush()
            position += len(chunk)
            bar.update(len(chunk))
    seconds = time.perf_counter() - start
    return {"answered": len(pending), "skipped": len(questions) - len(pending), "shortened": len(shortened),
            "seconds": round(seconds, 2),
            "questions_per_second": round(len(pending) / seconds, 2) if pending and seconds else None,
            "batch_size": batch_size, **({"ties": ties} if settings.mode == "score" else {})}


def answered(out: Path, settings: PredictSettings, questions: list[Question]) -> set[str] | None:
    """The ids a partial output already answers, for resuming it; None when it has no answer yet (absent, empty
    after a crash before its first write, or a header alone): it starts afresh.

    A last line cut short by a crash is dropped, and so is an answer whose raw record is missing (it is asked
    again), each file rewritten only then. Raises :class:`~mcq_unsloth.errors.OutputError` when the file was
    written with other columns, with other settings (:meth:`PredictSettings.record`), or holds ids that
    ``questions`` lack: resuming would mix two runs."""
    from ..errors import OutputError

    header = [settings.id_column, settings.answer_column]
    rows = list(csv.reader(io.StringIO(_whole_csv(out), newline="")))
    if not rows:
        return None
    found, rows = rows[0], rows[1:]
    if found != header:
        raise OutputError(f"{out} has the columns {','.join(found)} and this run writes {','.join(header)}; "
                          f"resume with the --id-column and --answer-column it was written with, or replace it "
                          f"with --overwrite")
    if not rows:
        return None  # a header alone: nothing to keep, start afresh (and record the settings)
    known = {q.id for q in questions}
    if stray := next((row[0] for row in rows if row and row[0] not in known), None):
        raise OutputError(f"{out} holds answers to questions that are not in this --data (id {stray!r}); resume "
                          f"with the file it was started on, or replace it with --overwrite")
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
    from ..errors import OutputError

    path = record_path(out)
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputError(f"{out} holds answers but {path}, the record of what produced them, is missing: a "
                          f"resume could mix two runs; replace the file with --overwrite") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise OutputError(f"{path} is not readable JSON: what produced {out} is unknown; replace the file with "
                          f"--overwrite") from None
    differences = [f"{key} {recorded.get(key, 'not set')!r}, now {expected.get(key, 'not set')!r}"
                   for key in dict.fromkeys([*recorded, *expected]) if recorded.get(key) != expected.get(key)]
    if differences:
        raise OutputError(f"{out} was written with other settings ({'; '.join(differences)}); resume with the "
                          f"settings it was written with, or replace it with --overwrite")


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
    from ..outputs import write_text

    text = "".join(lines)
    if not path.exists() or path.read_bytes() != text.encode("utf-8"):
        write_text(path, text)


def count_ties(record: dict) -> int:
    """How many answers of a raw record (a question, or each rotation of a circular one) were drawn among letters
    that tied exactly for the highest logit."""
    return sum(1 for r in record.get("details", [record]) if r.get("tied"))


def read_predictions(out: Path, settings: PredictSettings) -> dict[str, str | None]:
    with out.open(encoding="utf-8", newline="") as source:
        return {row[settings.id_column]: row[settings.answer_column] or None for row in csv.DictReader(source)}


def metrics(questions: list[Question], predicted: dict[str, str | None], rotations: dict[str, list] | None = None
            ) -> dict:
    """Accuracy, unparseable share, letter distributions and the confusion matrix (gold -> predicted); with
    ``rotations`` (id -> predicted position letters), circular accuracy and position bias too.

    >>> qs = [Question("1", "q", {"A": "x", "B": "y"}, "A"), Question("2", "q", {"A": "x", "B": "y"}, "B")]
    >>> m = metrics(qs, {"1": "A", "2": None})
    >>> m["accuracy"], m["unparseable"], m["confusion"]
    (0.5, 0.5, {'A': {'A': 1}, 'B': {'none': 1}})
    """
    scored = [q for q in questions if q.id in predicted]
    letters = sorted({x for q in scored for x in q.options})
    confusion: dict[str, dict[str, int]] = {}
    for q in scored:
        row = confusion.setdefault(q.answer, {})
        guess = predicted[q.id] or "none"
        row[guess] = row.get(guess, 0) + 1
    result = {
        "questions": len(scored),
        "accuracy": round(sum(predicted[q.id] == q.answer for q in scored) / max(len(scored), 1), 4),
        "unparseable": round(sum(predicted[q.id] is None for q in scored) / max(len(scored), 1), 4),
        "predicted": _distribution([predicted[q.id] or "none" for q in scored], letters + ["none"]),
        "gold": _distribution([q.answer for q in scored], letters),
        "confusion": {gold: confusion[gold] for gold in sorted(confusion)},
    }
    if rotations:
        right = [q for q in scored if q.id in rotations]
        result["circular_accuracy"] = round(sum(
            all(_unrotate(q, k, letter) == q.answer for k, letter in enumerate(rotations[q.id])) for q in right
        ) / max(len(right), 1), 4)
        positions = [letter for q in right for letter in rotations[q.id] if letter]
        result["position_bias"] = _distribution(positions, letters)
    return result


# --- helpers ------------------------------------------------------------------------------------------

def _prompt_prefix(model, tokenizer, questions: list[Question], settings: PredictSettings, prompt):
    """In score mode, the start every prompt of the file shares, run through the model once for all chunks.
    Prompts are tokenized a thousand at a time: a large file's token ids are never all held at once."""
    from .scoring import prompt_prefix, prompt_token_ids, shared_start

    if settings.mode != "score" or len(questions) < 2 or not hasattr(model, "config"):  # GGUF: reuses its own
        return None
    asked = _asked(questions, settings)
    chunks = (prompt_token_ids(tokenizer, asked[i:i + 1000], prompt) for i in range(0, len(asked), 1000))
    return prompt_prefix(model, shared_start(ids for chunk in chunks for ids in chunk))


def _answer(model, tokenizer, chunk: list[Question], settings: PredictSettings, prompt, batch_size: int,
            prefix=None):
    """(Prediction, raw record) for each question of the chunk, in order."""
    from .llamacpp import GgufModel
    from .scoring import generate_answers, score_questions

    asked = _asked(chunk, settings)
    if isinstance(model, GgufModel):  # llama.cpp: one prompt at a time, each reusing the start it shares
        outputs = model.score(asked, prompt) if settings.mode == "score" else model.generate(
            asked, prompt, settings.max_new_tokens)
    elif settings.mode == "score":
        outputs = score_questions(model, tokenizer, asked, prompt, batch_size, prefix)
    else:
        outputs = generate_answers(model, tokenizer, asked, prompt, batch_size, settings.max_new_tokens)
    if settings.mode == "score":
        records = [{"prediction": o.prediction, "probabilities": o.probabilities, **({"tied": o.tied} if o.tied else {})}
                   for o in outputs]
    else:
        records = [{"prediction": o.prediction, "text": o.text} for o in outputs]
    results, at = [], 0
    for q in chunk:
        count = len(q.options) if settings.circular else 1
        mine, mine_records = outputs[at:at + count], records[at:at + count]
        at += count
        if not settings.circular:
            results.append((Prediction(q.id, mine[0].prediction), {"id": q.id, **mine_records[0]}))
            continue
        positions = [o.prediction for o in mine]
        votes = Counter(_unrotate(q, k, letter) for k, letter in enumerate(positions) if letter)
        weight = Counter()  # score mode: equal votes go to the larger summed probability of the original letter
        for k, output in enumerate(mine):
            for letter, p in getattr(output, "probabilities", {}).items():
                weight[_unrotate(q, k, letter)] += p
        answer = _vote(q.id, votes, weight)
        results.append((Prediction(q.id, answer, positions),
                        {"id": q.id, "prediction": answer, "rotations": positions, "details": mine_records}))
    return results


def _vote(question_id: str, votes: Counter, weight: Counter) -> str | None:
    """The letter with the most votes, then the most weight; a draw seeded by the question's id among letters
    equal on both, so no position is favoured.

    >>> _vote("q", Counter("AABB"), Counter({"A": 1.2, "B": 0.8})), _vote("q", Counter(), Counter())
    ('A', None)
    """
    from .scoring import break_tie

    if not votes:
        return None
    best = max((votes[x], weight[x]) for x in votes)
    return break_tie(question_id, sorted(x for x in votes if (votes[x], weight[x]) == best))


def _asked(questions: list[Question], settings: PredictSettings) -> list[Question]:
    """What is put to the model: each question, or with ``circular`` each of its rotations in turn."""
    return [r for q in questions for r in (_rotations(q) if settings.circular else [q])]


def _rotations(q: Question) -> list[Question]:
    """The question with its options rotated k = 0..n-1 places: rotation k shows original option (i+k) % n
    at position i."""
    texts, n = list(q.options.values()), len(q.options)
    return [replace(q, id=f"{q.id}#r{k}", options={LETTERS[i]: texts[(i + k) % n] for i in range(n)},
                    answer=LETTERS[(LETTERS.index(q.answer) - k) % n] if q.answer else None) for k in range(n)]


def _unrotate(q: Question, k: int, letter: str | None) -> str | None:
    """The original letter of the option shown at ``letter`` in rotation ``k``.

    >>> _unrotate(Question("1", "q", dict(zip("ABCD", "wxyz"))), 1, "A")
    'B'
    """
    if letter is None:
        return None
    return LETTERS[(LETTERS.index(letter) + k) % len(q.options)]


def _distribution(values: list, keys: list[str]) -> dict[str, float]:
    counts = Counter(values)
    total = max(len(values), 1)
    return {key: round(counts.get(key, 0) / total, 4) for key in keys if key != "none" or counts.get(key)}


def _first_batch_size(model) -> int:
    """A starting batch size: from free GPU memory (halved on out-of-memory later), or 16 on CPU."""
    import torch

    if not torch.cuda.is_available() or not hasattr(model, "config"):  # a CPU, or llama.cpp (one at a time)
        return 16
    free, _ = torch.cuda.mem_get_info()
    # ~150-token prompts of a 7B model need well under 64 MiB of activations each at inference.
    return int(max(1, min(256, free // (64 * 2**20))))


def _empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


EVAL_FILES = ("predictions.csv", "predictions.csv.settings.json", "predictions.jsonl", "metrics.json",
              "confusion.png")


def evaluate_file(model, tokenizer, questions: list[Question], out_dir: Path, settings: PredictSettings,
                  prompt=None, resume: bool = False, progress: bool = True, about: dict | None = None) -> dict:
    """Predict labelled ``questions`` into ``out_dir`` (predictions.csv and .jsonl), then write metrics.json
    (with ``about``: what was evaluated, and how) and confusion.png. Returns the metrics. In score mode the
    metrics count ``ties``: answers drawn among letters whose logits were exactly equal; ``shortened`` counts
    the questions cut to fit the model's context."""
    from ..outputs import write_text
    from ..plots import plot_confusion

    settings = replace(settings, raw=out_dir / "predictions.jsonl")
    speed = predict_file(model, tokenizer, questions, out_dir / "predictions.csv", settings, prompt, resume, progress)
    predicted = read_predictions(out_dir / "predictions.csv", settings)
    with settings.raw.open(encoding="utf-8") as source:
        records = [json.loads(line) for line in source]
    rotations = {r["id"]: r["rotations"] for r in records if "rotations" in r} if settings.circular else None
    ties = {"ties": sum(map(count_ties, records))} if settings.mode == "score" else {}
    result = {**(about or {}), "mode": settings.mode, "circular": settings.circular,
              **metrics(questions, predicted, rotations), **ties,
              "shortened": sum(bool(r.get("shortened")) for r in records),
              "seconds": speed["seconds"], "questions_per_second": speed["questions_per_second"]}
    write_text(out_dir / "metrics.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    plot_confusion(result["confusion"], out_dir / "confusion.png",
                   title=f"{settings.mode}{', circular vote' if settings.circular else ''}: accuracy "
                         f"{result['accuracy']:.3f} on {result['questions']} questions")
    return result
