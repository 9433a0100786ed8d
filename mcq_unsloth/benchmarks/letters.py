"""How the ways of reading letters compare on one model and one labelled file, side by side in one run: plain
scoring, debiased scoring (for each N asked), and circular scoring combined by vote and by mean probability.

A model near chance (SmolLM2-135M on the shipped Chinese questions) says little through its accuracy; the
predicted letters' distribution against the gold one, and agreement with the circular answer (what the model
prefers once positions cannot matter), say whether a method removed the position bias.
"""

from __future__ import annotations

import time
from collections import Counter

from ..data.questions import Question
from ..data.sources import load_questions
from ..errors import ConfigError, DataError
from ..inference.answering import Answers, PredictSettings, estimate_prior, metrics
from ..inference.loading import Model, load


def bench_letters(model, data="shipped:mcq_zh.csv", *, debias=(16, 32), seed: int = 0, batch_size: int | None = None,
                  backend: str = "auto", dtype: str = "auto", load_in_4bit: bool | None = None):
    """Plain, debiased (once for each N of ``debias``, the prior estimated on questions drawn with ``seed``) and
    circular (vote and mean) letter scoring of one model on one labelled file (anything
    :func:`~mcq_unsloth.load_questions` reads), side by side, as a ``pandas.DataFrame`` (:func:`compare_letters`'s
    rows); ``attrs``: ``about`` (model, backend, precision, data) and ``table`` (the Markdown table ``mcq-unsloth
    bench letters`` prints). ``model``: a folder, adapter, Hub id or .gguf file, or a loaded
    :class:`~mcq_unsloth.Model`.

    >>> print(mu.bench_letters("runs/smoke/adapter", debias=[16]).attrs["table"])     # doctest: +SKIP
    """
    import pandas as pd

    if any(n < 1 for n in debias):
        raise ConfigError([f"debias: sizes must be at least 1, got {list(debias)}"])
    questions = load_questions(data)
    if any(q.answer is None for q in questions):
        raise DataError(str(data), "bench letters needs answers, and this file has none", column="answer",
                        fix="give a labelled file")
    loaded = model if isinstance(model, Model) else load(str(model), backend=backend, dtype=dtype,
                                                          load_in_4bit=load_in_4bit)
    rows = compare_letters(loaded.engine, questions, list(debias), seed, loaded.plan.prompt, batch_size)
    frame = pd.DataFrame(rows)
    frame.attrs.update(about=f"model {loaded.plan.source}, backend {loaded.backend}, precision {loaded.precision}, "
                             f"{len(questions)} questions of {data}, debias seed {seed}",
                       table=letters_table(rows, questions))
    return frame


def compare_letters(model, questions: list[Question], debias: list[int], seed: int = 0, prompt=None,
                    batch_size: int | None = None) -> list[dict]:
    """One row per method: ``method``, ``accuracy``, ``letters`` (the predicted letters' shares), ``agreement``
    (with the circular mean's answers), ``asked`` (prompts put to the model) and ``seconds``. ``model`` is an
    engine (:attr:`mcq_unsloth.Model.engine`)."""
    start = time.perf_counter()
    circular = Answers(model, questions, PredictSettings(circular=True, batch_size=batch_size), prompt,
                       progress=False).records()
    circular_seconds = time.perf_counter() - start
    answers = {"circular mean": {i: r["prediction"] for i, r in circular.items()},
               "circular vote": {i: r["vote"] for i, r in circular.items()}}
    rotations = sum(len(q.options) for q in questions)
    rows = []
    start = time.perf_counter()
    plain = Answers(model, questions, PredictSettings(batch_size=batch_size), prompt, progress=False).records()
    rows.append(("plain", {i: r["prediction"] for i, r in plain.items()}, len(questions),
                 time.perf_counter() - start))
    for n in debias:
        start = time.perf_counter()
        prior = estimate_prior(model, questions, n, seed, prompt, batch_size)
        records = Answers(model, questions, PredictSettings(batch_size=batch_size, debias=n, debias_seed=seed),
                          prompt, progress=False, prior=prior).records()
        asked = len(questions) + sum(len(q.options) - 1 for q in questions if q.id in prior.sampled)
        rows.append((f"debiased, N={n}", {i: r["prediction"] for i, r in records.items()}, asked,
                     time.perf_counter() - start))
    rows += [(name, answers[name], rotations, circular_seconds) for name in ("circular vote", "circular mean")]
    reference = answers["circular mean"]
    return [{"method": name, "accuracy": metrics(questions, got)["accuracy"],
             "letters": _shares(got.values(), questions),
             "agreement": round(sum(got[i] == reference[i] for i in reference) / len(reference), 4),
             "asked": asked, "seconds": round(seconds, 1)}
            for name, got, asked, seconds in rows]


def letters_table(rows: list[dict], questions: list[Question]) -> str:
    """The rows of :func:`compare_letters` as a Markdown table, the gold letters' shares first."""
    letters = sorted({x for q in questions for x in q.options})
    gold = _shares([q.answer for q in questions], questions)
    header = ["method", "accuracy", *[f"{x} %" for x in letters], "agrees with circular mean", "prompts asked",
              "seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
             "| gold | - | " + " | ".join(f"{100 * gold.get(x, 0):.0f}" for x in letters) + " | - | - | - |"]
    for row in rows:
        lines.append(f"| {row['method']} | {row['accuracy']:.3f} | "
                     + " | ".join(f"{100 * row['letters'].get(x, 0):.0f}" for x in letters)
                     + f" | {row['agreement']:.3f} | {row['asked']} | {row['seconds']} |")
    return "\n".join(lines)


def _shares(letters, questions) -> dict[str, float]:
    counts = Counter(letters)
    return {x: round(c / len(questions), 4) for x, c in sorted(counts.items(), key=lambda item: str(item[0]))}
