"""The demo dataset: procedurally drawn shapes (generated, nothing downloaded).

`python -m workload.shapes OUT.tar --train N --val M --size S --seed K` writes an
uncompressed tar of `meta.json`, `{split}/labels.u8` and `{split}/images.u8`
(uint8, `(count, S, S, 3)`, row-major). Classes: square, disc, triangle, cross.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from workload.data.archive import ArchiveReader

CLASSES = ("square", "disc", "triangle", "cross")


def draw_images(count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` images `(size, size, 3)` uint8 and their labels, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), count).astype(np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((count, size, size, 3), np.uint8)
    for k in range(count):
        background = rng.integers(0, 96, 3)
        colour = rng.integers(128, 256, 3)
        radius = rng.uniform(0.2, 0.35) * size
        cy, cx = rng.uniform(radius, size - radius, 2)
        dy, dx = yy - cy, xx - cx
        shape = int(labels[k])
        if shape == 0:
            mask = (np.abs(dy) < radius) & (np.abs(dx) < radius)
        elif shape == 1:
            mask = dy**2 + dx**2 < radius**2
        elif shape == 2:
            mask = (dy < radius) & (dy > -radius) & (np.abs(dx) < (dy + radius) / 2)
        else:
            width = radius / 3
            mask = ((np.abs(dy) < width) | (np.abs(dx) < width)) & (
                np.maximum(abs(dy), abs(dx)) < radius
            )
        image = np.where(mask[..., None], colour, background).astype(np.int16)
        image += rng.integers(-12, 13, image.shape).astype(np.int16)
        images[k] = np.clip(image, 0, 255).astype(np.uint8)
    return images, labels


def write_tar(out: Path, train: int, val: int, size: int, seed: int) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    members = {"meta.json": json.dumps({"size": size, "classes": CLASSES}).encode()}
    for split, count, split_seed in (("train", train, seed), ("val", val, seed + 1)):
        images, labels = draw_images(count, size, split_seed)
        members[f"{split}/images.u8"] = images.tobytes()
        members[f"{split}/labels.u8"] = labels.tobytes()
    with tarfile.open(out, "w") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            info.mtime = 0  # reproducible bytes: same arguments, same sha256
            tar.addfile(info, io.BytesIO(payload))


@dataclass
class ShapesSplit(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """One split of the tar, read through an ArchiveReader (safe in DataLoader workers)."""

    reader: ArchiveReader
    split: str

    def __post_init__(self) -> None:
        meta = json.loads(self.reader.read("meta.json"))
        self.size = int(meta["size"])
        self.classes = tuple(meta["classes"])
        self.labels = np.frombuffer(self.reader.read(f"{self.split}/labels.u8"), np.uint8)
        self._images: np.ndarray | None = None

    def images(self) -> np.ndarray:
        if self._images is None:
            raw = self.reader.read(f"{self.split}/images.u8")
            self._images = np.frombuffer(raw, np.uint8).reshape(-1, self.size, self.size, 3)
        return self._images

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.images()[index].copy()), int(self.labels[index])

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = indices.numpy()
        images = torch.from_numpy(np.ascontiguousarray(self.images()[idx]))
        return images, torch.from_numpy(self.labels[idx].astype(np.int64))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workload.shapes", description=__doc__)
    parser.add_argument("out", type=Path, help="the .tar to write")
    parser.add_argument("--train", type=int, default=4096, help="training images")
    parser.add_argument("--val", type=int, default=512, help="validation images")
    parser.add_argument("--size", type=int, default=40, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    args = parser.parse_args(argv)
    write_tar(args.out, args.train, args.val, args.size, args.seed)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
