"""`python -m workload.train`: the shapes CNN, one readable loop.

Run alone, under `torchrun --nproc-per-node N`, or as `srun` tasks (gloo on
CPU, nccl on GPU). With `MLFLOW_RUN_ID` set it continues that run (created by
the launcher), from its latest checkpoint when it has one. SIGTERM/SIGUSR1
(preemption) save a checkpoint and end the process with 128 + the signal.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from workload import checkpoint, kernels, provenance
from workload.config import TrainConfig, parse
from workload.credentials import fetch_from_openbao, redact, secret
from workload.data import DatasetCache, open_archive
from workload.model import SmallCNN
from workload.notify import notify
from workload.s3 import S3Settings, check_access, make_client
from workload.shapes import ShapesSplit, write_tar
from workload.tracking import Tracker

log = logging.getLogger("workload.train")
MEAN = (0.3, 0.3, 0.3)
STD = (0.3, 0.3, 0.3)


@dataclass(frozen=True)
class Dist:
    rank: int
    local_rank: int
    world: int

    @classmethod
    def from_env(cls) -> Dist:
        """torchrun's RANK/LOCAL_RANK/WORLD_SIZE, or srun's SLURM_PROCID/LOCALID/NTASKS."""
        env = os.environ
        rank = int(env.get("RANK", env.get("SLURM_PROCID", "0")))
        local = int(env.get("LOCAL_RANK", env.get("SLURM_LOCALID", "0")))
        world = int(env.get("WORLD_SIZE", env.get("SLURM_NTASKS", "1")))
        return cls(rank, local, world)


class Preemption:
    """Remembers the first SIGTERM/SIGUSR1; the loop checkpoints and stops at the next step."""

    def __init__(self) -> None:
        self.signum = 0
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = self.signum or signum


def pick_device(config: TrainConfig, ranks: Dist) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is visible")
        torch.cuda.set_device(ranks.local_rank)
        return torch.device("cuda", ranks.local_rank)
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_data(config: TrainConfig, ranks: Dist) -> tuple[Path, dict[str, str]]:
    """The dataset archive on local disk and its provenance tags."""
    if config.generate_dataset:
        root = Path(os.environ.get("DATA_EPHEMERAL_PATH") or tempfile.gettempdir())
        path = root / f"generated-shapes-seed{config.seed}.tar"
        if ranks.local_rank == 0 and not path.exists():
            # A unique name, not the pid's: pods have their own PID namespaces.
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=root)
            os.close(fd)
            write_tar(Path(tmp), train=2048, val=256, size=40, seed=config.seed)
            os.replace(tmp, path)
        if ranks.world > 1:
            dist.barrier()
        return path, {"data.source": "generated", "data.sha256": checkpoint_sha(path)}
    s3 = S3Settings.from_env()
    check_access(make_client(s3), config.dataset_bucket)
    cache = DatasetCache.from_env(
        s3, config.dataset_name, config.dataset_version, bucket=config.dataset_bucket
    )
    directory, report = cache.fetch()
    log.info(
        "dataset %s: %d cached, %d from shared cache, %d from S3",
        cache.uri,
        report.local_hits,
        report.from_shared,
        report.from_s3,
    )
    tags = {
        "data.uri": cache.uri,
        "data.name": config.dataset_name,
        "data.version": config.dataset_version,
        "data.manifest_sha256": cache.manifest().digest,
    }
    return directory / config.dataset_file, tags


def checkpoint_sha(path: Path) -> str:
    return provenance.file_sha256(path) or "unknown"


def batch_indices(
    config: TrainConfig, n_train: int, ranks: Dist, step: int
) -> tuple[torch.Tensor, int]:
    """This rank's indices for `step`: epoch order is a function of (seed, epoch) only."""
    per_rank = n_train // ranks.world
    steps_per_epoch = per_rank // config.batch_size
    if steps_per_epoch == 0:
        raise SystemExit(f"--batch-size {config.batch_size} is larger than {per_rank} images/rank")
    epoch, position = divmod(step, steps_per_epoch)
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(config.seed + epoch))
    mine = order[ranks.rank : per_rank * ranks.world : ranks.world]
    return mine[position * config.batch_size : (position + 1) * config.batch_size], epoch


def evaluate(
    model: nn.Module, data: ShapesSplit, config: TrainConfig, device: torch.device
) -> float:
    model.eval()
    correct = 0
    scale, bias = kernels.affine(MEAN, STD)
    crop = (config.crop, config.crop)
    with torch.no_grad():
        for start in range(0, len(data), 256):
            idx = torch.arange(start, min(start + 256, len(data)))
            images, labels = data.batch(idx)
            offsets, flips = kernels.draw(images, crop, torch.Generator(), train=False)
            x = kernels.augment(images.to(device), offsets, flips, scale, bias, crop)
            correct += int((model(x).argmax(1).cpu() == labels).sum())
    model.train()
    return correct / len(data)


