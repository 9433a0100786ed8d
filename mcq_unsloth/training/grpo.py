"""GRPO with answer-checking rewards: TRL's ``GRPOTrainer`` on the same prompts as SFT and inference.

Each question becomes ``{"prompt": [system, user], "answer": "B", "options": {...}}``; TRL samples
``grpo.num_generations`` replies per prompt and passes ``answer`` and ``options`` to the reward functions of
:mod:`mcq_unsloth.rewards`, weighted by ``grpo.reward_weights``. TRL logs each reward's mean and standard
deviation, the share of groups without reward spread (``frac_reward_zero_std``: no learning signal), KL and
completion lengths; they are drawn in ``reward_curves.png``. Every ``train.eval_steps`` the letter accuracy on
the validation questions is measured as ``eval`` would (``eval_accuracy``), and drawn beside the rewards.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .. import processes
from ..config import Config
from ..data.questions import Question, summarize
from ..data.sources import load_splits
from ..errors import ModelLoadError
from ..model.backends import fast_inference_problem, resolve_backend
from ..plots import grpo_panels, plot_curves
from ..prompts import PromptConfig, build_messages
from ..rewards import REWARDS
from .folders import eval_command, last_logged, write_history
from .steps import load_policy, train_and_save
from .trainer_settings import trainer_config

log = logging.getLogger(__name__)


def train_grpo(config: Config, run_dir: Path, resume: bool = False) -> dict:
    """Run GRPO as ``config`` says, writing checkpoints, the adapter and reward curves into ``run_dir``."""
    backend = resolve_backend(config.model.backend, training=True)  # Unsloth, when used, before trl/transformers
    from trl import GRPOTrainer

    # callbacks subclasses transformers' TrainerCallback: imported here, after the backend (Unsloth first), and
    # not when the package is
    from .callbacks import InStep, LiveHistory, McqAccuracy, TrainingRecord

    if config.grpo.fast_inference and (problem := fast_inference_problem(backend)):
        raise ModelLoadError(f"grpo.fast_inference is unavailable here: {problem}. Run without it "
                             f"(--set grpo.fast_inference=false): generation then uses transformers")
    train_questions, val_questions = load_splits(config.data.train, config.data.validation, config.data.val_fraction,
                                                 config.data.subset, config.data.seed)
    if not val_questions:
        log.warning("note: no validation questions (data.val_fraction is 0 and data.validation is unset): GRPO's "
                    "letter accuracy is not measured during training, only its rewards")
    loaded = load_policy(config, run_dir, backend,
                         vllm_memory=config.grpo.gpu_memory_utilization if config.grpo.fast_inference else None)
    names = list(config.grpo.reward_weights)  # the order of trainer_config's reward_weights list
    args = trainer_config(config, run_dir, evaluating=bool(val_questions))  # checked by run_training already
    # GRPOTrainer's own evaluation would sample replies; letter scoring is what eval reports, and cheap.
    accuracy = McqAccuracy(val_questions, config.prompt, config.train.per_device_eval_batch_size,
                           every=config.train.eval_steps)
    trainer = GRPOTrainer(
        model=loaded.model,
        reward_funcs=[REWARDS[name] for name in names],
        args=args,
        train_dataset=prompt_dataset(train_questions, config.prompt),
        processing_class=loaded.tokenizer,
        callbacks=[TrainingRecord(config, backend), InStep(), *([accuracy] if val_questions else []),
                   LiveHistory(run_dir)],
    )
    adapter_dir, checkpoint = train_and_save(trainer, loaded.tokenizer, config, backend, run_dir, val_questions,
                                             accuracy, resume)
    return _finish(trainer.state.log_history, run_dir, adapter_dir, backend, checkpoint, names, config,
                   train_questions, val_questions)


# --- helpers ------------------------------------------------------------------------------------------

def prompt_dataset(questions: list[Question], prompt: PromptConfig | None = None):
    """GRPO's dataset: each question's chat prompt, with its answer and options for the reward functions."""
    from datasets import Dataset

    return Dataset.from_list([{"id": q.id, "prompt": build_messages(q, prompt), "answer": q.answer,
                               "options": q.options} for q in questions])


def _finish(history: list[dict], run_dir: Path, adapter_dir: Path, backend: str, resumed_from,
            names: list[str], config: Config, train_questions: list[Question], val_questions: list[Question]) -> dict:
    if processes.is_main():
        write_history(history, run_dir)
        plot_curves(history, run_dir / "reward_curves.png", grpo_panels(names), title=f"GRPO {run_dir.name}")
    return {"run_dir": str(run_dir), "adapter": str(adapter_dir), "backend": backend,
            "steps": max((row.get("step", 0) for row in history), default=0),
            "resumed_from": str(resumed_from) if resumed_from else None,
            **{f"reward_{name}": last_logged(history, f"rewards/{name}/mean") for name in names},
            "kl": last_logged(history, "kl"), "eval_accuracy": last_logged(history, "eval_accuracy"),
            **eval_command(run_dir, adapter_dir, config),
            "data": {"train": summarize(train_questions), "validation": summarize(val_questions)}}
