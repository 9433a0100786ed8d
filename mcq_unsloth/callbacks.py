"""Trainer callbacks. Imports transformers at module level: import it only after the backend is chosen
(:func:`mcq_unsloth.models.resolve_backend`), so Unsloth comes first."""

from __future__ import annotations

import sys

from transformers import TrainerCallback

from .data import Question
from .inference import accuracy, score_questions
from .prompts import PromptConfig


class McqAccuracy(TrainerCallback):
    """After each evaluation, score the validation questions' letters and log ``eval_accuracy``.

    Scoring runs its own forward pass without labels, so it works whatever the backend does with logits
    during the loss computation (Unsloth's fused loss returns none).
    """

    def __init__(self, questions: list[Question], prompt: PromptConfig):
        self.questions, self.prompt = questions, prompt

    def on_evaluate(self, args, state, control, metrics=None, model=None, processing_class=None, **kwargs):
        was_training = model.training
        model.eval()
        scored = score_questions(model, processing_class, self.questions, self.prompt,
                                 args.per_device_eval_batch_size)
        model.train(was_training)
        value = round(accuracy(self.questions, [s.prediction for s in scored]), 4)
        # The trainer logged its metrics already: add ours to them (load_best_model_at_end reads them) and to
        # the log history (the curves and trainer_state.json read that).
        metrics["eval_accuracy"] = value
        state.log_history.append({"eval_accuracy": value, "step": state.global_step})
        print(f"step {state.global_step}: eval_accuracy {value:.3f} on {len(self.questions)} validation questions",
              file=sys.stderr)
