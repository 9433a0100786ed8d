"""Merging a LoRA adapter into its base model's weights with PEFT, checked against the adapter it came from.

The base is loaded in 16 or 32 bits, never 4-bit (merging into dequantized 4-bit weights bakes the quantization
error in), from its local path or the local Hugging Face cache, never downloaded. Fully trained embeddings or
output layers (PEFT's ``modules_to_save``) replace the base's; when the trained output layer no longer equals
the embeddings, the merged model stops tying them. The folder written holds the weights, the tokenizer (its end
token the chat template's end of turn), the chat template and the generation config, and appears only when
complete; it is loaded back from disk and must give the adapter's letter probabilities.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..data.questions import Question
from ..errors import ExportError
from ..inference.scoring import score_questions
from ..model.backends import load_model
from ..prompts import end_of_turn

# Largest difference of a letter probability allowed between the merged model and the adapter: rounding the
# merged weights to 16 bits moved them by up to 0.022 (bfloat16) and 0.004 (float16) on the demo's adapter;
# a merge that lost the adapter moves them by as much as training did (tenths).
TOLERANCE = {"float32": 1e-4, "bfloat16": 0.05, "float16": 0.01}


def merge_adapter(adapter: str | Path, out: str | Path, questions: list[Question], prompt=None, *,
                  base: str | None = None, dtype: str = "bfloat16") -> dict:
    """Merge ``adapter`` into its base (``base`` replaces the one adapter_config.json names) loaded in
    ``dtype``, write the merged model to the folder ``out``, and compare it, loaded back, with the adapter on
    ``questions``. Raises :class:`ExportError` when they differ by more than :data:`TOLERANCE`. Returns the
    largest difference."""
    import torch

    out = Path(out)
    loaded = load_model(str(adapter), backend="hf", dtype=dtype, load_in_4bit=False, base=base)
    expected = score_questions(loaded.model, loaded.tokenizer, questions, prompt)
    merged = loaded.model.merge_and_unload()
    embeddings, output = merged.get_input_embeddings(), merged.get_output_embeddings()
    text_config = merged.config.get_text_config()
    if getattr(text_config, "tie_word_embeddings", False) and output is not None and not (
            output.weight is embeddings.weight or torch.equal(output.weight, embeddings.weight)):
        text_config.tie_word_embeddings = merged.config.tie_word_embeddings = False
    end = end_of_turn(loaded.tokenizer)
    if end is not None:
        merged.generation_config.eos_token_id = loaded.tokenizer.convert_tokens_to_ids(end)
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    merged.save_pretrained(partial)
    loaded.tokenizer.save_pretrained(partial)
    del loaded, merged
    reloaded = load_model(str(partial), backend="hf", dtype=dtype, load_in_4bit=False)
    actual = score_questions(reloaded.model, reloaded.tokenizer, questions, prompt)
    largest = max(abs(a.probabilities[x] - e.probabilities[x]) for a, e in zip(actual, expected)
                  for x in e.probabilities)
    if largest > TOLERANCE[dtype]:
        shutil.rmtree(partial)
        raise ExportError(f"the merged model's letter probabilities differ from the adapter's by up to "
                          f"{largest:.4f} (allowed {TOLERANCE[dtype]} in {dtype}); nothing was written")
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return {"merged": str(out), "dtype": dtype, "questions_compared": len(questions),
            "max_probability_difference": round(largest, 6)}
