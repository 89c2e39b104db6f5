"""Cold site.yml deployment vs its idempotent re-run, side by side.

    .venv/bin/python -m benchmarks.deploy [--rounds N]

Recreates the sandbox (its containers are removed: whatever was deployed
in them is lost), then per round: a cold site.yml on fresh nodes, and the
re-run right after it. Prints both times and re-run / cold (goal < 0.20).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from tests.playbook import SANDBOX_INVENTORY, run_playbook


def _timed(playbook: str, *args: str) -> float:
    start = time.perf_counter()
    run = run_playbook(playbook, SANDBOX_INVENTORY, *args)
    elapsed = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"{playbook} {' '.join(args)} failed:\n{run.output[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=1, help="cold + re-run pairs to measure")
    rounds = parser.parse_args().rounds
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    cold: list[float] = []
    rerun: list[float] = []
    for round_ in range(1, rounds + 1):
        _timed("sandbox.yml", "-e", "sandbox_state=absent")
        _timed("sandbox.yml")
        cold.append(_timed("site.yml"))
        rerun.append(_timed("site.yml"))
        print(f"round {round_}: cold {cold[-1]:.1f} s, re-run {rerun[-1]:.1f} s")
    cold_s, rerun_s = statistics.median(cold), statistics.median(rerun)
    print(f"site.yml cold     {cold_s:8.1f} s")
    print(f"site.yml re-run   {rerun_s:8.1f} s")
    print(f"re-run / cold     {rerun_s / cold_s:8.2f}   (goal < 0.20)")


if __name__ == "__main__":
    main()
