"""torchrun that ends as its workers do when the run is stopped: 128 + the signal.

Two ways a node's torchrun sees its run stopped, and torchrun ends 1 in both,
which a Job's podFailurePolicy cannot tell from a crash:
- its pod is deleted, evicted or suspended (`labstack stop`): torchrun gets
  SIGTERM, passes it to the workers, which checkpoint and exit 143
  (workload.train), and raises SignalException;
- another node's pod was: every rank learns of the signal at the next step
  (workload.train all-reduces it), checkpoints and exits 128 + that signal,
  and torchrun raises ChildFailedError for workers that "failed".
Run as `python -m workload.torchrun ARGS...` with torchrun's arguments; it
ends 128 + the signal in both cases, and as torchrun does otherwise.
"""

from __future__ import annotations

import signal
import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main as torchrun

# The exits of a worker that saved a checkpoint because it was told to stop.
STOPPED = frozenset(128 + sig for sig in (signal.SIGTERM, signal.SIGUSR1))


def main(argv: list[str] | None = None) -> int:
    try:
        torchrun(argv)
    except SignalException as stopped:
        return 128 + int(stopped.sigval)
    except ChildFailedError as failed:
        codes = {failure.exitcode for failure in failed.failures.values()}
        if len(codes) == 1 and codes <= STOPPED:
            return codes.pop()
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
