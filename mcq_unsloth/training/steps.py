"""The steps SFT and GRPO share around their trainers: the policy loaded with its LoRA, and once the trainer is
built, the run folder's records, training (resumed from the last complete checkpoint when asked) and the
adapter saved with its tokenizer and training record. Each entry point (:func:`~mcq_unsloth.training.sft.
train_sft`, :func:`~mcq_unsloth.training.grpo.train_grpo`) stays one straight-line function around them."""

from __future__ import annotations

from pathlib import Path

from .. import processes
from ..config import Config
from ..data.questions import Question, write_questions
from ..model.backends import load_model, model_source
from ..records import VALIDATION_FILE
from .folders import record_trainer, resume_checkpoint, write_training_record
from .trainer_settings import library_record


def load_policy(config: Config, run_dir: Path, backend: str, vllm_memory: float | None = None):
    """The model the recipe trains, with its LoRA adapter, on ``backend`` (a ``tiny:`` model built once, into
    the run folder, by the main process)."""
    source = processes.main_first(model_source, config.model.name, run_dir)
    return load_model(source, backend=backend, dtype=config.model.dtype, load_in_4bit=config.model.load_in_4bit,
                      max_seq_length=config.model.max_seq_length, lora=config.lora, seed=config.train.seed,
                      gradient_checkpointing=config.train.gradient_checkpointing, vllm_memory=vllm_memory)


def train_and_save(trainer, tokenizer, config: Config, backend: str, run_dir: Path, val_questions: list[Question],
                   accuracy, resume: bool) -> tuple[Path, str | None]:
    """Record the validation questions and the trainer's arguments as built (what the libraries made of the
    settings), train (from the last complete checkpoint with ``resume``), log the saved model's accuracy, and
    save the adapter into ``run_dir/adapter``. Returns the adapter folder and the checkpoint resumed from."""
    if processes.is_main():
        if val_questions:
            write_questions(val_questions, run_dir / VALIDATION_FILE)
        record_trainer(run_dir, library_record(trainer.args))
    checkpoint = resume_checkpoint(run_dir / "checkpoints") if resume else None
    trainer.train(resume_from_checkpoint=checkpoint)
    if val_questions:
        accuracy.finish(trainer)
    adapter_dir = run_dir / "adapter"
    trainer.save_model(str(adapter_dir))  # on every process: the trainer writes from the main one
    if processes.is_main():
        tokenizer.save_pretrained(str(adapter_dir))
        write_training_record(adapter_dir, config, backend)
    return adapter_dir, checkpoint
