"""Answering questions in memory: the settings of a prediction, letter scoring or generation batch by batch
(halving the batch on out-of-memory), circular voting over rotated options, and the metrics of labelled
answers. :mod:`mcq_unsloth.inference.files` writes the answers to files as they come.

``circular`` asks every question once per rotation of its options (A-B-C-D, B-C-D-A, ...). In score mode the
answer is the letter of the highest probability averaged over the rotations (each mapped back to the original
letters), as contest solutions average option orders; ``combine="vote"`` (and generate mode, which has no
probabilities) takes the rotations' vote instead. :func:`metrics` reports circular accuracy, position bias and,
in score mode, the vote's accuracy beside the mean's. ``top_k`` ranks the letters of each answer, for MAP@K.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..data.questions import LETTERS, Question
from ..model.backends import out_of_memory_errors
from .debias import Prior, debiased, prior_from_rotations, sample_for_prior
from .scoring import accuracy, break_tie, fit_to_context, share


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
    combine: str = "mean"  # with circular in score mode: the rotations' mean probability, or their "vote"
    top_k: int | None = None  # score mode: also rank the K most probable letters (the "ranked" column)
    debias: int | None = None  # score mode: divide out the positions' prior, estimated on this many questions
    debias_seed: int = 0  # which questions estimate it

    def __post_init__(self):
        if self.combine not in COMBINE:
            raise ValueError(f"combine must be one of {', '.join(COMBINE)}, not {self.combine!r}")
        if self.top_k is not None and (self.mode != "score" or self.top_k < 1):
            raise ValueError(f"top_k ranks letters by probability: score mode and at least 1, not {self.top_k!r} "
                             f"in {self.mode} mode")
        if self.debias is not None and (self.mode != "score" or self.circular or self.debias < 1):
            raise ValueError(f"debias divides letter probabilities by the positions' prior: score mode without "
                             f"circular (which it replaces) and at least 1 question, not {self.debias!r} in "
                             f"{self.mode} mode{' with circular' if self.circular else ''}")

    @property
    def voting(self) -> bool:
        """Whether a circular answer is the rotations' vote (asked for, or generate mode)."""
        return self.circular and (self.combine == "vote" or self.mode == "generate")

    def record(self) -> dict:
        """What decides the answers, written beside an output and compared when it is resumed: the model, its
        precision and prompt (``produced_by``), the mode, circular asking and how its rotations combine, the
        ranking and, when generating, the reply length. Batch size, columns and ``on_long`` do not change an answer
        and are left out."""
        return {**(self.produced_by or {}), "mode": self.mode, "circular": self.circular,
                **({"combine": "vote" if self.voting else "mean"} if self.circular else {}),
                **({"top_k": self.top_k} if self.top_k else {}),
                **({"debias": self.debias, "debias_seed": self.debias_seed} if self.debias else {}),
                **({"max_new_tokens": self.max_new_tokens} if self.mode == "generate" else {})}

    def columns(self) -> list[str]:
        """The header of the CSV it writes."""
        return [self.id_column, self.answer_column, *(["ranked"] if self.top_k else [])]


COMBINE = ("mean", "vote")


@dataclass
class Prediction:
    id: str
    answer: str | None
    rotations: list[str | None] = field(default_factory=list)  # predicted position letter in each rotation
    ranked: list[str] = field(default_factory=list)  # with top_k: the K most probable letters, best first

    def row(self) -> list[str]:
        """Its CSV row: id, answer ('' for none) and, when ranked, the letters separated by spaces."""
        return [self.id, self.answer or "", *([" ".join(self.ranked)] if self.ranked else [])]


