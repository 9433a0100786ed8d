"""Trainer callbacks. Imports transformers at module level: import it only after the backend is chosen
(:func:`mcq_unsloth.model.backends.resolve_backend`), so Unsloth comes first."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from transformers import TrainerCallback

from .. import processes
from ..config import Config
from ..errors import LaunchError
from ..data.questions import Question
from ..inference.scoring import correct, score_questions, share
from ..prompts import PromptConfig
from ..outputs import write_text
from ..records import PROGRESS_FILE
from .folders import write_history, write_training_record

log = logging.getLogger(__name__)


class McqAccuracy(TrainerCallback):
    """Letter-scoring accuracy on the validation questions, logged as ``eval_accuracy``: before training starts
    (step 0, the model's accuracy before any update), after each evaluation (SFT), or every ``every`` steps
    (GRPO, whose trainer is not asked to evaluate).

    It is what ``mcq-unsloth eval`` computes for the saved adapter: the same function
    (:func:`mcq_unsloth.inference.scoring.score_questions`), prompts and precision (the model as it trains, in eval
    mode). Scoring runs its own forward pass without labels, so it works whatever the backend does with logits
    during the loss computation (Unsloth's fused loss returns none). In a launch each process scores its share
    of the questions (every n-th) and the counts of right answers are added up: the accuracy on all of them.
    """

    def __init__(self, questions: list[Question], prompt: PromptConfig, batch_size: int, every: int | None = None):
        self.questions, self.prompt, self.batch_size, self.every = questions, prompt, batch_size, every

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step == 0:  # not when resuming
            self.log(state, self.measure(model, processing_class), 0, " (before training)")

    def on_evaluate(self, args, state, control, metrics=None, model=None, processing_class=None, **kwargs):
        value = self.measure(model, processing_class)
        # The trainer logged its metrics already: add ours to them (load_best_model_at_end reads them) and to
        # the log history (the curves and trainer_state.json read that).
        metrics["eval_accuracy"] = value
        self.log(state, value, state.global_step)

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.every and state.global_step % self.every == 0:
            self.log(state, self.measure(model, processing_class), state.global_step)

    def measure(self, model, tokenizer) -> float:
        mine = self.questions[processes.rank()::processes.count()]
        was_training = model.training
        model.eval()
        scored = score_questions(model, tokenizer, mine, self.prompt, self.batch_size) if mine else []
        model.train(was_training)
        right = correct(mine, [s.prediction for s in scored])
        return share(sum(processes.gather(right)), len(self.questions))

    def log(self, state, value: float, step: int, note: str = "") -> None:
        state.log_history.append({"eval_accuracy": value, "step": step})
        if processes.is_main():
            log.info(f"step {step}: eval_accuracy {value:.3f} on {len(self.questions)} validation questions{note}")

    def finish(self, trainer) -> None:
        """Log the accuracy of the model the run saves, when it is not the one evaluated last: training went on
        after the last evaluation, or the best checkpoint was loaded back. The last logged ``eval_accuracy`` is
        then always the saved adapter's."""
        state = trainer.state
        evaluated = [row["step"] for row in state.log_history if "eval_accuracy" in row]
        best = state.best_model_checkpoint if trainer.args.load_best_model_at_end else None
        if best:
            step, note = int(Path(best).name.rsplit("-", 1)[1]), " (the best checkpoint, which the run saves)"
        elif not evaluated or evaluated[-1] != state.global_step:
            step, note = state.global_step, " (the final model)"
        else:
            return
        self.log(state, self.measure(trainer.model, trainer.processing_class), step, note)


class TrainingRecord(TrainerCallback):
    """Writes the training record (:func:`mcq_unsloth.training.folders.write_training_record`) into every
    checkpoint, so a checkpoint loads for inference the way it was trained."""

    def __init__(self, config: Config, backend: str):
        self.config, self.backend = config, backend

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            write_training_record(folder, self.config, self.backend)


class InStep(TrainerCallback):
    """At the end of training in a launch, checks that every process holds the same trained weights (data
    parallelism keeps them in step; a difference would mean the adapter saved from the main process is not what
    the others trained) and says so; raises :class:`~mcq_unsloth.errors.LaunchError` when they differ."""

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if processes.count() == 1:
            return
        digests = processes.gather(processes.weights_digest(model))
        listed = ", ".join(f"process {r} {d}" for r, d in enumerate(digests))
        if len(set(digests)) > 1:
            raise LaunchError(f"the processes ended training with different weights ({listed}); the adapter would be "
                              f"process 0's alone. Report this with the launch command")
        if processes.is_main():
            log.info(f"trained weights after step {state.global_step}: {listed}: the same on every process")


class LiveHistory(TrainerCallback):
    """Writes the log history into the run folder as it grows, so a page or a second terminal draws the curves
    while training runs: ``history.jsonl`` gains each logged row within a step of its logging (rewritten whole
    when training begins, so a resumed run shows its earlier steps), and ``progress.json`` says the step, the
    steps in all and the seconds since this session began. Put it after the callbacks that add rows of their
    own (:class:`McqAccuracy`). The run rewrites ``history.jsonl`` whole when it ends."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.written, self.began, self.first_step = Path(run_dir), 0, time.monotonic(), 0

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.began, self.first_step = time.monotonic(), state.global_step
            write_history(state.log_history, self.run_dir)
            self.written = len(state.log_history)
            self._progress(state)

    def on_log(self, args, state, control, **kwargs):
        self._append(state)

    def on_evaluate(self, args, state, control, **kwargs):
        self._append(state)

    def on_step_end(self, args, state, control, **kwargs):
        self._append(state)
        if state.is_world_process_zero:
            self._progress(state)

    def _append(self, state) -> None:
        if not state.is_world_process_zero or len(state.log_history) <= self.written:
            return
        rows = "".join(json.dumps(row) + "\n" for row in state.log_history[self.written:])
        with (self.run_dir / "history.jsonl").open("a", encoding="utf-8") as out:
            out.write(rows)  # whole lines in one write: a reader sees a row whole or not at all
        self.written = len(state.log_history)

    def _progress(self, state) -> None:
        write_text(self.run_dir / PROGRESS_FILE, json.dumps({
            "step": state.global_step, "max_steps": state.max_steps, "first_step": self.first_step,
            "seconds": round(time.monotonic() - self.began, 3), "updated": time.time()}) + "\n")
