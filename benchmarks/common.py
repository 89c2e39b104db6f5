"""Shared by the benchmarks: real MinIO/MLflow servers, and a timer."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable

from workload.localservers import Minio, minio_server, mlflow_server

__all__ = ["Minio", "median_seconds", "minio_binary", "minio_server", "mlflow_server"]


def minio_binary() -> str:
    binary = os.environ.get("LABSTACK_MINIO_BIN")
    if not binary:
        sys.exit("LABSTACK_MINIO_BIN is unset: run `make bench` (or export it, see Makefile)")
    return binary


def median_seconds(func: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
