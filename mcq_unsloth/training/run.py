"""Running a training recipe into a run folder: the one sequence the command line and the Python API share.

One writer at a time (a lock beside the folder), the folder prepared (new, replaced with ``overwrite``, or
continued with ``resume``), the resolved configuration and run record written, then SFT or GRPO. A run that
stops on bad input, a bad setting or a full disk before its first checkpoint removes its folder, so the
corrected command just runs; running out of GPU memory names what to lower and the checkpoint to resume from.
Under a launcher the main process does all of that, and every process trains (:mod:`mcq_unsloth.processes`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import shutil
import time
from pathlib import Path

from . import trainer_settings
from .. import processes
from ..cards import adapter_card, write_card
from ..config import Config, dump_yaml, grpo_batch_problem
from ..errors import ConfigError, OutOfMemory, USER_ERRORS, machine_errno
from ..model.backends import adapter_base, out_of_memory_errors, resolve_backend
from ..outputs import check_writable, exclusive
from ..records import latest_checkpoint
from .folders import prepare_run_dir, record_failed, record_finished, record_run
from .grpo import train_grpo
from .sft import train_sft

log = logging.getLogger(__name__)


def run_training(config: Config, run_dir: Path, recipe: str, *, resume: bool = False, overwrite: bool = False,
                 prepare=None) -> dict:
    """Train as ``config`` says into ``run_dir`` (``recipe`` names where the configuration came from, for the
    run record); returns the run's summary (adapter, steps, losses, accuracy, ``eval_command``, ``seconds``,
    ``processes``, ``effective_batch``, ``data``: the training and validation questions' sizes and answer
    letters), also kept in ``run.json`` and, with the recipe, in the adapter's model card (README.md).
    ``prepare(run_dir)``, when given, runs once the folder exists and before the record is written (it may store data there and return the configuration to use). A KeyboardInterrupt
    passes through, the last complete checkpoint kept.

    Under a launcher (``accelerate launch``, ``torchrun``) every process calls it: the main one alone takes the
    lock, prepares the folder and writes into it; all train, each on its share of every batch."""
    run_dir = Path(run_dir)
    check_launch(config, processes.count())  # at once, on every process alike
    resolve_backend(config.model.backend, training=True)  # Unsloth, when used, before TRL is imported
    trainer_settings.check(config, recipe)  # TRL's names, types and choices, before the folder exists
    processes.start(config.train.ddp_timeout)
    start = time.perf_counter()
    with contextlib.ExitStack() as held:
        config = processes.main_first(_open_run, held, config, run_dir, recipe, resume, overwrite, prepare)
        try:
            processes.check_same(_inputs(config), "the recipe and its data files")
            result = _run_task(config, run_dir, resume)
        except out_of_memory_errors() as error:
            last = latest_checkpoint(run_dir / "checkpoints")
            stopped = OutOfMemory(
                f"out of GPU memory ({str(error).splitlines()[0]}); last complete checkpoint: {last or 'none yet'}. "
                f"Lower train.per_device_train_batch_size (raising train.gradient_accumulation_steps to keep the "
                f"batch), model.max_seq_length"
                + (", grpo.num_generations or grpo.max_completion_length" if config.task == "grpo" else "")
                + ", then continue with resume=True")
            if processes.is_main():
                _record_failed(run_dir, stopped)
            raise stopped from None
        except Exception as error:
            if processes.is_main():
                _remove_unstarted(run_dir, error, resume)
                _record_failed(run_dir, error)
            raise
        result.update(seconds=round(time.perf_counter() - start, 1), processes=processes.count(),
                      effective_batch=config.train.effective_batch(processes.count()))
        if processes.is_main():
            record_finished(run_dir, result)
            _write_card(Path(result["adapter"]), config, result, recipe)
    return result


def _open_run(held: contextlib.ExitStack, config: Config, run_dir: Path, recipe: str, resume: bool,
              overwrite: bool, prepare) -> Config:
    """The main process's part before training: the lock (held until ``held`` closes), the folder, the stored data
    and the run record. Returns the configuration to train with."""
    check_writable(run_dir, folder=True)
    held.enter_context(exclusive(run_dir))
    prepare_run_dir(run_dir, overwrite=overwrite, resume=resume)
    try:
        if prepare is not None:
            config = prepare(run_dir)
        resolved = trainer_settings.resolved_yaml(config, run_dir, header=f"# resolved from recipe {recipe}")
        record_run(run_dir, config, resolved, recipe, resume=resume, processes=processes.count())
    except Exception as error:
        _remove_unstarted(run_dir, error, resume)
        raise
    log.info(dump_yaml(config))
    count = processes.count()
    log.info(f"batch: {config.train.per_device_train_batch_size} per device x {config.train.gradient_accumulation_steps}"
             f" accumulation x {count} process{'es' if count > 1 else ''} = {config.train.effective_batch(count)} "
             + ("completions" if config.task == "grpo" else "examples") + " per optimizer step")
    return config


def check_launch(config: Config, count: int) -> None:
    """Raise :class:`ConfigError` for what cannot run in this launch: GRPO batches that do not hold whole groups
    across ``count`` processes, the unsloth backend under FSDP or DeepSpeed, vLLM generation in several
    processes."""
    problems = []
    if problem := grpo_batch_problem(config, count):
        problems.append(problem)
    strategy = processes.strategy()
    if strategy != "ddp" and config.model.backend != "hf":
        problems.append(f"model.backend: {config.model.backend!r} trains data-parallel (DDP) only, and this launch "
                        f"asks for {strategy} (Unsloth shards neither with FSDP nor ZeRO-3, and FSDP cannot shard "
                        f"bitsandbytes' packed 4-bit weights of its models); set model.backend=hf for {strategy}, "
                        f"or launch with the ddp config")
    if strategy != "ddp" and (problem := _sharding_problem(strategy)):
        problems.append(problem)
    if config.task == "grpo" and config.grpo.fast_inference and count > 1:
        problems.append(f"grpo.fast_inference: vLLM generation in {count} processes is reported to hang (Unsloth and "
                        f"TRL issues); run it in one process, or set grpo.fast_inference=false")
    if problems:
        raise ConfigError(problems)


def _sharding_problem(strategy: str) -> str | None:
    """Why FSDP or DeepSpeed cannot run here, or None."""
    import torch

    if not torch.cuda.is_available():
        return (f"this launch asks for {strategy}, which needs GPUs (accelerate's {strategy} plugin finds no device on "
                f"a CPU machine); launch with the ddp config, or on GPUs")
    if strategy == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        return "this launch asks for DeepSpeed, which is not installed: pip install deepspeed"
    return None


def _write_card(adapter: Path, config: Config, result: dict, recipe: str) -> None:
    """The adapter's model card (:mod:`mcq_unsloth.cards`), on the base its adapter_config.json names."""
    write_card(adapter, adapter_card(adapter, dump_yaml(config), result, recipe, config.task,
                                     adapter_base(adapter) or config.model.name, config.data.language))