def train(
    config: TrainConfig,
    ranks: Dist,
    tracker: Tracker | None,
    uploads: checkpoint.Uploads | None,
) -> int:
    """The loop. Returns the process exit status (0, or 128 + signal when preempted).
    TRACKER and UPLOADS: rank 0's (None on the other ranks)."""
    device = pick_device(config, ranks)
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(device.type == "cpu")
    seed_everything(config.seed + ranks.rank)
    preemption = Preemption()

    archive_path, data_tags = load_data(config, ranks)
    reader = open_archive(archive_path)
    train_set, val_set = ShapesSplit(reader, "train"), ShapesSplit(reader, "val")
    n_train = min(config.subset, len(train_set)) if config.subset else len(train_set)

    model: nn.Module = SmallCNN(len(train_set.classes), config.width, config.dropout).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.max_steps
    )
    aug_gen = torch.Generator().manual_seed(config.seed * 1000 + ranks.rank)
    step = 0

    state: list[Any] = [None]
    if tracker is not None and config.resume:
        state[0] = checkpoint.latest(tracker.client, tracker.run_id)
    if ranks.world > 1:
        dist.broadcast_object_list(state, src=0)
    if state[0] is not None:
        model.load_state_dict(state[0]["model"])
        optimizer.load_state_dict(state[0]["optimizer"])
        scheduler.load_state_dict(state[0]["scheduler"])
        checkpoint.restore_rng(state[0]["rng"][ranks.rank], aug_gen)
        step = int(state[0]["step"])
        log.info("resumed at step %d", step)
    if ranks.world > 1:
        model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    bare = model.module if isinstance(model, DistributedDataParallel) else model

    if tracker is not None:
        tracker.set_tags(data_tags)

    def save_checkpoint() -> None:
        states: list[Any] = [checkpoint.rng_state(aug_gen)]
        if ranks.world > 1:
            gathered: list[Any] = [None] * ranks.world
            dist.all_gather_object(gathered, states[0])
            states = gathered
        if uploads is not None:
            payload = {
                "step": step,
                "model": bare.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": states,
                "config": config.as_params(),
            }
            log.info("checkpoint %s", uploads.save(payload))

    crop = (config.crop, config.crop)
    scale, bias = kernels.affine(MEAN, STD)
    use_amp = config.amp and device.type == "cuda"
    last_checkpoint = time.monotonic()
    loss_fn = nn.CrossEntropyLoss()
    while step < config.max_steps:
        idx, epoch = batch_indices(config, n_train, ranks, step)
        images, labels = train_set.batch(idx)
        offsets, flips = kernels.draw(images, crop, aug_gen)
        x = kernels.augment(images.to(device, non_blocking=True), offsets, flips, scale, bias, crop)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = loss_fn(model(x), labels.to(device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        if tracker is not None and (step % config.log_every == 0 or step == config.max_steps):
            lr = scheduler.get_last_lr()[0]
            tracker.log_metrics({"train.loss": loss.item(), "lr": float(lr), "epoch": epoch}, step)
        print(f"step {step}", flush=True)
        if config.step_sleep:
            time.sleep(config.step_sleep)
        due = float(
            bool(config.checkpoint_every_steps) and step % config.checkpoint_every_steps == 0
        )
        minutes = config.checkpoint_every_minutes
        due = max(due, float(bool(minutes) and time.monotonic() - last_checkpoint > 60 * minutes))
        flags = torch.tensor([due, float(preemption.signum)])
        if ranks.world > 1:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        if (flags[0] or flags[1]) and step < config.max_steps:
            save_checkpoint()
            last_checkpoint = time.monotonic()
        if flags[1]:
            log.warning("preempted by signal %d at step %d: checkpoint saved", int(flags[1]), step)
            return 128 + int(flags[1])

    save_checkpoint()
    accuracy = evaluate(bare, val_set, config, device)
    if tracker is not None:
        tracker.log_metrics({"val.accuracy": accuracy}, step)
    log.info("done: %d steps, val accuracy %.3f", step, accuracy)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = parse(argv).effective()
    ranks = Dist.from_env()
    fetch_from_openbao()
    if ranks.world > 1:
        backend = "nccl" if config.device != "cpu" and torch.cuda.is_available() else "gloo"
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29500")
        dist.init_process_group(backend, rank=ranks.rank, world_size=ranks.world)
    tracker = None
    uploads = None
    webhook = secret("LABSTACK_WEBHOOK_URL")
    if ranks.rank == 0:
        tracker = Tracker.attach_or_create(
            config.experiment, config.run_name or None, config.metrics_flush_seconds
        )
        repo = Path(config.repo)
        git_tags, diff = provenance.git_state(repo)
        tracker.set_tags(
            {
                **git_tags,
                **provenance.environment_tags(Path(config.lock_file)),
                **provenance.job_tags(),
                "dist.world_size": str(ranks.world),
            }
        )
        if diff:
            tracker.log_text(diff, "git/diff.patch")
        tracker.log_params(config.as_params())
        notify(webhook, f"run {tracker.run_id} started: {tracker.url}")
        uploads = checkpoint.Uploads(tracker.client, tracker.run_id, tracker.flush)
    status = "FAILED"
    try:
        code = train(config, ranks, tracker, uploads)
        status = "FINISHED" if code == 0 else "KILLED"
        return code
    except BaseException as exc:
        if tracker is not None:
            notify(webhook, f"run {tracker.run_id} failed ({type(exc).__name__}): {tracker.url}")
        raise
    finally:
        if uploads is not None:
            uploads.close()  # every checkpoint saved is stored before the run ends
        if tracker is not None:
            tracker.finish(status)
            if status == "FINISHED":
                notify(webhook, f"run {tracker.run_id} finished: {tracker.url}")
            elif status == "KILLED":
                notify(webhook, f"run {tracker.run_id} preempted, checkpoint saved: {tracker.url}")
        if ranks.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def entry(argv: list[str] | None = None) -> int:
    """`python -m workload.train`: a failure's traceback goes to the job's log with every
    secret the process holds redacted (the interpreter would print it as it is)."""
    try:
        return main(argv)
    except Exception:
        log.error("%s", redact(traceback.format_exc()).rstrip())
        return 1


if __name__ == "__main__":
    sys.exit(entry())
