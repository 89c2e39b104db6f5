"""MLflow: attach to the launcher's run (`MLFLOW_RUN_ID`) or create one; async batched metrics."""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
from array import array
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from workload.credentials import redact, secret_values

log = logging.getLogger(__name__)

MAX_BATCH = 1000  # MLflow's log_batch limit on metrics per call


def _check_not_secret(items: Mapping[str, str]) -> None:
    secrets = secret_values()
    for key, value in items.items():
        if any(secret in value for secret in secrets):
            raise ValueError(f"refusing to send {key!r} to MLflow: its value contains a secret")


class Tracker:
    """One MLflow run seen from the job."""

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        flush_seconds: float = 2.0,
        enabled: bool = True,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.enabled = enabled
        self.flush_seconds = flush_seconds
        self._queue: queue.Queue[Metric | None] = queue.Queue()
        # Every metric MLflow took, per key: steps, timestamps, values (24 bytes a
        # metric: a run that logs a million keeps 24 MB). The sender's alone until
        # finish joins it.
        self._taken: dict[str, tuple[array[int], array[int], array[float]]] = {}
        self._thread = threading.Thread(target=self._drain, name="mlflow-metrics", daemon=True)
        if enabled:
            self._thread.start()

    @classmethod
    def attach_or_create(
        cls, experiment: str, run_name: str | None, flush_seconds: float = 2.0
    ) -> Tracker:
        """Attach to `MLFLOW_RUN_ID` if set (created by the launcher), else create a run."""
        client = MlflowClient()
        run_id = os.environ.get("MLFLOW_RUN_ID")
        if run_id:
            run = client.get_run(run_id)  # fails naming the run id if it does not exist
            if run.info.status != "RUNNING":
                client.update_run(run_id, status="RUNNING")
        else:
            found = client.get_experiment_by_name(experiment)
            exp_id = found.experiment_id if found else client.create_experiment(experiment)
            run_id = client.create_run(exp_id, run_name=run_name).info.run_id
        return cls(client, run_id, flush_seconds)

    @property
    def url(self) -> str:
        run = self.client.get_run(self.run_id)
        base = mlflow.get_tracking_uri().rstrip("/")
        return f"{base}/#/experiments/{run.info.experiment_id}/runs/{self.run_id}"

    def set_tags(self, tags: Mapping[str, str]) -> None:
        _check_not_secret(tags)
        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        self.client.log_batch(self.run_id, tags=batch, synchronous=True)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params not logged yet; an existing param with a different value is an error."""
        existing = self.client.get_run(self.run_id).data.params
        strings = {k: str(v) for k, v in params.items()}
        _check_not_secret(strings)
        changed = {k for k, v in strings.items() if k in existing and existing[k] != v}
        if changed:
            raise ValueError(
                f"run {self.run_id} was started with other values for {sorted(changed)}: "
                "resume with the same configuration"
            )
        fresh = [Param(k, v) for k, v in strings.items() if k not in existing]
        for start in range(0, len(fresh), 100):
            self.client.log_batch(self.run_id, params=fresh[start : start + 100], synchronous=True)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, redact(text), artifact_file)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Queue metrics; a background thread sends them in batches (never blocks training)."""
        if not self.enabled:
            return
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            self._queue.put(Metric(key, float(value), now, step))

    def _drain(self) -> None:
        """Send the queued metrics every flush_seconds (at once when MAX_BATCH are queued).
        A batch MLflow cannot take now (it is away: a connection error or a 5xx after the
        client's own retries) is kept and sent again, with backoff, until it is taken."""
        pending: list[Metric] = []
        deadline = time.monotonic() + self.flush_seconds
        delay = 1.0
        stop = False
        while not stop or pending:
            if not stop:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    if item is None:
                        stop = True
                    else:
                        pending.append(item)
                except queue.Empty:
                    pass
            if pending and (stop or len(pending) >= MAX_BATCH or time.monotonic() >= deadline):
                pending = self._send(pending)
                if pending:
                    time.sleep(delay)
                delay = min(2 * delay, 60.0) if pending else 1.0
            if time.monotonic() >= deadline:
                deadline = time.monotonic() + self.flush_seconds

    def _send(self, metrics: list[Metric]) -> list[Metric]:
        """Log METRICS in batches; returns those MLflow could not take now."""
        for start in range(0, len(metrics), MAX_BATCH):
            try:
                self.client.log_batch(self.run_id, metrics=metrics[start : start + MAX_BATCH])
            except Exception as exc:  # a tracking outage must not kill the training
                message = redact(str(exc)).splitlines()[0][:300] if str(exc) else repr(exc)
                if isinstance(exc, MlflowException) and exc.get_http_status_code() < 500:
                    log.error("MLflow refused a metrics batch, dropped: %s", message)
                    continue
                log.warning(
                    "MLflow did not take %d metrics, kept to send again: %s",
                    len(metrics) - start,
                    message,
                )
                return metrics[start:]
            for metric in metrics[start : start + MAX_BATCH]:
                steps, stamps, values = self._taken.setdefault(
                    metric.key, (array("q"), array("q"), array("d"))
                )
                steps.append(metric.step)
                stamps.append(metric.timestamp)
                values.append(metric.value)
        return []

    def flush(self) -> None:
        """Send everything queued so far and wait until MLflow has taken it (restarts the
        sender). While MLflow is away this waits: call it off the training thread."""
        if not self.enabled:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = threading.Thread(target=self._drain, name="mlflow-metrics", daemon=True)
        self._thread.start()

    def finish(self, status: str) -> None:
        """Flush metrics, send again those MLflow took and lost, then mark the run
        FINISHED, FAILED or KILLED."""
        if self.enabled:
            self._queue.put(None)
            self._thread.join()
            self.enabled = False
            lost = self._lost()
            if lost:
                log.warning(
                    "MLflow no longer holds %d metrics it took (restored from a backup "
                    "older than them?): sending them again",
                    len(lost),
                )
                for metric in [*lost, None]:
                    self._queue.put(metric)
                self._drain()
        self.client.set_terminated(self.run_id, status=status)

    def _lost(self) -> list[Metric]:
        """The metrics MLflow took from this job and does not hold now. A tracking store
        restored from its backup (the head node lost) is as of its newest archived WAL:
        what it took in the last moments before the loss is not there, and the job, still
        running, can send it again."""
        lost = []
        try:
            for key, (steps, stamps, values) in self._taken.items():
                history = self.client.get_metric_history(self.run_id, key)
                held = {(m.step, m.timestamp) for m in history}
                lost += [
                    Metric(key, value, stamp, step)
                    for step, stamp, value in zip(steps, stamps, values, strict=True)
                    if (step, stamp) not in held
                ]
        except Exception as exc:  # MLflow away again: what it holds is unknown, send nothing
            log.warning("could not read the run's metrics back from MLflow: %s", redact(str(exc)))
            return []
        return lost


def write_temp(text: str, name: str) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="workload-"))
    path = directory / name
    path.write_text(text)
    return path
