#!/opt/mlflow/venv/bin/python
"""MLflow's metrics for Prometheus, through the node exporter's textfile
collector: DIR/mlflow.prom, replaced atomically each time the timer runs.

    mlflow-metrics MULTIPROC_DIR HEALTH_URL DIR

The server's workers count their requests (prometheus-flask-exporter, by
method and status, with latencies) in files under MULTIPROC_DIR
(`mlflow server --expose-prometheus`); this adds them up as the server's
/metrics would, and says whether the server answers HEALTH_URL
(labstack_mlflow_up). Run by the server's Python, which has
prometheus_client."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import urllib.request

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 (the site's URL)
            return answer.status == 200 and answer.read().strip() == b"OK"
    except OSError:
        return False


def main(multiproc_dir: str, health_url: str, directory: str) -> None:
    registry = CollectorRegistry()
    if os.path.isdir(multiproc_dir):  # removed while the server is stopped
        MultiProcessCollector(registry, path=multiproc_dir)
    up = healthy(health_url)
    text = generate_latest(registry).decode() + "\n".join(
        [
            "# HELP labstack_mlflow_up 1 when MLflow answered its health check.",
            "# TYPE labstack_mlflow_up gauge",
            f"labstack_mlflow_up {int(up)}",
            "# HELP labstack_mlflow_metrics_time_seconds When MLflow was last read.",
            "# TYPE labstack_mlflow_metrics_time_seconds gauge",
            f"labstack_mlflow_metrics_time_seconds {time.time():.0f}",
            "",
        ]
    )
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".mlflow.prom.")
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, os.path.join(directory, "mlflow.prom"))


if __name__ == "__main__":
    main(*sys.argv[1:4])
