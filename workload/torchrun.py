"""torchrun that ends as its workers do when it is told to stop: 128 + the signal.

On SIGTERM (a pod deleted or evicted, a Job suspended by `labstack stop`)
torchrun's agent passes the signal to the workers, which checkpoint and exit
143 (workload.train), and then raises: torchrun's own exit status is 1,
which a Job's podFailurePolicy cannot tell from a crash. Run as
`python -m workload.torchrun ARGS...` with torchrun's arguments; any other
ending is torchrun's own.
"""

from __future__ import annotations

import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.run import main as torchrun


def main(argv: list[str] | None = None) -> int:
    try:
        torchrun(argv)
    except SignalException as stopped:
        return 128 + int(stopped.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
