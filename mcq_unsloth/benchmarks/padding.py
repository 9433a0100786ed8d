"""Padded, padding-free and packed SFT batches, side by side on one model and one question file.

The examples are what SFT trains on: each question tokenized by TRL's own ``SFTTrainer`` preparation, with the
labels on the answer only. TRL's collator then builds the batches three ways: padded to the longest example
(``padding_free: false``, the default), flattened into one sequence with position ids restarting at each example
(``padding_free: true``), and first packed best-fit-decreasing into rows of ``max_length`` tokens, a batch of rows
then flattened the same way (``packing: true``, TRL's ``bfd``). Each way runs the same forward and backward passes
in rounds (the ways take turns, so a slower minute of the machine falls on all of them), and the table reports
real (non-pad) tokens per second, the share of padding per step and how far each example's loss is from its loss
in the padded batch: the flattened ways are only worth having if that is zero, that is if the attention keeps the
examples apart.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from ..data.questions import Question
from ..data.sources import load_questions
from ..errors import DataError
from ..inference.loading import load
from ..prompts import PromptConfig
from ..training.sft import prompt_completion_dataset

MODES = ("padded", "padding_free", "packed")


def bench_padding(model, data=("shipped:mcq_zh.csv", "shipped:reasoning_zh.tsv"), *, count: int = 64,
                  batch_size: int = 8, pack_length: int = 512, rounds: int = 3, seed: int = 0, backend: str = "auto",
                  dtype: str = "auto"):
    """SFT batches padded, padding-free and packed (rows of ``pack_length`` tokens), side by side on the model
    folder ``model`` and ``count`` labelled questions drawn evenly from ``data`` (one file or several): share of
    padding, seconds a step and real (non-pad) tokens per second of a forward and backward pass, and each example's
    loss against the padded batch's, the medians of ``rounds`` rounds, as a ``pandas.DataFrame``; ``attrs``:
    ``about`` (what was measured, as one line) and ``table`` (the Markdown table ``mcq-unsloth bench padding``
    prints).

    >>> print(mu.bench_padding("runs/smollm2", count=16, rounds=1).attrs["table"])   # doctest: +SKIP
    """
    import pandas as pd

    files = [data] if isinstance(data, (str, Path)) else list(data)
    result = compare_files(str(model), [str(f) for f in files], count, batch_size, pack_length, rounds, seed,
                           backend=backend, dtype=dtype)
    frame = pd.DataFrame(result["rows"])
    frame.attrs.update(about=f"model {model}, backend {result['backend']}, {result['dtype']}, {result['questions']} "
                             f"questions of {', '.join(map(str, files))} ({result['tokens']}), batch {batch_size}, "
                             f"packed rows of {pack_length} tokens, median of {rounds} rounds",
                       table=padding_table(result["rows"]))
    return frame


def compare_files(model_dir: str, data_files: list[str], count: int, batch_size: int, pack_length: int,
                  rounds: int = 3, seed: int = 0, backend: str = "auto", dtype: str = "float32") -> dict:
    """:func:`compare` on ``count`` labelled questions drawn evenly from ``data_files`` in a seeded order, with the
    model at ``model_dir``: ``rows``, and what was measured (``backend``, ``dtype``, ``questions``, ``tokens``:
    the examples' length range and median)."""
    pools = []
    for name in data_files:
        questions = [q for q in load_questions(name) if q.answer is not None]
        if not questions:
            raise DataError(name, "has no answers, and SFT batches need them", fix="give a labelled file")
        random.Random(seed).shuffle(questions)
        pools.append(questions)
    chosen = [pool[i] for i in range(max(len(p) for p in pools)) for pool in pools if i < len(pool)][:count]
    loaded = load(model_dir, backend=backend, dtype=dtype)
    examples = sft_examples(loaded.model, loaded.tokenizer, chosen, loaded.plan.prompt)
    lengths = sorted(len(e["input_ids"]) for e in examples)
    rows = compare(loaded.model, examples, batch_size, loaded.tokenizer.pad_token_id, pack_length, rounds)
    return {"rows": rows, "backend": loaded.backend, "dtype": loaded.precision, "questions": len(chosen),
            "tokens": f"{lengths[0]}-{lengths[-1]} tokens, median {statistics.median(lengths):.0f}"}


def sft_examples(model, tokenizer, questions: list[Question], prompt: PromptConfig | None = None,
                 max_length: int | None = None) -> list[dict]:
    """Each question as SFT trains on it: ``input_ids`` and ``labels`` (-100 but on the answer), prepared by TRL's
    ``SFTTrainer`` from the prompt-completion dataset that :func:`~mcq_unsloth.training.sft.train_sft` gives it."""
    from trl import SFTConfig, SFTTrainer

    with tempfile.TemporaryDirectory() as folder:
        args = SFTConfig(output_dir=folder, max_length=max_length, completion_only_loss=True, report_to=[],
                         dataloader_num_workers=0)
        trainer = SFTTrainer(model=model, args=args, train_dataset=prompt_completion_dataset(questions, prompt),
                             processing_class=tokenizer)
    return [{"input_ids": list(row["input_ids"]), "labels": list(row["labels"])} for row in trainer.train_dataset]


def batches(examples: list[dict], mode: str, batch_size: int, pad_token_id: int, pack_length: int) -> list[dict]:
    """The examples as TRL's collator batches them in ``mode`` (one of :data:`MODES`); ``packed`` first packs them
    into rows of ``pack_length`` tokens (TRL's ``pack_dataset``, best fit decreasing), ``batch_size`` rows a batch,
    which the collator flattens into one sequence as it does examples."""
    from datasets import Dataset
    from trl.data_utils import pack_dataset
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    collate = DataCollatorForLanguageModeling(pad_token_id=pad_token_id, padding_free=mode != "padded")
    rows = examples
    if mode == "packed":
        rows = list(pack_dataset(Dataset.from_list(examples), pack_length, strategy="bfd"))
    return [collate(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]


def example_losses(model, batch: dict) -> dict[tuple, float]:
    """Each example's mean loss over its labelled tokens, keyed by its token ids (so the same example can be found
    in a batch built another way). A flattened batch is cut where its position ids restart."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        logits = model(**_model_inputs(batch)).logits.float()
    token_loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), batch["labels"][:, 1:], ignore_index=-100,
                                 reduction="none")
    out = {}
    for ids, losses, keep in _examples(batch, token_loss):
        out[tuple(ids.tolist())] = float(losses[keep].mean())
    return out


def compare(model, examples: list[dict], batch_size: int, pad_token_id: int, pack_length: int,
            rounds: int = 3, progress: bool = True) -> list[dict]:
    """One row per mode: ``mode``, ``steps``, ``real_tokens`` and ``padding`` (the share of a step's tokens that
    are padding, over all steps), ``seconds_per_step`` and ``real_tokens_per_s`` (forward and backward, the
    median of ``rounds``), ``max_loss_difference`` (per example, against the padded batches)."""
    from tqdm.auto import tqdm

    built = {mode: batches(examples, mode, batch_size, pad_token_id, pack_length) for mode in MODES}
    losses = {mode: {} for mode in MODES}
    for mode in MODES:
        for batch in built[mode]:
            losses[mode].update(example_losses(model, batch))
    seconds = {mode: [] for mode in MODES}
    with tqdm(total=rounds * sum(map(len, built.values())), desc="forward and backward", unit="batch",
              disable=not progress) as bar:
        for _ in range(rounds):
            for mode in MODES:
                seconds[mode].append(_train_steps(model, built[mode], bar.update))
    rows = []
    for mode in MODES:
        real = sum(_real_tokens(b) for b in built[mode])
        total = sum(b["input_ids"].numel() for b in built[mode])
        median = statistics.median(seconds[mode])
        rows.append({"mode": mode, "steps": len(built[mode]), "real_tokens": real, "padding": 1 - real / total,
                     "seconds_per_step": median / len(built[mode]), "real_tokens_per_s": real / median,
                     "max_loss_difference": max(abs(losses[mode][k] - v) for k, v in losses["padded"].items()),
                     "examples": len(losses[mode])})
    return rows


def padding_table(rows: list[dict]) -> str:
    """The rows of :func:`compare` as a Markdown table."""
    lines = ["| batches | steps | padding | s/step | real tokens/s | max per-example loss difference |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['steps']} | {r['padding']:.0%} | {r['seconds_per_step']:.3f} | "
              f"{r['real_tokens_per_s']:.0f} | {r['max_loss_difference']:.1e} |" for r in rows]
    return "\n".join(lines) + "\n"


# --- helpers ------------------------------------------------------------------------------------------

def _model_inputs(batch: dict) -> dict:
    # TRL's SFTTrainer passes use_cache=False; with a cache transformers would not read a flattened batch's
    # position ids as separate sequences, and the examples would attend to each other.
    return {**{k: v for k, v in batch.items() if k != "labels"}, "use_cache": False}


def _examples(batch: dict, token_loss):
    """Per example: its token ids, the loss of predicting each token of its row and which of those are its own
    labelled ones (the loss at index t predicts token t + 1)."""
    labels = batch["labels"][:, 1:]
    for row in range(batch["input_ids"].shape[0]):
        length = _row_length(batch, row)
        if "attention_mask" in batch:
            starts = [0]
        else:
            starts = (batch["position_ids"][row, :length] == 0).nonzero().flatten().tolist()
        for start, end in zip(starts, starts[1:] + [length]):
            keep = labels[row] != -100
            keep[:start] = False
            keep[end - 1:] = False
            yield batch["input_ids"][row, start:end], token_loss[row], keep


def _row_length(batch: dict, row: int) -> int:
    """How many of a row's tokens are examples' own: the rest is padding at its end."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"][row].sum())
    # Padding has position id 0 throughout, and every example has two tokens or more: its last has a position above 0.
    return int((batch["position_ids"][row] != 0).nonzero().max()) + 1


def _real_tokens(batch: dict) -> int:
    return sum(_row_length(batch, row) for row in range(batch["input_ids"].shape[0]))


def _train_steps(model, built: list[dict], done) -> float:
    """Seconds for a forward and backward pass over every batch (the gradients are dropped); ``done()`` after each."""
    model.train()
    seconds = 0.0
    for batch in built:
        start = time.perf_counter()
        loss = model(**_model_inputs(batch), labels=batch["labels"]).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        seconds += time.perf_counter() - start
        done()
    return seconds