def _inputs(config: Config) -> str:
    """What every process must agree on: the resolved recipe and the content of its data files (a missing one
    counts as its name)."""
    files = [Path(name) for name in (config.data.train, config.data.validation)
             if name and not name.startswith(("synth:", "synth-held-out:", "shipped:"))]
    return processes.fingerprint(dump_yaml(config), *files)


def _record_failed(run_dir: Path, error: Exception) -> None:
    """A started run's folder says why it stopped (what the page's list of runs shows), when it can be written."""
    if (run_dir / "run.json").is_file():
        try:
            record_failed(run_dir, error)
        except OSError:  # a full disk, most likely: the error raised says why the run stopped all the same
            pass


def _remove_unstarted(run_dir: Path, error: Exception, resume: bool) -> None:
    """A new run that stopped on the user's input or the machine's condition before its first checkpoint leaves
    no folder behind, so the corrected command just runs."""
    ours = isinstance(error, USER_ERRORS) or machine_errno(error, (run_dir,)) is not None
    if ours and not resume and latest_checkpoint(run_dir / "checkpoints") is None:
        shutil.rmtree(run_dir, ignore_errors=True)


def _run_task(config: Config, run_dir: Path, resume: bool) -> dict:
    if config.task == "sft":
        return train_sft(config, run_dir, resume=resume)

    return train_grpo(config, run_dir, resume=resume)
