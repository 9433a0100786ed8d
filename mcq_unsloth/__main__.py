"""``python -m mcq_unsloth ...``: the command line, as the launchers start it (``accelerate launch -m
mcq_unsloth recipe smoke``, ``torchrun -m mcq_unsloth ...``)."""

import sys

from .cli.main import main

sys.exit(main())
