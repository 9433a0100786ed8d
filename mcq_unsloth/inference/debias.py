"""Debiased letter scoring: the model's prior over answer positions, estimated on a few questions and divided out.

Small and 4-bit models prefer some positions whatever the options say. Following PriDe (Zheng et al., "Large
Language Models Are Not Robust Multiple Choice Selectors", ICLR 2024), the observed probability of position i is
taken as the model's prior for i times its preference for the option shown there. Asking a question in every
rotation of its options shows every option at every position once, so the mean over the rotations of
log P(i) is log prior(i) plus terms that do not depend on i: a softmax over positions gives the prior. The
priors of N questions (a seeded sample of the file, per option count) are averaged in log space; every other
question is asked once and its probabilities divided by the prior of its option count, then renormalised. The N
questions themselves are answered from their rotations' mean, as circular mode does, at N times the cost of
one question each; every other question costs what plain scoring costs.
"""

from __future__ import annotations

import functools
import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..data.questions import Question


@dataclass
class Prior:
    """The positions' prior, per option count (``"4": {"A": 0.31, ...}``), the ids of the questions it was
    estimated on and how many there were per option count. ``records`` (not saved): their circular answers."""

    by_options: dict[str, dict[str, float]]
    sample: list[str]
    questions: dict[str, int]
    records: dict[str, dict] = field(default_factory=dict, repr=False)

    @functools.cached_property
    def sampled(self) -> frozenset[str]:
        """The sample's ids as a set, looked up for every question answered."""
        return frozenset(self.sample)

    def to_json(self) -> dict:
        return {"prior": self.by_options, "questions": self.questions, "sample": self.sample}

    @classmethod
    def from_json(cls, data: dict) -> Prior:
        return cls(data["prior"], data["sample"], data["questions"])


def sample_for_prior(questions: list[Question], n: int, seed: int = 0) -> list[Question]:
    """Up to ``n`` questions of each option count, drawn with ``seed``, in the file's order.

    >>> qs = [Question(str(i), "q", dict(zip("ABCD"[:2 + i % 2], "wxyz"))) for i in range(10)]
    >>> [(q.id, len(q.options)) for q in sample_for_prior(qs, 2)]
    [('1', 3), ('5', 3), ('6', 2), ('8', 2)]
    """
    by_count: dict[int, list[int]] = defaultdict(list)
    for index, q in enumerate(questions):
        by_count[len(q.options)].append(index)
    draw = random.Random(seed)
    chosen = sorted(i for count in sorted(by_count) for i in draw.sample(by_count[count], min(n, len(by_count[count]))))
    return [questions[i] for i in chosen]


def prior_from_rotations(rotations: list[list[dict[str, float]]]) -> dict[str, float]:
    """The positions' prior from questions asked in every rotation: ``rotations[j][k]`` holds question j's
    probabilities by position in rotation k. The log probabilities are averaged over rotations and questions, then
    normalised.

    A model that gives position A twice the weight of B, whatever it holds, shows it on a question it prefers
    option x of by 3 to 1: rotation 0 (x at A) gives A 6/7, rotation 1 (x at B) A 2/5.

    >>> prior_from_rotations([[{"A": 6 / 7, "B": 1 / 7}, {"A": 2 / 5, "B": 3 / 5}]])
    {'A': 0.666667, 'B': 0.333333}
    """
    sums: dict[str, float] = defaultdict(float)
    for question in rotations:
        for probabilities in question:
            for letter, p in probabilities.items():
                sums[letter] += math.log(max(p, 1e-30)) / (len(question) * len(rotations))
    top = max(sums.values())
    weights = {letter: math.exp(value - top) for letter, value in sums.items()}
    total = sum(weights.values())
    return {letter: round(weights[letter] / total, 6) for letter in sorted(weights)}


def debiased(probabilities: dict[str, float], prior: dict[str, float]) -> dict[str, float]:
    """``probabilities`` divided by the positions' ``prior`` and renormalised.

    >>> debiased({"A": 6 / 7, "B": 1 / 7}, {"A": 2 / 3, "B": 1 / 3})
    {'A': 0.75, 'B': 0.25}
    """
    weights = {letter: p / prior[letter] for letter, p in probabilities.items()}
    total = sum(weights.values())
    return {letter: round(w / total, 12) for letter, w in weights.items()}


def prior_path(out: Path) -> Path:
    """Where an output's prior is kept, so a resume divides by the same one: ``OUT.prior.json``."""
    return out.with_name(f"{out.name}.prior.json")


def read_prior(out: Path) -> Prior | None:
    path = prior_path(out)
    return Prior.from_json(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None
