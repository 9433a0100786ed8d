"""Supervised fine-tuning with the loss on the answer only: TRL's ``SFTTrainer`` on prompt-completion data.

Each question becomes ``{"prompt": [system, user], "completion": [assistant: "B"]}``; TRL renders both with
the chat template and labels every prompt token -100 (``completion_only_loss``). Evaluation adds MCQ accuracy
from letter scoring on the validation questions next to the eval loss.
"""

from __future__ import annotations

from pathlib import Path

from .. import processes
from ..config import Config
from ..data.questions import Question, summarize
from ..data.sources import load_splits
from ..errors import DataError
from ..model.backends import resolve_backend
from ..plots import SFT_PANELS, plot_curves
from ..prompts import PromptConfig, build_messages
from .folders import eval_command, last_logged, whole_run_loss, write_history
from .steps import load_policy, train_and_save
from .trainer_settings import trainer_config


def train_sft(config: Config, run_dir: Path, resume: bool = False) -> dict:
    """Run SFT as ``config`` says, writing checkpoints, the adapter and curves into ``run_dir``."""
    backend = resolve_backend(config.model.backend, training=True)  # Unsloth, when used, before trl/transformers
    from trl import SFTTrainer

    # callbacks subclasses transformers' TrainerCallback: imported here, after the backend (Unsloth first), and
    # not when the package is
    from .callbacks import InStep, LiveHistory, McqAccuracy, TrainingRecord

    train_questions, val_questions = load_splits(config.data.train, config.data.validation, config.data.val_fraction,
                                                 config.data.subset, config.data.seed)
    loaded = load_policy(config, run_dir, backend)
    args = trainer_config(config, run_dir, evaluating=bool(val_questions))  # checked by run_training already
    accuracy = McqAccuracy(val_questions, config.prompt, config.train.per_device_eval_batch_size)
    trainer = SFTTrainer(
        model=loaded.model,
        args=args,
        train_dataset=prompt_completion_dataset(train_questions, config.prompt),
        eval_dataset=prompt_completion_dataset(val_questions, config.prompt) if val_questions else None,
        processing_class=loaded.tokenizer,
        callbacks=[TrainingRecord(config, backend), InStep(), *([accuracy] if val_questions else []),
                   LiveHistory(run_dir)],
    )
    lengths = _Lengths(loaded.tokenizer, config.prompt, config.model.max_seq_length)
    lengths.check(trainer.train_dataset, train_questions, config.data.train)
    if val_questions:
        lengths.check(trainer.eval_dataset, val_questions, config.data.validation or config.data.train)
    adapter_dir, checkpoint = train_and_save(trainer, loaded.tokenizer, config, backend, run_dir, val_questions,
                                             accuracy, resume)
    return _finish(trainer.state.log_history, run_dir, adapter_dir, backend, checkpoint, config,
                   train_questions, val_questions)


# --- helpers ------------------------------------------------------------------------------------------

def prompt_completion_dataset(questions: list[Question], prompt: PromptConfig | None = None):
    """SFT's dataset: each question's chat prompt and its answer letter as the assistant's reply."""
    from datasets import Dataset

    return Dataset.from_list([_prompt_completion(q, prompt) for q in questions])


def _prompt_completion(question: Question, prompt: PromptConfig | None) -> dict:
    return {"id": question.id, "prompt": build_messages(question, prompt),
            "completion": [{"role": "assistant", "content": question.answer}]}


class _Lengths:
    """Every example trained whole, or the run stops. TRL drops an example whose answer ``max_length`` cut off
    (training on fewer than asked, silently, is worse than stopping); padding-free batches are not cut at all (TRL's
    ``max_length`` is None then) and packing cuts an example longer than a row, so an example longer than
    ``model.max_seq_length`` stops the run the same way."""

    def __init__(self, tokenizer, prompt: PromptConfig, max_seq_length: int):
        self.tokenizer, self.prompt, self.max_seq_length = tokenizer, prompt, max_seq_length

    def check(self, prepared, questions: list[Question], source: str) -> None:
        if "id" in prepared.column_names:
            kept = dict(zip(prepared["id"], map(len, prepared["input_ids"])))
        else:  # packed rows keep the token columns only: measure each example as the chat template renders it
            kept = {q.id: self._rendered_length(q) for q in questions}
        fix = "raise model.max_seq_length or shorten the question"
        lost = [q for q in questions if q.id not in kept]
        if lost:
            q = lost[0]
            raise DataError(source, f"{len(lost)} example(s) have no answer token left after truncating "
                            f"to model.max_seq_length={self.max_seq_length}, first id {q.id!r}", row=q.row or None,
                            fix=fix)
        long = [q for q in questions if kept[q.id] > self.max_seq_length]
        if long:
            q = long[0]
            raise DataError(source, f"{len(long)} example(s) are longer than model.max_seq_length="
                            f"{self.max_seq_length} tokens, which padding-free and packed batches do not cut to "
                            f"fit, first id {q.id!r} ({kept[q.id]} tokens)", row=q.row or None, fix=fix)

    def _rendered_length(self, question: Question) -> int:
        row = _prompt_completion(question, self.prompt)
        text = self.tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _finish(history: list[dict], run_dir: Path, adapter_dir: Path, backend: str, resumed_from, config: Config,
            train_questions: list[Question], val_questions: list[Question]) -> dict:
    if processes.is_main():
        write_history(history, run_dir)
        plot_curves(history, run_dir / "train_curves.png", SFT_PANELS, title=f"SFT {run_dir.name}")
    return {"run_dir": str(run_dir), "adapter": str(adapter_dir), "backend": backend,
            "steps": max((row.get("step", 0) for row in history), default=0),
            "resumed_from": str(resumed_from) if resumed_from else None,
            "train_loss": whole_run_loss(history, resumed_from), "eval_loss": last_logged(history, "eval_loss"),
            "eval_accuracy": last_logged(history, "eval_accuracy"), **eval_command(run_dir, adapter_dir, config),
            "data": {"train": summarize(train_questions), "validation": summarize(val_questions)}}
