"""labstack's augmentation kernels vs torchvision.transforms.v2, the path a
researcher would take without labstack: random crop, horizontal flip, to float
and normalise, on a uint8 batch.

Equal work: the same (N, 40, 40, 3) uint8 batch in, float32 (N, 3, 32, 32) out,
with a crop offset and a flip drawn for each sample. torchvision's v2 transforms
draw one crop and one flip per call, for a whole batched tensor alike, so the
torchvision path runs its Compose on each sample and stacks the results (what a
Dataset's __getitem__ and the DataLoader's collation do). labstack draws the
per-sample parameters (`kernels.draw`) and runs one kernel over the batch; both
timed. First, torchvision's functional ops given labstack's parameters must give
labstack's output. Goals: >= 3x on CPU (Numba), >= 1.5x on a GPU (numba-cuda on
CUDA tensors), measured wherever CUDA is present. The vectorised torch reference
(`kernels.augment_reference`) is printed for context.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from benchmarks.common import Row, median_seconds
from workload import kernels

SIZE, CROP, BATCHES = 40, (32, 32), (64, 256, 1024)
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
GOALS = {"cpu": 3.0, "cuda": 1.5}

TORCHVISION = v2.Compose(
    [
        v2.RandomCrop(CROP),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(MEAN, STD),
    ]
)


def torchvision_batch(images: torch.Tensor) -> torch.Tensor:
    """The v2 pipeline on each (C, H, W) sample of an (N, H, W, C) batch, stacked."""
    return torch.stack([TORCHVISION(image) for image in images.permute(0, 3, 1, 2)])


def torchvision_given(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor):
    """The same ops with the crop offsets and flips given: labstack's output, exactly."""
    out = []
    for image, (top, left), flip in zip(
        images.permute(0, 3, 1, 2), offsets.tolist(), flips.tolist(), strict=True
    ):
        image = F.crop(image, top, left, *CROP)
        image = F.horizontal_flip(image) if flip else image
        out.append(F.normalize(F.to_dtype(image, torch.float32, scale=True), MEAN, STD))
    return torch.stack(out)


def bench(device: str) -> list[Row]:
    scale, bias = kernels.affine(MEAN, STD)
    generator = torch.Generator().manual_seed(1)

    def drawn(augment: Callable[..., torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        """`augment` of a batch, with parameters drawn for each sample."""

        def run(images: torch.Tensor) -> torch.Tensor:
            offsets, flips = kernels.draw(images, CROP, generator)
            return augment(images, offsets, flips, scale, bias, CROP)

        return run

    def timed(func: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, n: int):
        def call() -> None:
            func(images)
            if device == "cuda":
                torch.cuda.synchronize()

        return median_seconds(call, max(5, 4096 // n))

    rows = []
    for n in BATCHES:
        images = torch.randint(0, 256, (n, SIZE, SIZE, 3), dtype=torch.uint8, device=device)
        offsets, flips = kernels.draw(images, CROP, generator)
        ours = kernels.augment(images, offsets, flips, scale, bias, CROP)  # compiles
        torch.testing.assert_close(ours, torchvision_given(images, offsets, flips))
        theirs = torchvision_batch(images)
        assert (theirs.shape, theirs.dtype) == (ours.shape, ours.dtype)
        ours_s = timed(drawn(kernels.augment), images, n)
        theirs_s = timed(torchvision_batch, images, n)
        ref_s = timed(drawn(kernels.augment_reference), images, n)
        print(
            f"{device:4} batch {n:4d}: labstack {ours_s * 1e3:7.2f} ms, torchvision v2 "
            f"{theirs_s * 1e3:7.2f} ms (x{theirs_s / ours_s:.1f}), torch reference "
            f"{ref_s * 1e3:6.2f} ms"
        )
        rows.append(
            Row(
                "kernels",
                f"{device} batch {n}: labstack",
                f"{ours_s * 1e3:.2f} ms",
                f"{theirs_s / ours_s:.1f}x",
                f"torchvision (>= {GOALS[device]}x)",
            )
        )
    return rows


def main() -> list[Row]:
    torch.manual_seed(0)
    shape = f"(N, {SIZE}, {SIZE}, 3) uint8 -> (N, 3, {CROP[0]}, {CROP[1]}) float32"
    print(f"{shape}; torch threads {torch.get_num_threads()}, numba {numba.get_num_threads()}")
    rows = bench("cpu")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name()}")
        rows += bench("cuda")
    else:
        print("cuda: skipped, no CUDA device here")
        rows.append(Row("kernels", "cuda: skipped", "-", note="no CUDA device"))
    return rows


if __name__ == "__main__":
    from benchmarks.common import print_table

    print_table(main())
