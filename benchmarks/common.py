"""Shared by the benchmarks: real MinIO/MLflow servers, a timer, and the table
each benchmark's figures end up in (`python -m benchmarks` prints them all)."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workload.localservers import Minio, minio_server, mlflow_server

__all__ = [
    "Minio",
    "Row",
    "median_seconds",
    "minio_binary",
    "minio_server",
    "mlflow_server",
    "print_table",
    "seconds",
]

REPO = Path(__file__).resolve().parents[1]


def minio_binary() -> str:
    """LABSTACK_MINIO_BIN (the Makefile exports it), else the binary make builds."""
    binary = os.environ.get("LABSTACK_MINIO_BIN")
    if not binary:
        pins = dict(
            line.split("=", 1)
            for line in (REPO / "versions.env").read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
        cache = os.environ.get("LABSTACK_CACHE", Path.home() / ".cache" / "labstack")
        binary = f"{cache}/bin/minio-{pins['MINIO_VERSION']}"
    if not Path(binary).is_file():
        sys.exit(f"no MinIO binary at {binary}: `make bench` builds it")
    return binary


def seconds(func: Callable[[], object], repeats: int) -> list[float]:
    """Wall time of each of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return times


def median_seconds(func: Callable[[], object], repeats: int) -> float:
    return statistics.median(seconds(func, repeats))


@dataclass(frozen=True)
class Row:
    """One line of the summary: a figure, and its ratio to the baseline named in `note`."""

    bench: str
    what: str
    figure: str
    ratio: str = ""
    note: str = ""


def print_table(rows: list[Row]) -> None:
    """The rows at 80 columns: benchmark, what, figure, ratio, note."""
    widths = (8, 26, 12, 6, 24)
    line = "{:<8} {:<26} {:>12} {:>6} {:<24}"
    print()
    print(line.format("bench", "what", "figure", "ratio", "to (goal)").rstrip())
    print(" ".join("-" * w for w in widths))
    for row in rows:
        print(line.format(row.bench, row.what, row.figure, row.ratio, row.note).rstrip())
