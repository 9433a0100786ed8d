"""The processes of a launch: which one this is, who writes, and the few collectives our own code needs.

The launchers are the engine: ``accelerate launch`` and ``torchrun`` start one process per device (and per
machine) and tell each its place through ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``. The local rank picks the
device; the global rank picks the writer: only rank 0 touches output folders, the others compute and wait.
Every collective here runs in the process group of accelerate's ``PartialState`` (the one the trainers use),
started with the launch's timeout, so a rank that fails ends the launch with its message instead of a hang.
Outside a launch every function is the one-process case and imports nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from .errors import ConfigError, LaunchError
from .resources import shipped_dir

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1800  # transformers' own ddp_timeout default


def count() -> int:
    """How many processes the launch has (1 outside a launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank: 0 is the main process, the one that writes."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its machine: the index of its device."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def strategy() -> str:
    """How accelerate's launcher was told to spread the model: ``fsdp``, ``deepspeed`` or ``ddp`` (also
    torchrun's and a single process's)."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return "fsdp"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true"):
        return "deepspeed"
    return "ddp"


def start(timeout_s: int = DEFAULT_TIMEOUT_S) -> None:
    """Join the launch's process group (once; nothing outside a launch): NCCL on GPUs, gloo on CPUs, with a
    timeout of ``timeout_s`` seconds on every collective. The trainers join the same group later; the
    collectives below start it with the default timeout when nothing did before."""
    if count() == 1:
        return
    import torch
    import torch.distributed as dist
    from accelerate import PartialState

    if dist.is_initialized():
        return

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank())
    PartialState(cpu=not cuda, backend=None if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    if not cuda:
        atexit.register(_stop_gloo)
        global _on_gloo
        _on_gloo = True


_on_gloo = False  # this process joined a CPU launch's gloo group (start())


def exit_process(code) -> None:
    """End this process of a launch with ``code`` (a ``SystemExit`` code). On CPUs, after leaving the gloo group
    and flushing the output, without the interpreter's teardown: even after ``destroy_process_group`` gloo's
    threads were seen to abort both processes of a finished 2-process predict at exit (SIGABRT, "terminate called
    without an active exception"), turning a launch that wrote all its outputs into a failed one."""
    if not _on_gloo:
        sys.exit(code)
    _stop_gloo(finished=code in (0, None))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def _stop_gloo(finished: bool = False) -> None:
    """Leave the gloo process group while the interpreter is whole: left to the interpreter's own teardown, gloo's
    worker threads can abort the process ("terminate called without an active exception", SIGABRT) after its work
    is done, failing a launch that succeeded (pytorch/pytorch#190489). A process that finished waits for the others
    first: one that left the group while its peer still wrote its outputs was seen to abort the same way. Not done
    for NCCL, where tearing down after a failed peer could wait for it."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    if finished:
        try:
            dist.barrier()  # within the group's timeout; a peer that failed is ended by the launcher
        except RuntimeError:  # the peer is gone (its own line says why): leave all the same
            pass
    dist.destroy_process_group()


def device_map(accelerator: bool) -> dict | str | None:
    """Where transformers puts the weights: the whole model on this process's own GPU in a data-parallel launch
    (never ``"auto"``, which spreads one model over every GPU it sees), nowhere under FSDP or DeepSpeed (they
    place the shards), ``"auto"`` for one process, else the CPU."""
    if strategy() != "ddp":
        return None
    if not accelerator:
        return "cpu"
    return {"": local_rank()} if count() > 1 else "auto"


def trainer_args() -> dict:
    """The trainer settings that make a launch on CPUs data-parallel over gloo (transformers would otherwise treat
    CPU processes as separate one-process runs); none on GPUs or outside a launch, where the defaults are right."""
    import torch

    return {"use_cpu": True, "ddp_backend": "gloo"} if count() > 1 and not torch.cuda.is_available() else {}


def main_first(action, *args):
    """Run ``action(*args)`` on the main process alone, then return its result on every process (it must
    pickle). When it raises, the main process raises it and the others a :class:`LaunchError` that points to
    it, so no process waits for one that has stopped."""
    if count() == 1:
        return action(*args)
    outcome: list = [None]
    if is_main():
        try:
            outcome = [("done", action(*args))]
        except Exception as error:
            _broadcast([("failed", f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")])
            raise
    _broadcast(outcome)
    state, value = outcome[0]
    if state == "failed":
        raise LaunchError(f"process {rank()} stops: the main process stopped ({value})")
    return value


def gather(value) -> list:
    """``value`` from every process, in rank order (a list of one outside a launch)."""
    if count() == 1:
        return [value]
    import torch.distributed as dist

    start()
    values: list = [None] * count()
    with _peers_lost():
        dist.all_gather_object(values, value)
    return values


def check_same(value, what: str) -> None:
    """Raise :class:`LaunchError` on every process unless each holds the same ``value`` (a string): ``what``
    names it ("the recipe and its data"), and the message names the processes that differ."""
    values = gather(value)
    if differ := [str(r) for r, v in enumerate(values) if v != values[0]]:
        raise LaunchError(f"the processes disagree on {what}: process{'es' if len(differ) > 1 else ''} "
                          f"{', '.join(differ)} read other values than process 0 (on another machine: a different "
                          f"file under the same path?); give every machine the same files and settings")


def fingerprint(*parts) -> str:
    """A short digest of strings, numbers and files (by content), to compare across processes."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            digest.update(part.read_bytes() if part.is_file() else b"missing:" + str(part).encode())
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()[:16]


def weights_digest(model) -> str:
    """A digest of the parameters being trained: equal on every process when data parallelism kept them in step."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters()):
        if parameter.requires_grad:
            digest.update(name.encode())
            digest.update(parameter.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def launch_command(module_args: list[str], num_processes: int, config_file: str | Path | None = None) -> list[str]:
    """The ``accelerate launch`` command that runs ``python -m mcq_unsloth MODULE_ARGS`` in ``num_processes``
    processes on this machine (``config_file``: an accelerate config, e.g. one of ``recipes/accelerate/``,
    whose strategy and machines it then follows).

    Without a config file the launch is on this machine alone, on a free port (two launches at once would
    otherwise both take accelerate's 29500):

    >>> shlex.join(launch_command(["recipe", "smoke"], 2)[1:])  # doctest: +ELLIPSIS
    '-m accelerate.commands.launch --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no --main_process_port ... --multi_gpu -m mcq_unsloth recipe smoke'
    """
    if num_processes < 1:
        raise ConfigError([f"--num-processes: at least 1, got {num_processes}"])
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes)]
    if config_file is not None:
        path = accelerate_config(config_file)
        _check_strategy_here(path)
        command += ["--config_file", str(path)]
    else:
        # Said, so that accelerate does not warn about each default; --multi_gpu is its data-parallel launcher,
        # which also starts CPU processes (without it, accelerate starts one process on a CPU machine).
        command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                    "--main_process_port", str(_free_port())]
        if num_processes > 1:
            command.append("--multi_gpu")
    return command + ["-m", "mcq_unsloth", *module_args]


def accelerate_config(name: str | Path) -> Path:
    """An accelerate config file: a path, or the name of one shipped in ``recipes/accelerate/`` (``ddp``,
    ``fsdp_qlora``, ``zero2``, ``zero3``)."""
    shipped = shipped_dir("recipes") / "accelerate"
    path = Path(name) if Path(name).is_file() else shipped / f"{name}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in shipped.glob("*.yaml")))
        raise ConfigError([f"--config-file: {name} is neither a file nor a shipped accelerate config ({names})"])
    return path


def _check_strategy_here(path: Path) -> None:
    """Refuse, before anything starts, an accelerate config whose strategy this machine cannot run."""
    import torch
    import yaml

    kind = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("distributed_type", "NO")
    if kind in ("FSDP", "DEEPSPEED") and not torch.cuda.is_available():
        raise ConfigError([f"--config-file {path.name}: {kind} needs GPUs (accelerate finds no device for it on a "
                           f"CPU machine); use the ddp config here"])
    if kind == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError([f"--config-file {path.name}: DeepSpeed is not installed (pip install deepspeed)"])


def launch(module_args: list[str], num_processes: int, config_file: str | Path | None = None) -> dict:
    """Run ``python -m mcq_unsloth MODULE_ARGS`` in ``num_processes`` processes (:func:`launch_command`,
    :func:`run_launch`) and return the JSON line its main process printed, the command's result; a launch that
    fails raises :class:`LaunchError` (the processes' own messages are on standard error)."""
    code, output = run_launch(launch_command(module_args, num_processes, config_file), capture=True)
    if code != 0:
        raise LaunchError(f"the launch of {num_processes} process(es) ended with exit code {code}; the processes' "
                          f"messages are above")
    return json.loads(next((line for line in reversed(output.splitlines()) if line.startswith("{")), "{}"))


def run_launch(command: list[str], capture: bool = False) -> tuple[int, str]:
    """Run a :func:`launch_command` as a child process, through :mod:`mcq_unsloth.launcher` (a failing process
    ends it with its own line, no launcher traceback): its exit code, and with ``capture`` what its processes wrote
    to standard output (the main process's result line), else their standard output passes to standard error, as
    their standard error does, leaving standard output to the caller's own result."""
    log.info("running: " + shlex.join(["accelerate", "launch", *command[3:]]))
    launcher = subprocess.Popen([command[0], "-m", "mcq_unsloth.launcher", *command[3:]],
                                stdout=subprocess.PIPE if capture else 2, text=True)
    try:
        output, _ = launcher.communicate()
    except KeyboardInterrupt:
        # Ctrl-C reached the launcher too, which stops its processes (they run in sessions of their own, out of
        # the terminal's reach): wait for it, rather than kill it and leave them running.
        launcher.wait()
        raise
    return launcher.returncode, output or ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _broadcast(objects: list) -> None:
    import torch.distributed as dist

    start()
    with _peers_lost():
        dist.broadcast_object_list(objects, src=0)


@contextlib.contextmanager
def _peers_lost():
    """A collective that fails because another process stopped (or went silent past the timeout) ends this one
    with one line: the other's own message says why."""
    try:
        yield
    except RuntimeError as error:  # gloo's "Connection closed by peer", NCCL's and the timeouts' errors
        raise LaunchError(f"process {rank()} stops: another process of the launch stopped or stopped answering "
                          f"(its own output says why): {str(error).splitlines()[0][:300]}") from None
