"""Checkpoints: everything needed to continue a run exactly, stored as run artifacts.

A checkpoint holds the model, optimizer and LR scheduler states, every RNG
state (python, numpy, torch CPU/CUDA and the augmentation generator, per rank)
and the step; the data position follows from the step (the sampler's order is
a function of seed and epoch). Stored as `checkpoints/step-NNNNNNNN.pt` in the
MLflow run's artifacts (MinIO behind the tracking server).

Saving does not wait for the upload: `Uploads` writes the checkpoint to the node's
temporary directory and a background thread uploads it, oldest first, retrying with
backoff for as long as MinIO or MLflow is away (past the MLflow client's own retries).
A checkpoint is deleted locally only once uploaded, and `Uploads.close` (at the end of
the training, and before a preempted job exits) waits until every one is.

Only tensors and plain data (dicts, lists, tuples, numbers, strings) go in, and a
checkpoint is loaded with `weights_only=True`: a file planted in a run's
checkpoints (jobs share an MLflow login that may write to other runs) cannot
run code when the run resumes; it is refused, named.
"""

from __future__ import annotations

import logging
import pickle
import random
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from mlflow.tracking import MlflowClient

from workload.credentials import redact

log = logging.getLogger(__name__)

ARTIFACT_DIR = "checkpoints"
NAME_RE = re.compile(r"^step-(\d{8})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be loaded safely; the message names it."""


def rng_state(aug_generator: torch.Generator) -> dict[str, Any]:
    """Every RNG's state, as tensors and plain data only."""
    legacy = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    _, keys, pos, has_gauss, cached_gaussian = legacy
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "augment": aug_generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], aug_generator: torch.Generator) -> None:
    random.setstate(state["python"])
    numpy = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy["keys"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    aug_generator.set_state(state["augment"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Uploads:
    """The run's checkpoints on their way to its artifacts: saved locally at once, uploaded
    in the background in order, each retried (backoff 1 s doubling to BACKOFF_MAX) until
    it is stored. `close` waits for every upload."""

    BACKOFF_MAX = 60.0

    def __init__(
        self, client: MlflowClient, run_id: str, before_upload: Callable[[], None]
    ) -> None:
        """BEFORE_UPLOAD runs on the upload thread before each upload: the tracker's flush,
        so that no checkpoint of step N is stored before the metrics up to N."""
        self.client = client
        self.run_id = run_id
        self.before_upload = before_upload
        self.spool = Path(tempfile.mkdtemp(prefix=f"labstack-checkpoints-{run_id}-"))
        self._pending: list[Path] = []
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._upload, name="checkpoints", daemon=True)
        self._thread.start()

    def save(self, state: dict[str, Any]) -> str:
        """Write `state` (its "step" names it) locally and queue it; returns its artifact path."""
        name = f"step-{int(state['step']):08d}.pt"
        partial = self.spool / f".{name}.partial"
        torch.save(state, partial)
        path = partial.rename(self.spool / name)
        with self._changed:
            self._pending.append(path)
            self._changed.notify_all()
        return f"{ARTIFACT_DIR}/{name}"

    def pending(self) -> list[str]:
        """The checkpoints saved and not uploaded yet, oldest first."""
        with self._changed:
            return [path.name for path in self._pending]

    def close(self) -> None:
        """Wait until every saved checkpoint is uploaded, then stop."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join()
        shutil.rmtree(self.spool, ignore_errors=True)

    def _upload(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending or self._closed)
                if not self._pending:
                    return
                path = self._pending[0]
            self.before_upload()
            self._store(path)
            path.unlink()
            with self._changed:
                self._pending.pop(0)
                self._changed.notify_all()

    def _store(self, path: Path) -> None:
        delay, attempt = 1.0, 1
        while True:
            try:
                self.client.log_artifact(self.run_id, str(path), ARTIFACT_DIR)
            except Exception as exc:  # MinIO or MLflow away: keep it, retry
                log.warning(
                    "checkpoint %s not uploaded (attempt %d, kept in %s), retrying in %.0f s: %s",
                    path.name,
                    attempt,
                    self.spool,
                    delay,
                    redact(str(exc)).splitlines()[0][:300] if str(exc) else type(exc).__name__,
                )
                time.sleep(delay)
                delay, attempt = min(2 * delay, self.BACKOFF_MAX), attempt + 1
            else:
                if attempt > 1:
                    log.info("checkpoint %s uploaded at attempt %d", path.name, attempt)
                return


def latest(client: MlflowClient, run_id: str) -> dict[str, Any] | None:
    """The run's checkpoint with the highest step, or None when it has none."""
    steps = []
    for info in client.list_artifacts(run_id, ARTIFACT_DIR):
        match = NAME_RE.match(Path(info.path).name)
        if match:
            steps.append((int(match.group(1)), info.path))
    if not steps:
        return None
    _, artifact = max(steps)
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, artifact, tmp)
        try:
            return torch.load(local, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            # torch's message: a paragraph on weights_only, then what was refused.
            lines = [line for line in str(exc).splitlines() if "GLOBAL" in line]
            raise CheckpointError(
                f"checkpoint {artifact} of run {run_id} holds more than tensors and plain "
                f"data: not loaded, nothing in it ran ({lines[0] if lines else 'unpickling'})"
            ) from None
