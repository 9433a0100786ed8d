"""Checking a GGUF file against the Hugging Face model it was made from, with llama.cpp as the independent
implementation: the same rendered prompts must tokenize to the same ids, and the letter chosen at the answer
position (among the question's options) must agree with the float32 transformers model's.

Targets: tokenization identical on every prompt; f32, f16 and bf16 agree on every question whose top two letters
are more than ``NEAR`` apart in probability (closer ones, near-ties, are counted, not required); q8_0 aims at
98% (a warning below it); K-quants are reported only.
"""

from __future__ import annotations

from pathlib import Path

from ..data.questions import Question
from ..errors import ExportError
from ..inference.gguf_check import check_gguf
from ..inference.llamacpp import GgufModel, llama_cpp
from ..inference.scoring import score_questions
from ..model.backends import load_model
from ..prompts import render_prompt

NEAR = 0.01
EXACT_TYPES = ("f32", "f16", "bf16")


def verify_gguf(path: str | Path, reference: str | Path, questions: list[Question], prompt=None,
                progress: bool = True) -> dict:
    """Compare the GGUF file ``path`` in llama.cpp with the Hugging Face model folder ``reference`` on
    ``questions``; returns counts and the largest difference of letter probabilities."""
    from tqdm.auto import tqdm

    check_gguf(path)  # before the reference model loads: a bad file stops at once
    llama_cpp("checking a GGUF file")
    hf = load_model(str(reference), backend="hf", dtype="float32")
    expected = score_questions(hf.model, hf.tokenizer, questions, prompt)
    same_tokens = agree = near_ties = agree_beyond = 0
    largest = 0.0
    with GgufModel(path) as gguf_model:
        letter_ids = gguf_model.letter_ids("".join(sorted({x for q in questions for x in q.options})))
        for question, reference_scored in tqdm(list(zip(questions, expected)), desc=f"verify {Path(path).name}",
                                               unit="q", disable=not progress):
            text = render_prompt(hf.tokenizer, question, prompt)
            ids = gguf_model.token_ids(text)
            same_tokens += ids == hf.tokenizer(text, add_special_tokens=False)["input_ids"]
            answered = gguf_model.score_tokens(question, ids, letter_ids)
            agrees = answered.prediction == reference_scored.prediction
            agree += agrees
            top_two = sorted(reference_scored.probabilities.values(), reverse=True)[:2]
            if len(top_two) == 2 and top_two[0] - top_two[1] <= NEAR:
                near_ties += 1
            else:
                agree_beyond += agrees
            largest = max(largest, *(abs(p - reference_scored.probabilities[x])
                                     for x, p in answered.probabilities.items()))
    n = len(questions)
    return {"file": str(path), "questions": n, "tokenization_identical": same_tokens, "agreement": round(agree / n, 4),
            "near_ties": near_ties, "agreement_beyond_near_ties": f"{agree_beyond}/{n - near_ties}",
            "max_probability_difference": round(float(largest), 4)}


def check_targets(result: dict, quant: str) -> str | None:
    """Raise :class:`ExportError` when a verification shows a faulty file: prompts tokenized differently, or an
    unquantized file (f32, f16, bf16) answering differently beyond near-ties. A q8_0 file below 98% agreement
    is returned as a warning instead: its rounding, not the conversion, moves letters whose probabilities are
    close (SmolLM2 does that; llama.cpp's own q8_0 of it is bit for bit ours)."""
    n = result["questions"]
    problems = []
    if result["tokenization_identical"] != n:
        problems.append(f"llama.cpp tokenized {n - result['tokenization_identical']} of {n} prompts differently")
    agreed, asked = map(int, result["agreement_beyond_near_ties"].split("/"))
    if quant in EXACT_TYPES and agreed != asked:
        problems.append(f"{asked - agreed} of {asked} answers that are not near-ties differ")
    if problems:
        raise ExportError(f"{result['file']} does not answer like its source: {'; '.join(problems)}")
    if quant == "q8_0" and result["agreement"] < 0.98:
        return (f"{result['file']}: q8_0 agrees on {result['agreement']:.1%} of the questions, below the 98% aimed "
                f"at; the model's letter probabilities are closer than q8_0's rounding can keep apart")
    return None
