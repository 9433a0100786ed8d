"""accelerate's launcher as :func:`mcq_unsloth.processes.run_launch` runs it: ``python -m mcq_unsloth.launcher
ARGS`` is ``accelerate launch ARGS``, except when a process fails. Then torch's launcher raises, and prints, its
own traceback and failure table on top of the process's one-line message; here the launch ends with that
process's exit code and its message alone."""

from __future__ import annotations

import sys


def main() -> int:
    from accelerate.commands.launch import main as launch
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        launch()
    except ChildFailedError as error:
        _, first = error.get_first_failure()
        return first.exitcode if first.exitcode > 0 else 128 - first.exitcode  # killed by a signal: 128 + it
    return 0


if __name__ == "__main__":
    sys.exit(main())
