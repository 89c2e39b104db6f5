"""The training configuration: every setting a documented CLI flag, logged to MLflow."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _opt(default: Any, help_text: str) -> Any:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class TrainConfig:
    experiment: str = _opt("shapes", "MLflow experiment (when no MLFLOW_RUN_ID is given)")
    run_name: str = _opt("", "MLflow run name for a new run (empty: MLflow's default)")
    dataset_name: str = _opt("shapes", "dataset name in the datasets bucket")
    dataset_version: str = _opt("v1", "dataset version (immutable)")
    dataset_file: str = _opt("shapes.tar", "archive inside the dataset version")
    dataset_bucket: str = _opt("datasets", "bucket holding dataset versions")
    generate_dataset: bool = _opt(False, "generate the demo set locally instead of reading S3")
    subset: int = _opt(0, "use only the first N training images (0: all)")
    dev: bool = _opt(False, "dev mode: 256 images, at most 20 steps, checkpoint every 10")
    device: str = _opt("auto", "auto, cpu or cuda")
    amp: bool = _opt(True, "bfloat16 autocast on GPU (ignored on CPU)")
    threads: int = _opt(1, "torch intra-op threads on CPU (fixed for determinism)")
    seed: int = _opt(0, "seed of every random generator")
    batch_size: int = _opt(32, "images per step per rank")
    crop: int = _opt(32, "random crop side (images are cropped from the stored size)")
    width: int = _opt(16, "CNN width (channels of the first layer)")
    dropout: float = _opt(0.1, "dropout before the classifier")
    lr: float = _opt(3e-3, "AdamW peak learning rate")
    weight_decay: float = _opt(1e-4, "AdamW weight decay")
    max_steps: int = _opt(200, "optimizer steps in total")
    log_every: int = _opt(10, "log loss/lr every N steps")
    metrics_flush_seconds: float = _opt(2.0, "send queued metrics to MLflow every N seconds")
    checkpoint_every_steps: int = _opt(100, "upload a checkpoint every N steps (0: never)")
    checkpoint_every_minutes: float = _opt(15.0, "upload a checkpoint every N minutes (0: never)")
    resume: bool = _opt(True, "continue from the run's latest checkpoint when it has one")
    step_sleep: float = _opt(0.0, "seconds to sleep after each step (preemption drills)")
    repo: str = _opt(".", "git checkout the code comes from (for provenance tags)")
    lock_file: str = _opt("uv.lock", "lock file whose hash tags the environment")

    def effective(self) -> TrainConfig:
        """The configuration after dev mode's overrides."""
        if not self.dev:
            return self
        return dataclasses.replace(
            self,
            subset=min(self.subset or 256, 256),
            max_steps=min(self.max_steps, 20),
            checkpoint_every_steps=10,
        )

    def as_params(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self)}


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python -m workload.train",
        description="Train the shapes CNN; every flag below is logged as an MLflow param.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = type(f.default)
        if kind is bool:
            result.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=f.default,
                help=f.metadata["help"],
            )
        else:
            result.add_argument(flag, type=kind, default=f.default, help=f.metadata["help"])
    return result


def parse(argv: list[str] | None = None) -> TrainConfig:
    args = parser().parse_args(argv)
    config = TrainConfig(**vars(args))
    if config.device not in {"auto", "cpu", "cuda"}:
        raise SystemExit(f"--device {config.device!r}: expected auto, cpu or cuda")
    for name in ("batch_size", "max_steps", "crop", "width", "threads", "log_every"):
        if getattr(config, name) <= 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be positive")
    return config
