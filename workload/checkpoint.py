"""Checkpoints: everything needed to continue a run exactly, stored as run artifacts.

A checkpoint holds the model, optimizer and LR scheduler states, every RNG
state (python, numpy, torch CPU/CUDA and the augmentation generator, per rank)
and the step; the data position follows from the step (the sampler's order is
a function of seed and epoch). Stored as `checkpoints/step-NNNNNNNN.pt` in the
MLflow run's artifacts (MinIO behind the tracking server).

Only tensors and plain data (dicts, lists, tuples, numbers, strings) go in, and a
checkpoint is loaded with `weights_only=True`: a file planted in a run's
checkpoints (jobs share an MLflow login that may write to other runs) cannot
run code when the run resumes; it is refused, named.
"""

from __future__ import annotations

import pickle
import random
import re
import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from mlflow.tracking import MlflowClient

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


def save(client: MlflowClient, run_id: str, state: dict[str, Any]) -> str:
    """Upload `state` as the run's checkpoint for `state["step"]`; returns the artifact path."""
    name = f"step-{int(state['step']):08d}.pt"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        torch.save(state, path)
        client.log_artifact(run_id, str(path), ARTIFACT_DIR)
    return f"{ARTIFACT_DIR}/{name}"


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