class Answers:
    """The answers to ``questions``, batch by batch: iterating yields each batch's ``(Prediction, raw record)``
    pairs, in order, as soon as the model gives them. Prompts longer than the model's context are shortened (or
    refused with ``settings.on_long == "error"``) before anything runs; out of memory halves the batch and tries
    again. Afterwards ``batch_size`` is the size that worked and ``shortened`` the ids whose text was cut.
    ``done`` questions answered before (a resumed file) start the progress bar. With ``settings.debias``,
    ``prior`` (:class:`~mcq_unsloth.inference.debias.Prior`) is divided out of every question but those it was
    estimated on, which are answered from their rotations."""

    def __init__(self, model, questions: list[Question], settings: PredictSettings, prompt=None,
                 progress: bool = True, done: int = 0, prior=None):
        """``model``: a :class:`~mcq_unsloth.inference.transformers_model.TransformersModel` or a
        :class:`~mcq_unsloth.inference.llamacpp.GgufModel` (what :attr:`mcq_unsloth.Model.engine` gives)."""
        room = settings.max_new_tokens if settings.mode == "generate" else 0
        self.questions, shortened = fit_to_context(model.context_length(), model.tokenizer, questions, prompt, room,
                                                   settings.circular, settings.on_long)
        self.shortened = set(shortened)
        self.model, self.settings, self.prompt, self.prior = model, settings, prompt, prior
        self.progress, self.done = progress, done
        self.batch_size = settings.batch_size or model.first_batch_size()

    def __iter__(self):
        from tqdm.auto import tqdm

        pending, settings = self.questions, self.settings
        # In score mode the start every prompt shares runs through the model once, for all chunks.
        prefix = (self.model.prompt_prefix(_asked(pending, settings), self.prompt)
                  if settings.mode == "score" and len(pending) > 1 else None)
        with tqdm(total=self.done + len(pending), initial=self.done, unit="q", disable=not self.progress,
                  desc=settings.mode) as bar:
            position = 0
            while position < len(pending):
                first = pending[position]
                rotated = settings.circular or (self.prior is not None and first.id in self.prior.sampled)
                per_question = len(first.options) if rotated else 1
                chunk = pending[position:position + max(1, self.batch_size // per_question)]
                try:
                    results = _answer(self.model, chunk, settings, self.prompt, self.batch_size, prefix, self.prior)
                except out_of_memory_errors() as error:
                    if self.batch_size == 1:
                        raise
                    self.batch_size //= 2
                    bar.write(f"out of memory ({type(error).__name__}); batch size now {self.batch_size}")
                    _empty_cache()
                    continue
                for prediction, record in results:
                    if prediction.id in self.shortened:
                        record["shortened"] = True
                yield results
                position += len(chunk)
                bar.update(len(chunk))

    def records(self) -> dict[str, dict]:
        """Every question's raw record, by id: all of them answered now."""
        return {record["id"]: record for results in self for _, record in results}


def evaluation(questions: list[Question], records: dict[str, dict], settings: PredictSettings,
               seconds: float | None = None, rate: float | None = None, about: dict | None = None) -> dict:
    """The metrics ``eval`` reports for labelled ``questions`` from their raw records (by id): what was evaluated
    (``about``), the mode, :func:`metrics`, in score mode the exact ``ties``, how many were ``shortened``, and
    the speed."""
    mine = [records[q.id] for q in questions if q.id in records]
    predicted = {record["id"]: record.get("prediction") for record in mine}
    rotations = {r["id"]: r["rotations"] for r in mine if "rotations" in r} if settings.circular else None
    ties = {"ties": sum(map(count_ties, mine))} if settings.mode == "score" else {}
    extra = {}
    if settings.circular and settings.mode == "score":
        extra["combine"] = "vote" if settings.voting else "mean"
        votes = {r["id"]: r.get("vote") for r in mine if "vote" in r}
        extra["vote_accuracy"] = metrics(questions, votes)["accuracy"] if votes else None
    if settings.top_k:
        ranked = {r["id"]: r.get("ranked") or [r.get("prediction")] for r in mine}
        extra[f"map@{settings.top_k}"] = map_at_k(questions, ranked, settings.top_k)
    return {**(about or {}), "mode": settings.mode, "circular": settings.circular,
            **metrics(questions, predicted, rotations), **extra, **ties,
            "shortened": sum(bool(r.get("shortened")) for r in mine),
            "seconds": seconds, "questions_per_second": rate}


def answers_frame(questions: list[Question], records: dict[str, dict], settings: PredictSettings):
    """A ``pandas.DataFrame`` of the answers, one row per question in the order of ``questions``: ``id``,
    ``answer`` (None where no letter could be read), then in score mode ``prob_A``, ``prob_B``... (with
    ``circular``, each letter's probability averaged over the rotations) and in generate mode ``raw`` (the reply;
    with ``circular``, the first rotation's). A question without a record (resumed from a file written without
    raw records) has its answer only."""
    import pandas as pd

    letters = sorted({x for q in questions for x in q.options})
    rows = []
    for q in questions:
        record = records.get(q.id, {})
        row = {"id": q.id, "answer": record.get("prediction")}
        if settings.top_k:
            row["ranked"] = " ".join(record["ranked"]) if "ranked" in record else None
        if settings.mode == "score":
            row.update({f"prob_{x}": p for x, p in _probabilities(q, record).items()})
        else:
            row["raw"] = record.get("text", (record.get("details") or [{}])[0].get("text"))
        rows.append(row)
    columns = ["id", "answer", *(["ranked"] if settings.top_k else []),
               *([f"prob_{x}" for x in letters] if settings.mode == "score" else ["raw"])]
    return pd.DataFrame(rows, columns=columns)


def _probabilities(q: Question, record: dict) -> dict[str, float]:
    """A record's letter probabilities in the question's own letters: with rotations, their mean."""
    if "probabilities" in record:
        return record["probabilities"]
    return rotation_mean(record.get("details") or [])


def rotation_mean(details: list[dict]) -> dict[str, float]:
    """The letter probabilities of a circular record's rotations (one per option; rotation k shows original
    option i+k at position i), each mapped back to the original letter and averaged.

    >>> rotation_mean([{"probabilities": {"A": 0.7, "B": 0.3}}, {"probabilities": {"A": 0.4, "B": 0.6}}])
    {'A': 0.65, 'B': 0.35}
    """
    total: Counter = Counter()
    for k, detail in enumerate(details):
        for letter, p in detail.get("probabilities", {}).items():
            total[LETTERS[(LETTERS.index(letter) + k) % len(details)]] += p / len(details)
    return {letter: round(p, 12) for letter, p in sorted(total.items())}


def map_at_k(questions: list[Question], ranked: dict[str, list], k: int) -> float:
    """Mean average precision at ``k`` with one right answer per question: 1/rank of the gold letter among the
    first ``k`` ranked ones, 0 when it is not there, averaged over the questions that were answered.

    >>> qs = [Question(str(i), "q", dict(zip("ABCD", "wxyz")), "B") for i in range(3)]
    >>> map_at_k(qs, {"0": ["B", "A", "C"], "1": ["A", "B", "C"], "2": ["A", "C", "D"]}, 3)  # (1 + 1/2 + 0) / 3
    0.5
    """
    answered = [q for q in questions if q.id in ranked]
    total = sum(1 / (list(ranked[q.id][:k]).index(q.answer) + 1) for q in answered if q.answer in ranked[q.id][:k])
    return round(total / max(len(answered), 1), 4)


def count_ties(record: dict) -> int:
    """How many answers of a raw record (a question, or each rotation of a circular one) were drawn among letters
    that tied exactly for the highest logit."""
    return sum(1 for r in record.get("details", [record]) if r.get("tied"))


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
        "accuracy": accuracy(scored, [predicted[q.id] for q in scored]),
        "unparseable": share(sum(predicted[q.id] is None for q in scored), len(scored)),
        "predicted": _distribution([predicted[q.id] or "none" for q in scored], letters + ["none"]),
        "gold": _distribution([q.answer for q in scored], letters),
        "confusion": {gold: confusion[gold] for gold in sorted(confusion)},
    }
    if rotations:
        right = [q for q in scored if q.id in rotations]
        result["circular_accuracy"] = share(sum(
            all(_unrotate(q, k, letter) == q.answer for k, letter in enumerate(rotations[q.id])) for q in right
        ), len(right))
        positions = [letter for q in right for letter in rotations[q.id] if letter]
        result["position_bias"] = _distribution(positions, letters)
    return result


def _answer(model, chunk: list[Question], settings: PredictSettings, prompt, batch_size: int, prefix=None,
            prior=None):
    """(Prediction, raw record) for each question of the chunk, in order. With a ``prior`` (debiased scoring),
    the questions it was estimated on are answered from their rotations (their records kept in it when they
    are), the others divided by it."""
    if prior is not None:
        return _answer_debiased(model, chunk, settings, prompt, batch_size, prefix, prior)
    asked = _asked(chunk, settings)
    if settings.mode == "score":
        outputs = model.score(asked, prompt, batch_size, prefix)
    else:
        outputs = model.generate(asked, prompt, batch_size, settings.max_new_tokens)
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
            record = {"id": q.id, **mine_records[0]}
            results.append((_ranked(Prediction(q.id, mine[0].prediction), record.get("probabilities"), settings,
                                    record), record))
            continue
        positions = [o.prediction for o in mine]
        votes = Counter(_unrotate(q, k, letter) for k, letter in enumerate(positions) if letter)
        weight = Counter()  # score mode: equal votes go to the larger summed probability of the original letter
        for k, output in enumerate(mine):
            for letter, p in getattr(output, "probabilities", {}).items():
                weight[_unrotate(q, k, letter)] += p
        vote = _vote(q.id, votes, weight)
        record = {"id": q.id, "prediction": vote, "rotations": positions, "details": mine_records}
        mean = None
        if settings.mode == "score":
            mean = rotation_mean(mine_records)
            record["vote"] = vote
            if not settings.voting:
                record["prediction"] = _best(q.id, mean)
        results.append((_ranked(Prediction(q.id, record["prediction"], positions), mean, settings, record), record))
    return results


def _answer_debiased(model, chunk: list[Question], settings: PredictSettings, prompt, batch_size: int, prefix,
                     prior) -> list:
    sample = prior.sampled
    sampled = [q for q in chunk if q.id in sample and q.id not in prior.records]
    circular = replace(settings, circular=True, debias=None, top_k=None)
    rotated = {p.id: r for p, r in _answer(model, sampled, circular, prompt, batch_size, prefix)} if sampled else {}
    plain = [q for q in chunk if q.id not in sample]
    scored = model.score(plain, prompt, batch_size, prefix) if plain else []
    observed = {q.id: output for q, output in zip(plain, scored)}
    results = []
    for q in chunk:
        if q.id in sample:
            record = {**(prior.records.get(q.id) or rotated[q.id]), "prior_sample": True}
            probabilities = rotation_mean(record["details"])
        else:
            output, divided_by = observed[q.id], prior.by_options[str(len(q.options))]
            probabilities = debiased(output.probabilities, divided_by)
            record = {"id": q.id, "observed": output.probabilities, "prior": divided_by,
                      **({"tied": output.tied} if output.tied else {})}
        record.update(prediction=_best(q.id, probabilities), probabilities=probabilities)
        results.append((_ranked(Prediction(q.id, record["prediction"]), probabilities, settings, record), record))
    return results


def _best(question_id: str, probabilities: dict[str, float]) -> str | None:
    """The most probable letter; exact ties drawn with the question's id as the seed.

    >>> _best("q", {"A": 0.2, "B": 0.5, "C": 0.3}), _best("q", {})
    ('B', None)
    """
    if not probabilities:
        return None
    top = max(probabilities.values())
    return break_tie(question_id, sorted(x for x, p in probabilities.items() if p == top))


def _ranked(prediction: Prediction, probabilities: dict[str, float] | None, settings: PredictSettings,
            record: dict) -> Prediction:
    """The prediction with its ``top_k`` letters (its answer first, then by falling probability), also kept in its
    raw ``record``, when asked."""
    if settings.top_k and probabilities:
        rest = sorted((x for x in probabilities if x != prediction.answer), key=lambda x: -probabilities[x])
        first = [prediction.answer] if prediction.answer else []
        prediction.ranked = record["ranked"] = (first + rest)[:settings.top_k]
    return prediction


def _vote(question_id: str, votes: Counter, weight: Counter) -> str | None:
    """The letter with the most votes, then the most weight; a draw seeded by the question's id among letters
    equal on both, so no position is favoured.

    >>> _vote("q", Counter("AABB"), Counter({"A": 1.2, "B": 0.8})), _vote("q", Counter(), Counter())
    ('A', None)
    """
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


def _empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def estimate_prior(model, questions: list[Question], n: int, seed: int, prompt=None, batch_size: int | None = None,
                   progress: bool = False) -> Prior:
    """Ask ``n`` questions of each option count (:func:`~mcq_unsloth.inference.debias.sample_for_prior`) in every rotation and estimate the
    prior of each count (:func:`~mcq_unsloth.inference.debias.prior_from_rotations`); their circular records are kept in ``records``."""
    sample = sample_for_prior(questions, n, seed)
    circular = PredictSettings(mode="score", batch_size=batch_size, circular=True)
    records = Answers(model, sample, circular, prompt, progress).records()
    by_count: dict[int, list] = defaultdict(list)
    for q in sample:
        by_count[len(q.options)].append([detail["probabilities"] for detail in records[q.id]["details"]])
    return Prior({str(count): prior_from_rotations(found) for count, found in sorted(by_count.items())},
                 [q.id for q in sample], {str(count): len(found) for count, found in sorted(by_count.items())},
                 records)
