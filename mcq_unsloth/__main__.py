"""``python -m mcq_unsloth ...``: the command line, as the launchers start it (``accelerate launch -m
mcq_unsloth recipe smoke``, ``torchrun -m mcq_unsloth ...``)."""

from . import processes
from .cli.main import main

try:
    main()
except SystemExit as done:  # click ends every command this way, with its exit code
    processes.exit_process(done.code)
