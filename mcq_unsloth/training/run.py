"""Running a training recipe into a run folder: the one sequence the command line and the Python API share.

One writer at a time (a lock beside the folder), the folder prepared (new, replaced with ``overwrite``, or
continued with ``resume``), the resolved configuration and run record written, then SFT or GRPO. A run that
stops on bad input, a bad setting or a full disk before its first checkpoint removes its folder, so the
corrected command just runs; running out of GPU memory names what to lower and the checkpoint to resume from.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from ..config import Config, dump_yaml
from ..errors import USER_ERRORS, OutOfMemory, machine_errno
from .folders import latest_checkpoint, prepare_run_dir, record_run

log = logging.getLogger(__name__)


def run_training(config: Config, run_dir: Path, recipe: str, *, resume: bool = False, overwrite: bool = False,
                 prepare=None) -> dict:
    """Train as ``config`` says into ``run_dir`` (``recipe`` names where the configuration came from, for the
    run record); returns the run's summary (adapter, steps, losses, accuracy, ``eval_command``, ``seconds``).
    ``prepare(run_dir)``, when given, runs once the folder exists and before the record is written (it may
    store data there and return the configuration to use). A KeyboardInterrupt passes through, the last
    complete checkpoint kept."""
    from ..model.backends import out_of_memory_errors
    from ..outputs import check_writable, exclusive

    run_dir = Path(run_dir)
    check_writable(run_dir, folder=True)
    with exclusive(run_dir):
        prepare_run_dir(run_dir, overwrite=overwrite, resume=resume)
        start = time.perf_counter()
        try:
            if prepare is not None:
                config = prepare(run_dir)
            record_run(run_dir, config, recipe, resume=resume)
            log.info(dump_yaml(config))
            result = _run_task(config, run_dir, resume)
        except out_of_memory_errors() as error:
            last = latest_checkpoint(run_dir / "checkpoints")
            raise OutOfMemory(
                f"out of GPU memory ({str(error).splitlines()[0]}); last complete checkpoint: {last or 'none yet'}. "
                f"Lower train.per_device_train_batch_size (raising train.gradient_accumulation_steps to keep the "
                f"batch), model.max_seq_length"
                + (", grpo.num_generations or grpo.max_completion_length" if config.task == "grpo" else "")
                + ", then continue with --resume") from None
        except Exception as error:
            ours = isinstance(error, USER_ERRORS) or machine_errno(error, (run_dir,)) is not None
            if ours and not resume and latest_checkpoint(run_dir / "checkpoints") is None:
                shutil.rmtree(run_dir)
            raise
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def _run_task(config: Config, run_dir: Path, resume: bool) -> dict:
    if config.task == "sft":
        from .sft import train_sft

        return train_sft(config, run_dir, resume=resume)
    from .grpo import train_grpo

    return train_grpo(config, run_dir, resume=resume)
